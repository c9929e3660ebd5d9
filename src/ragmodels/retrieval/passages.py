"""Passage store: title / text / embeddings rows of an Arrow table, memory-mapped from disk.

The on-disk layout is the reference's custom knowledge base: a folder written by
``datasets.Dataset.save_to_disk`` (``passages_path``). ``load`` memory-maps its Arrow stream files
directly with pyarrow (the file list comes from ``state.json``; ``datasets.load_from_disk`` only as a
fallback for layouts it does not know), so opening a store costs the same few milliseconds and no RAM
whatever its size. Lookups gather only the rows asked for, chunk by chunk (as ``datasets``' fast
gather: search the chunk offsets, take within each chunk), never copying a whole column; embeddings
are read through zero-copy NumPy views of the mapped chunks.
"""

from __future__ import annotations

import hashlib
import json
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
        self._rows = None if row_map is None else np.asarray(row_map.to_numpy(zero_copy_only=False), dtype=np.int64)
        self._offsets: dict[str, np.ndarray] = {}  # column -> start row of each chunk (+ total)
        self._embedding_chunks: list[np.ndarray] | None = None  # zero-copy (rows, d) views, one per chunk
        self.identity: str | None = None  # digest of the saved files mapped (``load``); None in memory

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
        """Memory-map a folder written by ``datasets.Dataset.save_to_disk`` (zero copy, no ``datasets`` import)."""
        path = Path(path)
        if not path.is_dir():
            raise ValueError(
                f"No passages folder at {path}; passages_path must be a folder written by "
                "datasets.Dataset.save_to_disk (title, text, embeddings columns)."
            )
        before = folder_identity(path)
        table = _map_saved_dataset(path)
        store = cls(table, source=str(path)) if table is not None else cls._load_with_datasets(path)
        if before is not None and folder_identity(path) == before:  # unchanged while mapped: these files
            store.identity = before
        return store

    @classmethod
    def _load_with_datasets(cls, path: Path) -> "PassageStore":
        from datasets import Dataset, load_from_disk

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
        """One gather for a (bs, k) id matrix -> (doc_dicts, embeddings float32 (bs, k, d)).

        ``doc_dicts[i]`` maps every non-embedding column to the k values of question i, in id order.
        """
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 2:
            raise ValueError(f"ids must be a (batch, n_docs) matrix, got shape {ids.shape}.")
        bs, k = ids.shape
        rows = self._rows_of(ids.reshape(-1))  # (bs*k,) table rows
        columns = {name: self._gather_values(name, rows) for name in self.table.column_names if name != "embeddings"}
        doc_dicts = [{name: values[i * k : (i + 1) * k] for name, values in columns.items()} for i in range(bs)]
        return doc_dicts, self._gather_embeddings(rows).reshape(bs, k, -1)

    def fetch(self, ids: np.ndarray) -> list[dict]:
        """Titles, texts (and other non-embedding columns) of a (bs, k) id matrix, one dict per question."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 2:
            raise ValueError(f"ids must be a (batch, n_docs) matrix, got shape {ids.shape}.")
        bs, k = ids.shape
        rows = self._rows_of(ids.reshape(-1))
        columns = {name: self._gather_values(name, rows) for name in self.table.column_names if name != "embeddings"}
        return [{name: values[i * k : (i + 1) * k] for name, values in columns.items()} for i in range(bs)]

    def embeddings(self, ids: np.ndarray) -> np.ndarray:
        """Embeddings of a (bs, k) id matrix (any shape) -> float32 (*ids.shape, d), gathered from mapped chunks."""
        ids = np.asarray(ids, dtype=np.int64)
        return self._gather_embeddings(self._rows_of(ids.reshape(-1))).reshape(*ids.shape, -1)

    def all_embeddings(self) -> np.ndarray:
        """Every embedding, float32 (n, d), in id order (used to build an index)."""
        if self._rows is None:
            chunks = self._embedding_views()
            if not chunks:
                return np.zeros((0, 0), np.float32)
            return np.concatenate([c.astype(np.float32, copy=False) for c in chunks])
        return self.embeddings(np.arange(len(self)))

    # -- gathering --------------------------------------------------------------------------------
    def _rows_of(self, flat_ids: np.ndarray) -> np.ndarray:
        """Passage ids -> table rows (through ``row_map``), range-checked."""
        if flat_ids.size and (flat_ids.min() < 0 or flat_ids.max() >= len(self)):
            raise ValueError(
                f"Passage ids must lie in [0, {len(self)}) for the passages at {self.source}, got range "
                f"[{flat_ids.min()}, {flat_ids.max()}]; the index and the passages do not belong together."
            )
        return flat_ids if self._rows is None else self._rows[flat_ids]

    def _chunk_offsets(self, name: str) -> np.ndarray:
        offsets = self._offsets.get(name)
        if offsets is None:
            lengths = [len(c) for c in self.table.column(name).chunks]
            offsets = self._offsets[name] = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        return offsets

    def _by_chunk(self, name: str, rows: np.ndarray):
        """Yield (chunk index, positions in ``rows``, local rows in that chunk), one item per chunk touched."""
        offsets = self._chunk_offsets(name)
        chunk_of = np.searchsorted(offsets, rows, side="right") - 1  # (n,)
        if len(offsets) == 2:  # one chunk
            yield 0, slice(None), rows
            return
        order = np.argsort(chunk_of, kind="stable")
        chunks, starts = np.unique(chunk_of[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        for c, a, b in zip(chunks.tolist(), starts.tolist(), ends.tolist()):
            positions = order[a:b]
            yield c, positions, rows[positions] - offsets[c]

    def _gather_values(self, name: str, rows: np.ndarray) -> list:
        """Python values of column ``name`` at ``rows`` (takes within the chunks touched only)."""
        column = self.table.column(name)
        values: list = [None] * len(rows)
        for c, positions, local in self._by_chunk(name, rows):
            got = _take_values(column.chunk(c), local)
            if isinstance(positions, slice):
                return got
            for p, v in zip(positions.tolist(), got):
                values[p] = v
        return values

    def _embedding_views(self) -> list[np.ndarray]:
        if self._embedding_chunks is None:
            self._embedding_chunks = [_chunk_vectors(chunk) for chunk in self.table.column("embeddings").chunks]
        return self._embedding_chunks

    def _gather_embeddings(self, rows: np.ndarray) -> np.ndarray:
        views = self._embedding_views()
        if not len(rows):
            return np.zeros((0, views[0].shape[1] if views else 0), np.float32)
        parts = []
        for c, positions, local in self._by_chunk("embeddings", rows):
            parts.append((positions, views[c][local]))
        if len(parts) == 1 and isinstance(parts[0][0], slice):
            return parts[0][1].astype(np.float32, copy=False)
        out = np.empty((len(rows), parts[0][1].shape[1]), np.float32)
        for positions, block in parts:
            out[positions] = block
        return out

    def _take(self, flat_ids: np.ndarray, columns: list[str] | None = None) -> pa.Table:
        """Rows of the table (only ``columns``) for passage ids, gathered chunk by chunk."""
        rows = self._rows_of(np.asarray(flat_ids, dtype=np.int64))
        names = self.table.column_names if columns is None else columns
        arrays = []
        for name in names:
            column = self.table.column(name)
            pieces, order = [], []
            for c, positions, local in self._by_chunk(name, rows):
                pieces.append(column.chunk(c).take(pa.array(local, pa.int64())))
                order.append(np.arange(len(rows)) if isinstance(positions, slice) else positions)
            if not pieces:
                arrays.append(pa.array([], column.type))
                continue
            gathered = pa.concat_arrays(pieces)
            inverse = np.empty(len(rows), np.int64)
            inverse[np.concatenate(order)] = np.arange(len(rows))
            arrays.append(gathered.take(pa.array(inverse)))
        return pa.Table.from_arrays(arrays, names=list(names))

    def _view(self) -> pa.Table:
        return self.table if self.row_map is None else self.table.take(self.row_map)


def _take_values(chunk: pa.Array, local: np.ndarray) -> list:
    """``chunk.take(local).to_pylist()``; strings without nulls are sliced out of the Arrow buffers directly.

    The direct path matters at start-up: ``pa.array`` of Python/NumPy data imports pandas and ``take``
    imports ``pyarrow.compute`` (together about a second on a cold process).
    """
    kind = chunk.type
    if chunk.null_count == 0 and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        _, offsets_buffer, data = chunk.buffers()
        offsets = np.frombuffer(offsets_buffer, dtype=np.int64 if pa.types.is_large_string(kind) else np.int32,
                                count=chunk.offset + len(chunk) + 1)
        starts = offsets[chunk.offset + local].tolist()
        ends = offsets[chunk.offset + local + 1].tolist()
        view = memoryview(data) if data is not None else memoryview(b"")
        return [str(view[a:b], "utf-8") for a, b in zip(starts, ends)]
    indices = pa.Array.from_buffers(pa.int64(), len(local), [None, pa.py_buffer(np.ascontiguousarray(local, np.int64))])
    return chunk.take(indices).to_pylist()


def folder_identity(folder: str | os.PathLike) -> str | None:
    """A digest of a ``save_to_disk`` folder that changes when it is rewritten (its ``state.json`` and the
    names, sizes and modification times of its Arrow files); None for folders without a readable state."""
    folder = Path(folder)
    try:
        state = (folder / "state.json").read_bytes()
        names = [entry["filename"] for entry in json.loads(state)["_data_files"]]
        stats = [(name, (folder / name).stat()) for name in names]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    digest = hashlib.sha256(state)
    for name, st in stats:
        digest.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def _chunk_vectors(chunk: pa.Array) -> np.ndarray:
    """One chunk of the embeddings column -> (rows, d) NumPy array, a zero-copy view where the layout allows."""
    n = len(chunk)
    if n == 0:
        return np.zeros((0, 0), np.float32)
    if pa.types.is_fixed_size_list(chunk.type) and chunk.null_count == 0:
        d, child = chunk.type.list_size, chunk.values
        if child.null_count == 0 and pa.types.is_floating(child.type):
            buffer = child.buffers()[1]  # the raw values, read in place (no flatten: it may touch every page)
            width = child.type.bit_width // 8
            flat = np.frombuffer(buffer, dtype=child.type.to_pandas_dtype(), count=n * d,
                                 offset=(child.offset + chunk.offset * d) * width)
            return flat.reshape(n, d)
    values = chunk.flatten()  # respects the chunk's offset
    try:
        flat = values.to_numpy(zero_copy_only=True)
    except (pa.ArrowInvalid, NotImplementedError):
        flat = values.to_numpy(zero_copy_only=False)
    if flat.size % n:
        raise ValueError("The 'embeddings' column holds vectors of different lengths; every passage needs a d-vector.")
    return flat.reshape(n, -1)


def _map_saved_dataset(path: Path) -> pa.Table | None:
    """The Arrow table of a ``save_to_disk`` folder, memory-mapped (zero copy); None for layouts we do not read."""
    state_file = path / "state.json"
    if not state_file.is_file():
        return None
    try:
        state = json.loads(state_file.read_text())
        files = [entry["filename"] for entry in state["_data_files"]]
    except (ValueError, KeyError, TypeError):
        return None
    if state.get("_indices_data_files") or not files:
        return None
    batches: list[pa.RecordBatch] = []
    schema = None
    for name in files:
        source = pa.memory_map(str(path / name))
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            return None
        schema = schema or reader.schema
        batches.extend(reader)
    return pa.Table.from_batches(batches, schema=schema)
