"""The canonical knowledge base: wiki_dpr (21M Wikipedia passages) loaded through ``datasets``.

Same calls as the reference's ``CanonicalHFIndex``: passages first (``with_index=False``), the FAISS
index on ``init_retrieval`` (from ``config.index_path`` if set, else the dataset's own ``exact`` or
``compressed`` index). Without network access these calls fail; the error then says what to
download and how to point a "custom" retriever at the copy.
"""

from __future__ import annotations

from typing import Any

from .index import FaissIndex
from .passages import PassageStore


def load_passages(config) -> PassageStore:
    """wiki_dpr passages (title, text, embeddings) of ``config.dataset`` / ``config.dataset_split``."""
    dataset = _load(config, with_index=False)
    return PassageStore.from_dataset(dataset, source=f"{config.dataset} ({config.dataset_split})")


def load_index(config) -> FaissIndex:
    """The FAISS index of ``config.index_name`` ("exact", "compressed"), or the file at ``config.index_path``."""
    if config.index_path is not None:
        return FaissIndex.read(config.index_path)
    dataset = _load(config, with_index=True, with_embeddings=True, index_name=config.index_name)
    return FaissIndex(dataset.get_index("embeddings").faiss_index)


def _load(config, **dataset_kwargs: Any):
    from datasets import load_dataset

    try:
        return load_dataset(
            config.dataset,
            split=config.dataset_split,
            dummy=config.use_dummy_dataset,
            revision=config.dataset_revision,
            **dataset_kwargs,
        )
    except Exception as e:  # network, Hub and dataset-script errors all mean: not available here
        raise OSError(
            f"Could not load the '{config.dataset}' knowledge base (split={config.dataset_split!r}, "
            f"index_name={config.index_name!r}) through `datasets`: {type(e).__name__}: {e}\n"
            "Where the network is available, download it once: dataset = datasets.load_dataset("
            f"'{config.dataset}', with_index=True, index_name='{config.index_name}', split='{config.dataset_split}'), "
            "then dataset.get_index('embeddings').save(INDEX_FILE), dataset.drop_index('embeddings') and "
            "dataset.save_to_disk(PASSAGES_FOLDER). Offline, load the retriever with index_name='custom', "
            "passages_path=PASSAGES_FOLDER, index_path=INDEX_FILE."
        ) from e
