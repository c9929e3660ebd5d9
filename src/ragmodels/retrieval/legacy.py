"""DPR's original knowledge base files (the reference's "legacy" index), read without unpickling.

A legacy folder (``config.index_path``) holds:
  - ``hf_bert_base.hnswSQ8_correct_phi_128.c_index.index.dpr``: a FAISS HNSW-SQ8 index over
    norm-augmented (d + 1) vectors (read as it is, memory-mapped);
  - the FAISS-id -> passage-id map: ``<index>.index_meta.json`` (a JSON list), ``.index_meta.npy``
    (an integer array), or ``.index_meta.dpr`` when that file is JSON;
  - the passages: DPR's ``psgs_w100.tsv`` (columns id, text, title).
DPR also shipped the map and the passages as pickles (``.index_meta.dpr``, ``psgs_w100.tsv.pkl``),
which the reference unpickles. Unpickling runs arbitrary code, so a pickle is refused with the
steps to convert it once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from .index import FaissIndex, require_complete

INDEX_FILENAME = "hf_bert_base.hnswSQ8_correct_phi_128.c_index"
INDEX_FILE = INDEX_FILENAME + ".index.dpr"
META_FILES = (INDEX_FILENAME + ".index_meta.json", INDEX_FILENAME + ".index_meta.npy",
              INDEX_FILENAME + ".index_meta.dpr")
PASSAGE_FILES = ("psgs_w100.tsv", "psgs_w100.tsv.pkl")
DPR_PASSAGES_URL = "https://dl.fbaipublicfiles.com/dpr/wikipedia_split/psgs_w100.tsv.gz"

_PICKLE_CONVERSION = {
    "passages": (
        "Download DPR's original {url} (gunzip it to psgs_w100.tsv in the same folder), or, if you trust this "
        "pickle, convert it once in a separate Python: import pickle, csv; d = pickle.load(open('{path}', 'rb')); "
        "w = csv.writer(open('psgs_w100.tsv', 'w', newline=''), delimiter='\\t'); w.writerow(['id', 'text', 'title']); "
        "[w.writerow([k, v[0], v[1]]) for k, v in d.items()]"
    ),
    "index map": (
        "If you trust this pickle, convert it once in a separate Python: import pickle, json; "
        "json.dump([int(i) for i in pickle.load(open('{path}', 'rb'))], open('{json_name}', 'w'))"
    ),
}


class LegacyIndex:
    """DPR's HNSW index + id map + TSV passages: the reference's ``LegacyIndex`` without pickle.

    Doc ids are DPR passage ids (from the id map); retrieved embeddings are the index's stored vectors.
    """

    def __init__(self, vector_size: int, index_path: str | os.PathLike):
        self.folder = Path(index_path)
        if not self.folder.is_dir():
            raise ValueError(
                f"The legacy index folder {self.folder} does not exist. Download DPR's index files "
                f"({INDEX_FILE} and its id map) and passages ({DPR_PASSAGES_URL}) into one folder and set "
                "index_path to it."
            )
        self.vector_size = vector_size
        self.passages, self._sorted_ids, self._id_order = _read_passages(_find(self.folder, PASSAGE_FILES, "passages"))
        self.index: FaissIndex | None = None
        self.index_id_to_db_id: np.ndarray | None = None  # (ntotal,) int64

    def is_initialized(self) -> bool:
        return self.index is not None

    def init_index(self) -> None:
        """Read the FAISS index (memory-mapped) and its id map."""
        if self.index is not None:
            return
        index = FaissIndex.read(_find(self.folder, (INDEX_FILE,), "FAISS index"), augmented=True)
        id_map = _read_id_map(_find(self.folder, META_FILES, "index map"))
        if len(id_map) != index.ntotal:
            raise ValueError(f"The id map of {self.folder} has {len(id_map)} entries but the index {index.ntotal}.")
        self.index, self.index_id_to_db_id = index, id_map

    @property
    def dimension(self) -> int:
        return self.index.dimension if self.index is not None else self.vector_size

    def __len__(self) -> int:
        return self.index.ntotal if self.index is not None else self.passages.num_rows

    def retrieve(self, question_hidden_states: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """(bs, d) queries -> embeddings float32 (bs, n, d), DPR passage ids int64 (bs, n), doc_dicts."""
        doc_ids, embeds = self.get_top_docs(question_hidden_states, n_docs)
        return embeds, doc_ids, self.get_doc_dicts(doc_ids)

    def get_top_docs(self, question_hidden_states: np.ndarray, n_docs: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The reference's search: (bs, d) -> DPR passage ids int64 (bs, n), stored embeddings float32 (bs, n, d)."""
        _, index_ids = self.index.search(question_hidden_states, n_docs)  # (bs, n)
        require_complete(index_ids)
        return self.index_id_to_db_id[index_ids], self.index.reconstruct(index_ids)

    def get_doc_dicts(self, doc_ids: np.ndarray) -> list[dict]:
        """Titles and texts of DPR passage ids (bs, n), in one Arrow take."""
        doc_ids = np.asarray(doc_ids, dtype=np.int64)
        pos = np.searchsorted(self._sorted_ids, doc_ids.reshape(-1))  # (bs*n,)
        pos = np.minimum(pos, len(self._sorted_ids) - 1)
        found = self._sorted_ids[pos] == doc_ids.reshape(-1)
        if not found.all():
            raise ValueError(f"Passage ids {doc_ids.reshape(-1)[~found][:5].tolist()} of the index are missing "
                             f"from the passages file in {self.folder}.")
        rows = self.passages.take(pa.array(self._id_order[pos]))
        titles, texts = rows.column("title").to_pylist(), rows.column("text").to_pylist()
        k = doc_ids.shape[1]
        return [{"title": titles[i * k : (i + 1) * k], "text": texts[i * k : (i + 1) * k]} for i in range(len(doc_ids))]


def _find(folder: Path, names: tuple[str, ...], what: str) -> Path:
    for name in names:
        if (folder / name).is_file():
            return _refuse_pickle(folder / name, what)
    raise ValueError(f"No {what} file in the legacy index folder {folder}; expected one of {list(names)}.")


def _refuse_pickle(path: Path, what: str) -> Path:
    with open(path, "rb") as f:
        head = f.read(1)
    if head[:1] == b"\x80" or path.suffix == ".pkl":
        hint = _PICKLE_CONVERSION.get(what, "").format(
            url=DPR_PASSAGES_URL, path=path, json_name=INDEX_FILENAME + ".index_meta.json"
        )
        raise ValueError(f"{path} is a Python pickle; ragmodels never unpickles files (it can run arbitrary code). {hint}")
    return path


def _read_passages(path: Path) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """DPR's TSV (id, text, title) -> table, sorted ids (n,) and the row of each sorted id (n,)."""
    table = pa_csv.read_csv(
        path,
        parse_options=pa_csv.ParseOptions(delimiter="\t", quote_char='"', double_quote=True, newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(column_types={"id": pa.int64(), "text": pa.string(), "title": pa.string()}),
    )
    if set(table.column_names) < {"id", "text", "title"}:
        raise ValueError(f"{path} must be DPR's TSV with a header row 'id<TAB>text<TAB>title', got {table.column_names}.")
    ids = table.column("id").to_numpy()  # (n,)
    order = np.argsort(ids, kind="stable")
    return table, ids[order], order


def _read_id_map(path: Path) -> np.ndarray:
    """FAISS id -> DPR passage id, from JSON or .npy (never a pickle) -> int64 (ntotal,)."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head == b"\x93NUMPY":
        return np.load(path, allow_pickle=False).astype(np.int64)
    try:
        return np.asarray([int(i) for i in json.loads(path.read_text())], dtype=np.int64)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path} must be a JSON list of passage ids or an .npy integer array ({e}).") from e
