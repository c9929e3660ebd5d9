"""``KnowledgeBase``: a built knowledge base on disk, loaded lean (passages and index memory-mapped).

Layout of a knowledge-base folder (the reference's custom index reads ``passages/`` as
``passages_path`` and ``index.faiss`` as ``index_path``)::

    manifest.json                      encoder, pooling, dimension, metric, index kind/params, checksums
    passages/data-*.arrow, state.json  datasets.save_to_disk layout: id, title, text, embeddings
    index.faiss                        FAISS index; FAISS id i is passage row i

Passage ids: the FAISS id (what a retriever returns as ``doc_ids``) is the row position. Adding
passages appends rows (existing ids unchanged); replacing keeps the id; deleting removes rows, so
later rows move up (ids are remapped: new id = old id - number of deleted ids before it). The ``id``
column is a stable string key that never changes or gets reused, for callers that need one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragmodels.retrieval.index import FaissIndex, refine_factor
from ragmodels.retrieval.passages import PassageStore

from .assemble import check_agreement
from .manifest import INDEX_NAME, PASSAGES_DIR, Manifest, ManifestError, read_manifest, verify
from .publish import reading, recover


class KnowledgeBase:
    def __init__(self, path: Path, manifest: Manifest, passages: PassageStore, index: FaissIndex):
        self.path = path
        self.manifest = manifest
        self.passages = passages
        self.index = index

    @classmethod
    def load(cls, path: str | os.PathLike, full_check: bool = False, mmap: bool = True) -> "KnowledgeBase":
        """Open a knowledge base; check its files against the manifest (sizes and cheap checksums, or
        full SHA-256 with ``full_check``). Nothing is re-encoded; passages and index stay on disk."""
        path = Path(path)
        recover(path)
        with reading(path):  # one version: no publish swaps files in while they are checked and mapped
            manifest = read_manifest(path)
            verify(path, manifest, full=full_check)
            passages = PassageStore.load(path / PASSAGES_DIR)
            index = FaissIndex.read(path / INDEX_NAME, mmap=mmap)
        if len(passages) != manifest.passage_count or passages.dimension != manifest.dimension:
            raise ManifestError(f"The passages of {path} do not match its manifest (count or dimension).")
        check_agreement(index, len(passages), manifest.dimension)
        index.set_refine(refine_factor(manifest.index_kind, manifest.index_params), passages.embeddings)
        return cls(path, manifest, passages, index)

    # -- description --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.manifest.passage_count

    @property
    def dimension(self) -> int:
        return self.manifest.dimension

    @property
    def kind(self) -> str:
        return self.manifest.index_kind

    @property
    def size_bytes(self) -> int:
        """Bytes on disk of the passages and the index."""
        return sum(rec.size for rec in self.manifest.files.values())

    def __repr__(self) -> str:
        return (f"KnowledgeBase(path={str(self.path)!r}, passages={len(self)}, kind={self.kind!r}, "
                f"dimension={self.dimension}, size={_human(self.size_bytes)})")

    def describe(self) -> str:
        """A few lines for humans: size, kind, encoder."""
        m = self.manifest
        return "\n".join([
            f"knowledge base  {self.path}",
            f"passages        {len(self)} ({_human(self.size_bytes)} on disk)",
            f"index           {m.index_kind} {m.index_params or ''}".rstrip(),
            f"vectors         {m.dimension}-d, {m.metric}",
            f"encoder         {m.encoder or 'unknown'} (pooling: {m.pooling or 'unknown'})",
        ])

    # -- retrieval ----------------------------------------------------------------------------------
    @property
    def passages_path(self) -> str:
        return str(self.path / PASSAGES_DIR)

    @property
    def index_path(self) -> str:
        return str(self.path / INDEX_NAME)

    def retriever_config(self) -> dict:
        """RagConfig fields that make a retriever (ours or the reference's) read this knowledge base."""
        return {"index_name": "custom", "passages_path": self.passages_path, "index_path": self.index_path,
                "retrieval_vector_size": self.dimension}

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` passages of (bs, d) queries: scores float32 (bs, k), ids int64 (bs, k)."""
        return self.index.search(queries, k)

    def build_passage_tokens(self, generator_tokenizer, prefix: str | None = None, title_sep: str = " / "):
        """Tokenize every passage once for ``generator_tokenizer`` (and the retriever's ``prefix`` / ``title_sep``)
        and store the ids beside ``passages/``: retrievers over this knowledge base then tokenize no passage
        (``ragmodels.retrieval.passage_tokens``). Updates publish a new folder without it: build it again."""
        from ragmodels.retrieval.passage_tokens import build_passage_tokens

        return build_passage_tokens(self.passages, generator_tokenizer, prefix=prefix, title_sep=title_sep)

    def attach(self, retriever) -> None:
        """Hot-swap this knowledge base into a live ``RagRetriever``: its next call answers from it."""
        retriever.set_index(self)

    # -- updates (each one writes a new version and publishes it atomically) ------------------------
    # Each applies to the version on disk when it takes the writer lock (``publish``), which may be newer
    # than ``self`` when another process updated the knowledge base meanwhile; ids are checked against it.
    def add(self, titles: Sequence[str], texts: Sequence[str], embeddings: np.ndarray | None = None,
            encoder=None) -> "KnowledgeBase":
        """Append passages (new ids len(self)..); embed them with ``encoder`` (default: the manifest's)."""
        from .updates import add_passages

        return KnowledgeBase.load(add_passages(self, titles, texts, embeddings, encoder))

    def replace(self, ids: Sequence[int], titles: Sequence[str], texts: Sequence[str],
                embeddings: np.ndarray | None = None, encoder=None) -> "KnowledgeBase":
        """Give passages ``ids`` new titles/texts (and embeddings); their ids stay."""
        from .updates import replace_passages

        return KnowledgeBase.load(replace_passages(self, ids, titles, texts, embeddings, encoder))

    def delete(self, ids: Sequence[int]) -> "KnowledgeBase":
        """Remove passages ``ids``; later passages move up (see the module docstring)."""
        from .updates import delete_passages

        return KnowledgeBase.load(delete_passages(self, ids))


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
