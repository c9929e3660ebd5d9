"""Importing existing knowledge bases: DPR's ``psgs_w100.tsv`` with its embeddings, and the reference's
``use_own_knowledge_dataset`` output (a ``save_to_disk`` dataset plus a FAISS index file).

Nothing is unpickled: DPR embeddings are read from NumPy ``.npy`` files (``allow_pickle=False``,
memory-mapped); DPR's pickled embedding files are refused with a message saying how to convert them.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ragmodels.retrieval.index import FaissIndex

from .arrow_files import ArrowFile, data_files, iter_batches, passages_table
from .assemble import assemble, check_agreement
from .chunking import batched
from .knowledge_base import KnowledgeBase
from .publish import staging
from .readers import DocumentError, utf8_lines

NPY_MAGIC = b"\x93NUMPY"
PICKLE_PROTOCOL_OPCODE = 0x80
DEFAULT_IMPORT_SHARD = 100_000


def import_dpr(passages_tsv: str | os.PathLike, embeddings: Sequence[str | os.PathLike], output: str | os.PathLike,
               encoder: str | None = None, pooling: str | None = None, index_kind: str = "flat",
               index_params: dict | None = None, shard_size: int = DEFAULT_IMPORT_SHARD) -> KnowledgeBase:
    """DPR's passages TSV (columns id, text, title) + ``.npy`` embedding files whose rows follow the TSV."""
    vectors = [_load_npy(Path(p)) for p in embeddings]  # each (n_i, d), memory-mapped
    dims = {v.shape[1] for v in vectors}
    if len(dims) != 1:
        raise ValueError(f"The embedding files have different dimensions {sorted(dims)}; they must come from one encoder.")
    rows = _dpr_rows(Path(passages_tsv))
    output = Path(output)
    with staging(output) as tmp:
        files, next_id = [], 0
        chunks = _row_chunks(vectors, shard_size)
        for number, shard in enumerate(batched(rows, shard_size)):
            block = next(chunks, None)  # (len(shard), d) expected
            if block is None or len(block) < len(shard):
                raise ValueError(f"{passages_tsv} has more passages than the embedding files have rows.")
            if len(block) > len(shard):
                raise ValueError(f"The embedding files have more rows than {passages_tsv} has passages.")
            ids, texts, titles = zip(*shard)
            next_id = max([next_id, *(int(i) + 1 for i in ids if i.isdigit())])
            files.append(tmp / f".import-{number:05d}.arrow")
            with ArrowFile(files[-1], block.shape[1]) as f:
                f.write(passages_table(ids, titles, texts, block))
        if not files:
            raise DocumentError(f"{passages_tsv} contains no passages.")
        if next(chunks, None) is not None:
            raise ValueError(f"The embedding files have more rows than {passages_tsv} has passages.")
        total = sum(b.num_rows for b in iter_batches(files))
        assemble(tmp, files, encoder=encoder, pooling=pooling, index_kind=index_kind,
                 index_params=index_params or {}, next_id=max(next_id, total))
        for f in files:
            f.unlink()
    return KnowledgeBase.load(output)


def import_saved_dataset(passages_path: str | os.PathLike, index_path: str | os.PathLike,
                         output: str | os.PathLike, encoder: str | None = None,
                         pooling: str | None = None) -> KnowledgeBase:
    """The reference's custom knowledge base: ``dataset.save_to_disk(passages_path)`` and
    ``dataset.get_index("embeddings").save(index_path)``. The index is copied as it is (its ids are rows)."""
    passages_path, output = Path(passages_path), Path(output)
    if not (passages_path / "state.json").is_file():
        raise ValueError(f"{passages_path} is not a folder written by datasets.Dataset.save_to_disk.")
    index = FaissIndex.read(index_path, mmap=False)
    with staging(output) as tmp:
        target = tmp / ".import.arrow"
        count = 0
        with ArrowFile(target, index.dimension) as f:
            for batch in iter_batches(data_files(passages_path)):
                f.write(_our_schema(batch, count, index.dimension, passages_path))
                count += batch.num_rows
        check_agreement(index, count, index.dimension)
        assemble(tmp, [target], encoder=encoder, pooling=pooling, index_kind=index.kind, index_params={},
                 index=index)
        target.unlink()
    return KnowledgeBase.load(output)


def _load_npy(path: Path) -> np.ndarray:
    """A (n, d) float array from a .npy file, memory-mapped; pickles are refused, never loaded."""
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head.startswith(bytes([PICKLE_PROTOCOL_OPCODE])):
        raise ValueError(
            f"{path} is a Python pickle (DPR's generate_dense_embeddings output). ragmodels never unpickles files, "
            "since unpickling can run arbitrary code. If you trust the file, convert it once to .npy: "
            "rows = pickle.load(open(path, 'rb')); np.save(out, np.stack([v for _, v in rows])) - rows must follow "
            "the order of the passages TSV."
        )
    if head != NPY_MAGIC:
        raise ValueError(f"{path} is not a NumPy .npy file; pass the passage embeddings as .npy (n, d) arrays.")
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.ndim != 2 or array.dtype.kind != "f":
        raise ValueError(f"{path} must hold a float (n, d) array, got {array.dtype} {array.shape}.")
    return array


def _row_chunks(arrays: Sequence[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Consecutive blocks of ``size`` rows across several (n_i, d) arrays, as float32 (<= size, d)."""
    offsets = np.cumsum([0, *(len(a) for a in arrays)])
    for start in range(0, int(offsets[-1]), size):
        stop = start + size
        parts = [a[max(start - o, 0) : max(stop - o, 0)] for a, o in zip(arrays, offsets[:-1])]
        yield np.concatenate([p for p in parts if len(p)]).astype(np.float32)


def _dpr_rows(path: Path) -> Iterator[tuple[str, str, str]]:
    """(id, text, title) rows of DPR's TSV, header checked; documents without text are refused."""
    csv.field_size_limit(sys.maxsize)
    reader = csv.reader(iter(utf8_lines(path)), delimiter="\t")
    header = next(reader, None)
    if header is None:
        raise DocumentError(f"{path} is empty.")
    if [h.strip() for h in header[:3]] != ["id", "text", "title"]:
        raise DocumentError(f"{path}: expected DPR's header 'id<TAB>text<TAB>title', got {header}.")
    for row in reader:
        if len(row) < 3 or not row[1].strip():
            raise DocumentError(f"{path}:{reader.line_num}: passage without text.")
        yield row[0], row[1], row[2]


def _our_schema(batch: pa.RecordBatch, start: int, dim: int, source: Path) -> pa.Table:
    """A reference dataset batch (title, text, embeddings[, id]) as our passages table."""
    missing = {"title", "text", "embeddings"} - set(batch.schema.names)
    if missing:
        raise ValueError(f"{source} lacks the column(s) {sorted(missing)}; it needs title, text and embeddings.")
    flat = pc.list_flatten(batch.column("embeddings")).to_numpy(zero_copy_only=False)
    if flat.size != batch.num_rows * dim:
        raise ValueError(f"Dimension mismatch: the embeddings of {source} are not all {dim}-d like the index's vectors.")
    ids = (batch.column("id").cast(pa.string()).to_pylist() if "id" in batch.schema.names
           else [str(start + i) for i in range(batch.num_rows)])
    return passages_table(ids, batch.column("title").to_pylist(), batch.column("text").to_pylist(),
                          flat.reshape(-1, dim))
