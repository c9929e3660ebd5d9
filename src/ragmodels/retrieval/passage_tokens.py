"""Passage tokens on disk: every passage's generator-tokenizer ids, built once, memory-mapped next to the passages.

The fast contextualization path (``contextualize.ContextCache``) tokenizes the passage part
``prefix + title + title_sep + text`` of each passage once and concatenates it with the question's ids.
In memory that cache starts empty in every process and is bounded (an LRU), so the first questions
over a large knowledge base pay the tokenizer for every passage they retrieve. A ``PassageTokens``
store holds those ids for ALL passages, computed by the same function (``passage_part`` +
``content_ids``), so the retriever never tokenizes a passage: it slices the ids out of a memory-mapped
file. Rows whose split is not provably exact are flagged and take the reference's whole-string call,
as in memory.

A store belongs to one tokenizer (the fingerprint of its class and backend JSON), one ``prefix`` and
one ``title_sep``, and to one version of the passages (``PassageStore.identity``: their ``state.json``
and the names, sizes and modification times of their Arrow files). Anything else does not match and is
not used. Layout, beside a passages folder ``P`` (a knowledge base's ``passages/``)::

    P.tokens/<key>/offsets.npy  int64 (n + 1,): passage i's ids are ids[offsets[i]:offsets[i + 1]]
    P.tokens/<key>/safe.npy     bool (n,): False where the row takes the tokenizer call
    P.tokens/<key>/ids.bin      raw uint16 ids (uint32 for vocabularies above 65,536)
    P.tokens/<key>/meta.json    fingerprint, prefix, title_sep, passages identity, counts (written last)

``key`` hashes the fingerprint, prefix and title_sep. Writes are staged (``_io.staged_dir``) with
``meta.json`` removed first and written last, so a crash leaves no store that looks complete.
Knowledge-base updates publish a new folder without it: rebuild after updating (``ragmodels`` tells
stale stores apart by the passages identity, and a retriever without a store is only slower).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_bytes, staged_dir
from .contextualize import ContextCache, content_ids, passage_part
from .passages import PassageStore

FORMAT_VERSION = 1
SUFFIX = ".tokens"
META_NAME = "meta.json"


def store_key(fingerprint: str, prefix: str, title_sep: str) -> str:
    return hashlib.sha256(json.dumps([fingerprint, prefix, title_sep]).encode()).hexdigest()[:20]


def default_folder(passages_path: str | os.PathLike, fingerprint: str, prefix: str, title_sep: str) -> Path:
    """Where the store of these passages for this tokenizer / prefix / title_sep lives by default."""
    passages_path = Path(passages_path)
    return passages_path.with_name(passages_path.name + SUFFIX) / store_key(fingerprint, prefix or "", title_sep)


class PassageTokens:
    """The memory-mapped ids of every passage part (see the module docstring); ``lookup`` by passage id."""

    def __init__(self, folder: Path, meta: dict, offsets: np.ndarray, safe: np.ndarray, ids: np.ndarray):
        self.folder = folder
        self.meta = meta
        self.offsets = offsets  # (n + 1,) int64
        self.safe = safe  # (n,) bool
        self.ids = ids  # (total,) uint16 / uint32

    def __len__(self) -> int:
        return len(self.safe)

    def __repr__(self) -> str:
        return f"PassageTokens(folder={str(self.folder)!r}, passages={len(self)}, ids={len(self.ids)})"

    @property
    def nbytes(self) -> int:
        """Bytes on disk of the three arrays."""
        return self.offsets.nbytes + self.safe.nbytes + self.ids.nbytes

    def serves(self, fingerprint: str, prefix: str | None, title_sep: str) -> bool:
        """Whether these ids are the ones ``ContextCache`` computes for this tokenizer, prefix and title_sep."""
        meta = self.meta
        return (meta["fingerprint"], meta["prefix"], meta["title_sep"]) == (fingerprint, prefix or "", title_sep)

    def lookup(self, passage_ids: np.ndarray) -> list[np.ndarray | None]:
        """Content ids of each passage (a view into the mapped file), None for rows that take the tokenizer call."""
        rows = np.asarray(passage_ids, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise ValueError(f"Passage ids must lie in [0, {len(self)}) for the token store {self.folder}.")
        starts, ends = self.offsets[rows].tolist(), self.offsets[rows + 1].tolist()
        ids = self.ids
        return [ids[a:b] if ok else None for a, b, ok in zip(starts, ends, self.safe[rows].tolist())]

    @classmethod
    def open(cls, folder: str | os.PathLike, identity: str | None = None) -> "PassageTokens | None":
        """The store in ``folder`` (memory-mapped), or None when it is missing, incomplete, of another format,
        or built for other passages than ``identity`` (when given)."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / META_NAME).read_text())
        except (OSError, ValueError):
            return None
        if meta.get("format_version") != FORMAT_VERSION or (identity is not None and meta.get("passages") != identity):
            return None
        try:
            offsets = np.load(folder / "offsets.npy", mmap_mode="r")
            safe = np.load(folder / "safe.npy", mmap_mode="r")
            ids = _map_ids(folder / "ids.bin", np.dtype(meta["dtype"]), meta["total_ids"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if len(offsets) != meta["count"] + 1 or len(safe) != meta["count"] or int(offsets[-1]) != len(ids):
            return None
        return cls(folder, meta, offsets, safe, ids)


def find_passage_tokens(passages: Any, fingerprint: str | None, prefix: str | None,
                        title_sep: str) -> PassageTokens | None:
    """The store beside ``passages`` (a PassageStore read from a folder) that serves this tokenizer
    fingerprint, prefix and title_sep for the passages as they are now; None if there is none."""
    identity = getattr(passages, "identity", None)  # of the files it mapped (PassageStore.load)
    if fingerprint is None or identity is None:
        return None
    store = PassageTokens.open(default_folder(passages.source, fingerprint, prefix or "", title_sep), identity)
    if store is None or len(store) != len(passages) or not store.serves(fingerprint, prefix, title_sep):
        return None
    return store


def build_passage_tokens(passages: PassageStore | str | os.PathLike, tokenizer: Any, *, prefix: str | None = None,
                         title_sep: str = " / ", folder: str | os.PathLike | None = None,
                         batch_size: int = 4096) -> PassageTokens:
    """Tokenize every passage's part once and write the store (default: beside the passages folder).

    ``passages``: a PassageStore loaded from a folder, or that folder. ``tokenizer``: the generator
    tokenizer; ``prefix`` / ``title_sep``: what the retriever joins (``config.generator.prefix``,
    ``config.title_sep``). Returns the opened store. Raises ValueError for a tokenizer the fast path does
    not cover (its ids cannot be split, so a store could not be used) or passages not read from a folder.
    """
    store_passages = passages if isinstance(passages, PassageStore) else PassageStore.load(passages)
    identity = store_passages.identity
    if identity is None:
        raise ValueError(
            f"The passages at {store_passages.source} were not read from a saved folder; a token store is "
            "written beside a passages folder (save the passages with save_to_disk first)."
        )
    plan = ContextCache(tokenizer).plan
    if plan is None:
        raise ValueError(
            f"{type(tokenizer).__name__} is not a tokenizer whose passage ids can be computed apart from the "
            "question (see ragmodels.retrieval.contextualize); its contexts always take the full tokenizer call."
        )
    prefix = prefix or ""
    folder = Path(folder) if folder is not None else default_folder(store_passages.source, plan.fingerprint, prefix,
                                                                      title_sep)
    dtype = np.dtype(np.uint16 if len(tokenizer) <= 1 << 16 else np.uint32)
    n = len(store_passages)
    offsets = np.zeros(n + 1, np.int64)
    safe = np.zeros(n, bool)
    (folder / META_NAME).unlink(missing_ok=True)  # the old store (if any) stops counting as complete
    with staged_dir(folder) as tmp:
        with open(tmp / "ids.bin", "wb") as out:
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                docs = store_passages.fetch(np.arange(start, stop)[None, :])[0]
                parts = [passage_part(plan, prefix, title_sep, t, x) for t, x in zip(docs["title"], docs["text"])]
                encoded = iter(content_ids(tokenizer, [p for p in parts if p is not None]))
                lengths = np.zeros(stop - start, np.int64)
                for i, part in enumerate(parts):
                    if part is not None:
                        ids = next(encoded)
                        lengths[i] = len(ids)
                        out.write(ids.astype(dtype).tobytes())
                safe[start:stop] = [p is not None for p in parts]
                offsets[start + 1 : stop + 1] = offsets[start] + np.cumsum(lengths)
        np.save(tmp / "offsets.npy", offsets)
        np.save(tmp / "safe.npy", safe)
    meta = {"format_version": FORMAT_VERSION, "fingerprint": plan.fingerprint, "prefix": prefix,
            "title_sep": title_sep, "passages": identity, "passages_path": str(store_passages.source),
            "count": n, "total_ids": int(offsets[-1]), "dtype": dtype.name, "tokenizer": type(tokenizer).__name__}
    atomic_write_bytes(folder / META_NAME, json.dumps(meta, indent=2).encode())
    opened = PassageTokens.open(folder, identity)
    if opened is None:  # pragma: no cover - we just wrote it
        raise RuntimeError(f"The token store written to {folder} cannot be read back.")
    return opened


def _map_ids(path: Path, dtype: np.dtype, count: int) -> np.ndarray:
    """The raw ids file as a read-only array view of a memory map (plain ndarray slices: cheap to take)."""
    if count == 0:
        return np.zeros(0, dtype)
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if len(mapped) != count * dtype.itemsize:
        raise ValueError(f"{path} holds {len(mapped)} bytes, expected {count * dtype.itemsize}.")
    return np.frombuffer(mapped, dtype=dtype, count=count)
