"""Exact re-ranking of compressed-index candidates (FaissIndex.set_refine) from the passages' embeddings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ragmodels.retrieval.index import build_index
from ragmodels.retrieval.passages import PassageStore
from ragmodels.retrieval.retriever import IndexedPassages


def clustered(n=3000, d=32, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((30, d)).astype(np.float32)
    x = centers[rng.integers(0, 30, n)] + 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    return x, (x[rng.integers(0, n, 50)] + 0.1 * rng.standard_normal((50, d))).astype(np.float32)


def recall(ids, exact):
    return np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(ids.tolist(), exact.tolist())])


def test_refine_restores_recall_and_scores_are_exact():
    x, queries = clustered()
    exact_scores, exact = build_index(x, "flat").search(queries, 5)
    index = build_index(x, "ivf_pq", pq_m=8, nprobe=16)
    plain = recall(index.search(queries, 5)[1], exact)
    index.set_refine(20, lambda ids: x[ids])
    scores, ids = index.search(queries, 5)
    assert recall(ids, exact) >= max(plain, 0.95)
    np.testing.assert_allclose(scores, np.einsum("bd,bkd->bk", queries, x[ids]), rtol=1e-5, atol=1e-4)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    index.set_refine(1)
    assert recall(index.search(queries, 5)[1], exact) == plain


def test_indexed_passages_refine_from_the_store():
    x, queries = clustered(n=1200, d=16)
    table = pa.table({"title": [str(i) for i in range(len(x))], "text": ["t"] * len(x),
                      "embeddings": pa.array(list(x), pa.list_(pa.float32()))})
    kb = IndexedPassages(PassageStore(table), build_index(x, "ivf_sq8", nprobe=2))
    kb.init_index()
    kb.index.set_refine(8)
    embeds, ids, docs = kb.retrieve(queries, 4)
    exact = build_index(x, "flat").search(queries, 4)[1]
    assert recall(ids, exact) >= 0.95
    np.testing.assert_array_equal(embeds, x[ids])
