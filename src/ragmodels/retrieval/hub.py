"""The canonical knowledge base: wiki_dpr (21M Wikipedia passages) loaded through ``datasets``.

``CanonicalHFIndex`` has the reference's constructor and calls: passages first (``with_index=False``),
the FAISS index on ``init_index`` (from ``index_path`` if set, else the dataset's own ``exact`` or
``compressed`` index). ``datasets.load_dataset`` is looked up at each call, so a test or an application
may replace it. Without network access these calls fail; the error then says what to download and how to
point a "custom" retriever at the copy.
"""

from __future__ import annotations

import os
from typing import Any

from .hf_index import IndexedPassages, _read_index
from .index import FaissIndex
from .passages import PassageStore


class CanonicalHFIndex(IndexedPassages):
    """wiki_dpr (or another dataset with title, text, embeddings and a FAISS index) from the Hub.

    Unlike the reference, ``index_path`` and ``index_name`` may both be given: the file at ``index_path`` is
    then read instead of downloading the dataset's index ``index_name``.
    """

    def __init__(self, vector_size: int, dataset_name: str = "wiki_dpr", dataset_split: str = "train",
                 index_name: str | None = None, index_path: str | os.PathLike | None = None,
                 use_dummy_dataset: bool = False, dataset_revision: str | None = None):
        if index_name is None and index_path is None:
            raise ValueError("Please provide `index_name` or `index_path`.")
        self.vector_size = vector_size
        self.dataset_name, self.dataset_split = dataset_name, dataset_split
        self.index_name, self.index_path = index_name, index_path
        self.use_dummy_dataset, self.dataset_revision = use_dummy_dataset, dataset_revision
        self.dataset = self._load(with_index=False)
        passages = PassageStore.from_dataset(self.dataset, source=f"{dataset_name} ({dataset_split})")
        super().__init__(passages, index_loader=self._load_index)

    @classmethod
    def from_config(cls, config) -> "CanonicalHFIndex":
        """The knowledge base a RagConfig names (``dataset``, ``dataset_split``, ``index_name``, ...)."""
        return cls(config.retrieval_vector_size, config.dataset, config.dataset_split, config.index_name,
                   config.index_path, config.use_dummy_dataset, config.dataset_revision)

    def _load_index(self) -> FaissIndex:
        """The file at ``index_path``, or the dataset's own index ``index_name``."""
        if self.index_path is not None:
            return _read_index(self.index_path)
        self.dataset = self._load(with_index=True, with_embeddings=True, index_name=self.index_name)
        return FaissIndex(self.dataset.get_index("embeddings").faiss_index)

    def _load(self, **dataset_kwargs: Any):
        import datasets  # looked up at call time: datasets.load_dataset may be replaced (tests, mirrors)

        try:
            return datasets.load_dataset(
                self.dataset_name,
                split=self.dataset_split,
                dummy=self.use_dummy_dataset,
                revision=self.dataset_revision,
                **dataset_kwargs,
            )
        except Exception as e:  # network, Hub and dataset-script errors all mean: not available here
            raise OSError(
                f"Could not load the '{self.dataset_name}' knowledge base (split={self.dataset_split!r}, "
                f"index_name={self.index_name!r}) through `datasets`: {type(e).__name__}: {e}\n"
                "Where the network is available, download it once: dataset = datasets.load_dataset("
                f"'{self.dataset_name}', with_index=True, index_name='{self.index_name}', "
                f"split='{self.dataset_split}'), then dataset.get_index('embeddings').save(INDEX_FILE), "
                "dataset.drop_index('embeddings') and dataset.save_to_disk(PASSAGES_FOLDER). Offline, load the "
                "retriever with index_name='custom', passages_path=PASSAGES_FOLDER, index_path=INDEX_FILE."
            ) from e
