"""Retrieval: FAISS index kinds, the Arrow passage store, contextualization and the RagRetriever."""

from .index import INDEX_KINDS, FaissIndex, IndexParams, build_index, create_index
from .passages import PassageStore

__all__ = ["INDEX_KINDS", "FaissIndex", "IndexParams", "PassageStore", "build_index", "create_index"]
