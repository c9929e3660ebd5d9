"""Retrieval: FAISS index kinds, the Arrow passage store, contextualization and the RagRetriever."""

from .index import INDEX_KINDS, FaissIndex, IndexParams, build_index, create_index
from .legacy import LegacyIndex
from .passages import PassageStore
from .retriever import IndexedPassages, RagRetriever

__all__ = [
    "INDEX_KINDS", "FaissIndex", "IndexParams", "IndexedPassages", "LegacyIndex", "PassageStore", "RagRetriever",
    "build_index", "create_index",
]
