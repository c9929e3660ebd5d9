"""Knowledge bases for the distributed-retrieval tests, built without an encoder (import of a saved dataset)."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
from conftest import PASSAGES, passage_embeddings
from datasets import Dataset

from ragmodels.retrieval.knowledge_base import KnowledgeBase, import_saved_dataset

TIE_DIM = 8


def make_kb(folder: Path, titles: list[str], texts: list[str], embeddings: np.ndarray) -> KnowledgeBase:
    """A flat-index knowledge base in ``folder`` / "kb" over (n, d) ``embeddings``."""
    dataset = Dataset.from_dict({"title": titles, "text": texts, "embeddings": embeddings.tolist()})
    dataset.save_to_disk(str(folder / "dataset"))
    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(embeddings)
    faiss.write_index(index, str(folder / "index.faiss"))
    return import_saved_dataset(folder / "dataset", folder / "index.faiss", folder / "kb")


def tie_kb(folder: Path, n: int = 101) -> KnowledgeBase:
    """Small-integer embeddings: exact float scores with many ties, also across shard boundaries."""
    embeddings = np.random.default_rng(0).integers(-2, 3, (n, TIE_DIM)).astype(np.float32)
    return make_kb(folder, [f"title {i}" for i in range(n)], [f"text {i}" for i in range(n)], embeddings)


def tie_queries(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(-2, 3, (n, TIE_DIM)).astype(np.float32)


def passage_kb(folder: Path) -> KnowledgeBase:
    """The shared tiny passages (conftest) with their random DIM-d embeddings."""
    return make_kb(folder, [t for t, _ in PASSAGES], [x for _, x in PASSAGES], passage_embeddings())
