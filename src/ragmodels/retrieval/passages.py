"""Passage store: title / text / embeddings rows of an Arrow table, memory-mapped from disk.

The on-disk layout is the reference's custom knowledge base: a folder written by
``datasets.Dataset.save_to_disk`` (``passages_path``). ``datasets.load_from_disk`` maps its Arrow
files, so a store of millions of passages costs no RAM until rows are read. Lookups for a whole batch
of questions are ONE Arrow ``take``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from .._io import staged_dir

REQUIRED_COLUMNS = ("title", "text", "embeddings")


class PassageStore:
    """Rows of an Arrow table with ``title``, ``text`` and ``embeddings`` columns (plus any others).

    ``row_map`` (optional, int64) maps a passage id to its table row: it is how a ``datasets.Dataset``
    that went through ``select``/``shuffle`` (an indices mapping) is read without copying it.
    """

    def __init__(self, table: pa.Table, row_map: pa.Array | None = None, source: str = "<in-memory>"):
        missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(
                f"The passages at {source} lack the column(s) {missing}; a knowledge base needs columns "
                f"title (str), text (str) and embeddings (float vectors), got {table.column_names}. "
                "Compute embeddings with a context encoder (ragmodels index build) and save the dataset again."
            )
        embedding_type = table.schema.field("embeddings").type
        if not (pa.types.is_list(embedding_type) or pa.types.is_large_list(embedding_type)
                or pa.types.is_fixed_size_list(embedding_type)):
            raise ValueError(f"The 'embeddings' column of {source} must hold float vectors, got type {embedding_type}.")
        self.table = table
        self.row_map = row_map
        self.source = source

    @classmethod
    def from_dataset(cls, dataset, source: str = "<in-memory dataset>") -> "PassageStore":
        """Wrap a ``datasets.Dataset`` without copying its Arrow data."""
        from datasets import Dataset

        if not isinstance(dataset, Dataset):
            raise TypeError(f"Expected a datasets.Dataset with title/text/embeddings columns, got {type(dataset)}.")
        row_map = None if dataset._indices is None else dataset._indices.column(0)
        return cls(dataset.data.table, row_map=row_map, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PassageStore":
        """Memory-map a folder written by ``datasets.Dataset.save_to_disk``."""
        from datasets import Dataset, load_from_disk

        path = Path(path)
        if not path.is_dir():
            raise ValueError(
                f"No passages folder at {path}; passages_path must be a folder written by "
                "datasets.Dataset.save_to_disk (title, text, embeddings columns)."
            )
        try:
            dataset = load_from_disk(str(path))
        except FileNotFoundError as e:
            raise ValueError(f"{path} is not a saved datasets.Dataset folder ({e}); save it with save_to_disk.") from e
        if not isinstance(dataset, Dataset):
            raise ValueError(f"{path} holds a DatasetDict with splits {list(dataset)}; point passages_path at one split.")
        return cls.from_dataset(dataset, source=str(path))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the passages in ``save_to_disk`` layout (readable by ``datasets.load_from_disk``), safely."""
        from datasets import Dataset

        with staged_dir(path) as tmp:
            Dataset(self._view()).save_to_disk(str(tmp))
        return Path(path)

    def __len__(self) -> int:
        return len(self.row_map) if self.row_map is not None else self.table.num_rows

    @property
    def dimension(self) -> int:
        """Size of the passage embeddings (read from the first row)."""
        return len(self.table.column("embeddings")[0]) if len(self) else 0

    def lookup(self, ids: np.ndarray) -> tuple[list[dict], np.ndarray]:
        """ONE take for a (bs, k) id matrix -> (doc_dicts, embeddings float32 (bs, k, d)).

        ``doc_dicts[i]`` maps every non-embedding column to the k values of question i, in id order.
        """
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 2:
            raise ValueError(f"ids must be a (batch, n_docs) matrix, got shape {ids.shape}.")
        rows = self._take(ids.reshape(-1))  # (bs*k) rows
        bs, k = ids.shape
        columns = {name: rows.column(name).to_pylist() for name in rows.column_names if name != "embeddings"}
        doc_dicts = [{name: values[i * k : (i + 1) * k] for name, values in columns.items()} for i in range(bs)]
        return doc_dicts, _vectors(rows.column("embeddings")).reshape(bs, k, -1)

    def fetch(self, ids: np.ndarray) -> list[dict]:
        """Titles, texts (and other non-embedding columns) of a (bs, k) id matrix, one dict per question."""
        doc_dicts, _ = self.lookup(ids)
        return doc_dicts

    def embeddings(self, ids: np.ndarray) -> np.ndarray:
        """Embeddings of a (bs, k) id matrix -> float32 (bs, k, d), in one take of the embeddings column."""
        ids = np.asarray(ids, dtype=np.int64)
        column = self._take(ids.reshape(-1), columns=["embeddings"]).column("embeddings")
        return _vectors(column).reshape(*ids.shape, -1)

    def all_embeddings(self) -> np.ndarray:
        """Every embedding, float32 (n, d), in id order (used to build an index)."""
        return self.embeddings(np.arange(len(self)))

    def _take(self, flat_ids: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        if flat_ids.size and (flat_ids.min() < 0 or flat_ids.max() >= len(self)):
            raise ValueError(
                f"Passage ids must lie in [0, {len(self)}) for the passages at {self.source}, got range "
                f"[{flat_ids.min()}, {flat_ids.max()}]; the index and the passages do not belong together."
            )
        table = self.table if columns is None else self.table.select(columns)
        rows = pa.array(flat_ids) if self.row_map is None else self.row_map.take(pa.array(flat_ids))
        return table.take(rows)

    def _view(self) -> pa.Table:
        return self.table if self.row_map is None else self.table.take(self.row_map)


def _vectors(column: pa.ChunkedArray) -> np.ndarray:
    """A column of equal-length float lists -> float32 (n, d)."""
    array = column.combine_chunks()
    n = len(array)
    values = array.flatten().to_numpy(zero_copy_only=False)
    if n and values.size % n:
        raise ValueError("The 'embeddings' column holds vectors of different lengths; every passage needs a d-vector.")
    return values.astype(np.float32, copy=False).reshape(n, -1 if n else 0)
