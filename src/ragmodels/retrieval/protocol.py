"""The one protocol every knowledge-base kind answers, so the retriever needs to know no kind by name.

Kinds: ``IndexedPassages`` (a FAISS index of any kind over a memory-mapped passage store: knowledge bases
built here, custom ``datasets`` indexes as ``CustomHFIndex``, wiki_dpr as ``CanonicalHFIndex``),
``ShardedKnowledgeBase`` (shards served by Ray actors) and ``LegacyIndex`` (DPR's files). The first three
methods are transformers' index API, so code written for its indexes works with ours, and an index object of
that API alone (``get_top_docs`` + ``get_doc_dicts``) is still accepted by ``RagRetriever``; ``retrieve`` is
the one-call search + fetch our kinds add. ``retrieval.retriever.open_knowledge_base`` opens any of them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class KnowledgeBaseIndex(Protocol):
    """A searchable set of passages with their embeddings (question vectors in, passages out)."""

    def is_initialized(self) -> bool:
        """Whether the index is loaded (``init_index`` loads it)."""

    def init_index(self) -> None:
        """Load the index (memory-mapped where the kind allows); idempotent."""

    def get_top_docs(self, question_hidden_states: np.ndarray, n_docs: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """(bs, d) query vectors -> passage ids int64 (bs, n_docs), their embeddings float32 (bs, n_docs, d)."""

    def get_doc_dicts(self, doc_ids: np.ndarray) -> list[dict]:
        """(bs, n) passage ids -> one dict of columns (title, text, embeddings, ...) per question."""

    def retrieve(self, question_hidden_states: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """``get_top_docs`` and ``get_doc_dicts`` in one call: embeddings (bs, n, d), ids (bs, n), doc_dicts."""

    def __len__(self) -> int:
        """The number of passages."""
