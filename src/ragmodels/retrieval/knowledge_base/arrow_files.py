"""Passage files in the ``datasets.save_to_disk`` layout, written and read as streams.

A knowledge base's ``passages/`` folder holds ``data-XXXXX-of-NNNNN.arrow`` files (Arrow IPC streams
with the ``huggingface`` schema metadata) plus ``state.json`` and ``dataset_info.json``, so that
``datasets.load_from_disk`` (and the reference's custom index) memory-maps it. Columns: ``id``
(stable string key), ``title``, ``text``, ``embeddings`` (fixed-size list of float32).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasets import Features, List, Value
from datasets.arrow_writer import ArrowWriter

from ragmodels._io import fsync_file

def passage_features(dim: int) -> Features:
    return Features({"id": Value("string"), "title": Value("string"), "text": Value("string"),
                     "embeddings": List(Value("float32"), length=dim)})


class ArrowFile:
    """Write one Arrow stream file table by table; it appears under its name only once complete."""

    def __init__(self, path: Path, dim: int):
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._writer = ArrowWriter(features=passage_features(dim), path=str(self._tmp))

    def write(self, table: pa.Table) -> None:
        """Append ``table`` as ONE record batch: few chunks keep row lookups (Arrow ``take``) cheap."""
        self._writer.write_table(table, writer_batch_size=max(table.num_rows, 1))

    def __enter__(self) -> "ArrowFile":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._writer.finalize()
        self._writer.close()
        if exc_type is None:
            fsync_file(self._tmp)  # durable before it takes its name (a resumed build trusts named shards)
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def write_arrow(path: Path, ids: Sequence[str], titles: Sequence[str], texts: Sequence[str],
                embeddings: np.ndarray) -> None:
    """Write one Arrow stream file of passages; ``embeddings`` float32 (n, dim)."""
    with ArrowFile(path, embeddings.shape[1]) as f:
        f.write(passages_table(ids, titles, texts, embeddings))


def passages_table(ids: Sequence[str], titles: Sequence[str], texts: Sequence[str], embeddings: np.ndarray) -> pa.Table:
    """An Arrow table of passages; ``embeddings`` float32 (n, dim)."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), embeddings.shape[1])
    return pa.table({"id": pa.array(list(ids), pa.string()), "title": pa.array(list(titles), pa.string()),
                     "text": pa.array(list(texts), pa.string()), "embeddings": vectors})


def embeddings_of(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """The embeddings column as float32 (n, dim), zero-copy where Arrow allows."""
    column = table.column("embeddings")
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    dim = column.type.list_size
    if not chunks:
        return np.zeros((0, dim), np.float32)
    parts = [c.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim) for c in chunks]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def data_file_names(count: int) -> list[str]:
    return [f"data-{i:05d}-of-{count:05d}.arrow" for i in range(count)]


def publish_passages(folder: Path, sources: Sequence[Path], dim: int) -> list[str]:
    """Place ``sources`` (Arrow files) into ``folder`` in the save_to_disk layout; return relative names.

    Files are hard-linked where the filesystem allows (no copy), else copied.
    """
    folder.mkdir(parents=True, exist_ok=True)
    names = data_file_names(len(sources))
    for src, name in zip(sources, names):
        _link_or_copy(src, folder / name)
    state = {"_data_files": [{"filename": n} for n in names], "_fingerprint": _fingerprint(sources),
             "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
             "_output_all_columns": False, "_split": None}
    (folder / "state.json").write_text(json.dumps(state, indent=2))
    info = {"citation": "", "description": "", "features": passage_features(dim).to_dict(), "homepage": "", "license": ""}
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2))
    return [*names, "state.json", "dataset_info.json"]


def data_files(folder: Path) -> list[Path]:
    """The Arrow files of a save_to_disk folder, in row order (from its state.json)."""
    state = json.loads((folder / "state.json").read_text())
    return [folder / f["filename"] for f in state["_data_files"]]


def iter_batches(files: Sequence[Path]) -> Iterator[pa.RecordBatch]:
    """Stream the record batches of Arrow files, memory-mapped, in row order."""
    for path in files:
        yield from pa.ipc.open_stream(pa.memory_map(str(path)))


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _fingerprint(sources: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for src in sources:
        stat = src.stat()
        digest.update(f"{src.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]
