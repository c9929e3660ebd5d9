"""Index objects of a FAISS index over a passage store: ours (``IndexedPassages``) and the reference's API.

``IndexedPassages`` is the knowledge base the retriever searches in one call per batch (``retrieve``:
one FAISS search, one Arrow take). It also answers the reference's index API (``get_top_docs``,
``get_doc_dicts``, ``is_initialized``, ``init_index``), so code written for transformers' indexes works
with it. ``CustomHFIndex`` is the reference's constructor for a ``datasets.Dataset`` (with a FAISS index
on "embeddings", or one saved at ``index_path``) and its ``load_from_disk``; the canonical wiki_dpr
index is ``hub.CanonicalHFIndex``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .index import FaissIndex, refine_factor, require_complete
from .passages import PassageStore


class IndexedPassages:
    """A FAISS index over a passage store, FAISS id i = passage row i (custom and wiki_dpr indexes).

    The index may be loaded later (``init_index``): ``index_loader`` is called once, on first need.
    """

    def __init__(self, passages: PassageStore, index: FaissIndex | None = None,
                 index_loader: Callable[[], FaissIndex] | None = None):
        if index is None and index_loader is None:
            raise ValueError("Give the FAISS index of the passages, or how to load it.")
        self.passages = passages
        self.index = index
        self._index_loader = index_loader

    @classmethod
    def load(cls, passages_path: str | os.PathLike | None, index_path: str | os.PathLike | None) -> "IndexedPassages":
        """Passages folder (``save_to_disk``) now; the index file (memory-mapped) on ``init_index``."""
        return cls(_checked_passages(passages_path, index_path), index_loader=lambda: _read_index(index_path))

    def is_initialized(self) -> bool:
        return self.index is not None

    def init_index(self) -> None:
        if self.index is None:
            self.index = self._index_loader()
            if self.index.ntotal != len(self.passages):
                raise ValueError(
                    f"The index {self.index.path} holds {self.index.ntotal} vectors but the passages at "
                    f"{self.passages.source} are {len(self.passages)}; they do not belong together."
                )
        if getattr(self.index, "refine_vectors", True) is None:
            self.index.refine_vectors = self.passages.embeddings  # exact re-ranking reads the passages' vectors

    @property
    def dimension(self) -> int:
        return self.index.dimension if self.index is not None else self.passages.dimension

    def __len__(self) -> int:
        return len(self.passages)

    def retrieve(self, question_hidden_states: np.ndarray, n_docs: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """(bs, d) -> embeddings float32 (bs, n, d) from the passages, ids int64 (bs, n), doc_dicts."""
        _, ids = self.index.search(question_hidden_states, n_docs)  # (bs, n)
        doc_dicts, embeds = self._lookup(require_complete(ids))  # one take; embeds (bs, n, d)
        return embeds, ids, doc_dicts

    def get_top_docs(self, question_hidden_states: np.ndarray, n_docs: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The reference's search: (bs, d) -> ids int64 (bs, n), embeddings float32 (bs, n, d)."""
        _, ids = self.index.search(question_hidden_states, n_docs)  # (bs, n)
        return ids, self.passages.embeddings(require_complete(ids))

    def get_doc_dicts(self, doc_ids: np.ndarray) -> list[dict]:
        """Every column of the passages ``doc_ids`` (bs, n), one dict per question (embeddings as arrays)."""
        return self._lookup(doc_ids)[0]

    def _lookup(self, ids: np.ndarray) -> tuple[list[dict], np.ndarray]:
        doc_dicts, embeds = self.passages.lookup(ids)  # embeds (bs, n, d)
        for doc_dict, doc_embeds in zip(doc_dicts, embeds):
            doc_dict["embeddings"] = doc_embeds  # as the reference's numpy-formatted rows
        return doc_dicts, embeds


class CustomHFIndex(IndexedPassages):
    """The reference's ``CustomHFIndex``: passages with title, text, embeddings and their FAISS index.

    ``dataset``: a ``datasets.Dataset`` (or a ``PassageStore``); without ``index_path`` it must carry a FAISS
    index on "embeddings" (``dataset.add_faiss_index("embeddings")``), else the index file at ``index_path`` is
    read (memory-mapped) on ``init_index``. The dataset is read in place: unlike the reference, its format is
    left as it is, and an index read from ``index_path`` is not attached to it.
    """

    def __init__(self, vector_size: int, dataset: Any, index_path: str | os.PathLike | None = None):
        if isinstance(dataset, PassageStore):
            passages, self._dataset = dataset, None
        elif is_dataset(dataset):
            passages, self._dataset = PassageStore.from_dataset(dataset), dataset
        else:
            raise TypeError(f"Dataset should be a datasets.Dataset object, but got {type(dataset)}")
        if index_path is not None:
            super().__init__(passages, index_loader=lambda: _read_index(index_path))
        elif self._dataset is not None and "embeddings" in dataset.list_indexes():
            super().__init__(passages, FaissIndex(dataset.get_index("embeddings").faiss_index))
        else:
            raise ValueError(
                "Missing faiss index in the dataset. Make sure you called `dataset.add_faiss_index('embeddings', ...)` "
                "or `dataset.load_faiss_index('embeddings', file)`, or give index_path."
            )
        self.index_path = None if index_path is None else str(index_path)
        self.vector_size = vector_size

    @classmethod
    def load_from_disk(cls, vector_size: int, dataset_path: str | os.PathLike | None,
                       index_path: str | os.PathLike | None) -> "CustomHFIndex":
        """Passages saved by ``dataset.save_to_disk(dataset_path)`` (memory-mapped now) and the index saved by
        ``dataset.get_index('embeddings').save(index_path)`` (memory-mapped on ``init_index``)."""
        return cls(vector_size, _checked_passages(dataset_path, index_path), index_path)

    @property
    def dataset(self):
        """The passages as a ``datasets.Dataset`` (the one given, or the folder loaded with ``datasets``)."""
        if self._dataset is None:
            import datasets

            self._dataset = datasets.load_from_disk(self.passages.source)
        return self._dataset


def is_dataset(obj: Any) -> bool:
    """Whether ``obj`` is a ``datasets.Dataset``, without importing ``datasets`` (0.5 s) when it can't be one."""
    datasets = sys.modules.get("datasets")
    return datasets is not None and isinstance(obj, datasets.Dataset)


def _checked_passages(passages_path: str | os.PathLike | None, index_path: str | os.PathLike | None) -> PassageStore:
    """The passages folder (memory-mapped), after checking that both it and the index file are given and there."""
    if passages_path is None or index_path is None:
        raise ValueError(
            "A custom index needs passages_path and index_path: save the passages with "
            "dataset.save_to_disk(passages_path) and the index with dataset.get_index('embeddings').save(index_path)."
        )
    if not Path(index_path).is_file():
        raise ValueError(f"No FAISS index file at index_path={index_path}; point index_path at the saved index.")
    return PassageStore.load(passages_path)


def _read_index(index_path: str | os.PathLike) -> FaissIndex:
    """A FAISS file, memory-mapped; the ``index.faiss`` of a knowledge-base folder gets its manifest's exact
    re-ranking factor (``refine``; ivf_pq knowledge bases re-rank by default), as ``KnowledgeBase.load`` does."""
    index = FaissIndex.read(index_path)
    manifest = Path(index_path).parent / "manifest.json"
    if Path(index_path).name == "index.faiss" and manifest.is_file():
        try:
            params = json.loads(manifest.read_text()).get("index_params") or {}
        except (OSError, ValueError, AttributeError):
            params = {}
        index.set_refine(refine_factor(index.kind, params))
    return index
