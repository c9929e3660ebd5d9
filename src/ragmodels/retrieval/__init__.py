"""Retrieval: FAISS index kinds, the Arrow passage store, index objects, contextualization and the RagRetriever."""

from .hf_index import CustomHFIndex, IndexedPassages
from .hub import CanonicalHFIndex
from .index import INDEX_KINDS, FaissIndex, IndexParams, build_index, create_index
from .legacy import LegacyIndex
from .passages import PassageStore
from .retriever import RagRetriever

__all__ = [
    "INDEX_KINDS", "CanonicalHFIndex", "CustomHFIndex", "FaissIndex", "IndexParams", "IndexedPassages", "LegacyIndex",
    "PassageStore", "RagRetriever", "build_index", "create_index",
]
