"""Sharding a knowledge base and merging shard results (no Ray needed): same ids and scores as one index.

Also the knowledge bases the Ray tests (test_distributed_ray.py) use, built without an encoder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import PASSAGES, passage_embeddings
from datasets import Dataset

from ragmodels.cli import main
from ragmodels.retrieval.distributed import merge_topk, read_layout, shard_knowledge_base
from ragmodels.retrieval.distributed.merge import kth_scores
from ragmodels.retrieval.distributed.server import ShardServer
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



@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    return tie_kb(tmp_path_factory.mktemp("tie"))


def servers_of(shards_dir) -> list[ShardServer]:
    layout = read_layout(shards_dir)
    return [ShardServer(str(layout.shard_path(spec)), spec) for spec in layout.shards]


def sharded_search(servers: list[ShardServer], queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """What ShardedKnowledgeBase.search does with its actors, in process."""
    answers = [server.search(queries, k) for server in servers]
    thresholds = kth_scores([scores for scores, _ in answers], k)
    answers = [server.search_down_to(queries, thresholds, 2 * k) for server in servers]
    return merge_topk([s for s, _ in answers], [i for _, i in answers], k, larger_ids_first=True, scan_ties=True)


def test_cli_shards_are_knowledge_bases_covering_the_source(kb, tmp_path, capsys):
    assert main(["index", "shard", str(kb.path), "--shards", "3", "--out", str(tmp_path / "shards")]) == 0
    assert "3 shards of 101 passages" in capsys.readouterr().out
    layout = read_layout(tmp_path / "shards")
    assert [(s.offset, s.count) for s in layout.shards] == [(0, 34), (34, 34), (68, 33)]
    assert (layout.dimension, layout.index_kind, layout.metric) == (kb.dimension, "flat", "ip")
    source = kb.passages.embeddings(np.arange(len(kb))[None])[0]  # (n, d)
    for spec in layout.shards:
        shard = KnowledgeBase.load(layout.shard_path(spec), full_check=True)
        rows = np.arange(spec.offset, spec.offset + spec.count)
        assert shard.passages.fetch(np.arange(spec.count)[None])[0]["title"] == [f"title {i}" for i in rows]
        np.testing.assert_array_equal(shard.index.reconstruct(np.arange(spec.count)), source[rows])


@pytest.mark.parametrize("num_shards", [2, 3, 7])
@pytest.mark.parametrize("num_queries", [3, 30])  # FAISS takes its BLAS path from 20 queries on
def test_merged_shards_equal_one_index_with_ties(kb, tmp_path, num_shards, num_queries):
    shard_knowledge_base(kb.path, tmp_path / "shards", num_shards)
    servers = servers_of(tmp_path / "shards")
    queries = tie_queries(num_queries)
    assert (np.diff(kb.search(queries, 17)[0], axis=1) == 0).any(axis=1).all(), "every query should see ties"
    for k in (1, 2, 5, 17, 101):
        expected_scores, expected_ids = kb.search(queries, k)
        scores, ids = sharded_search(servers, queries, k)
        np.testing.assert_array_equal(ids, expected_ids, err_msg=f"k={k}")
        np.testing.assert_array_equal(scores, expected_scores, err_msg=f"k={k}")


def test_ties_choose_like_faiss_scan():
    """k=2, scores 5 (id 0, shard 0) and 5, 5, 9 (ids 1-3, shard 1): FAISS keeps ids 3 and 1."""
    scores = [np.array([[5.0]], np.float32), np.array([[9.0, 5.0, 5.0]], np.float32)]
    ids = [np.array([[0]]), np.array([[3, 2, 1]])]
    _, merged = merge_topk(scores, ids, 2, larger_ids_first=True, scan_ties=True)
    assert merged.tolist() == [[3, 1]]


def test_bad_shard_counts(kb, tmp_path):
    for bad in (0, len(kb) + 1):
        assert main(["index", "shard", str(kb.path), "--shards", str(bad), "--out", str(tmp_path / "s")]) == 1
    with pytest.raises(ValueError, match="not a sharded knowledge base"):
        read_layout(kb.path)


def test_without_ray_a_clear_import_error(kb, tmp_path, monkeypatch):
    from ragmodels.retrieval.distributed import RayRagRetriever, ShardedKnowledgeBase

    monkeypatch.setitem(sys.modules, "ray", None)
    shard_knowledge_base(kb.path, tmp_path / "shards", 2)
    with pytest.raises(ImportError, match=r'pip install "ragmodels\[ray\]"'):
        ShardedKnowledgeBase(tmp_path / "shards")
    with pytest.raises(ImportError, match=r'pip install "ragmodels\[ray\]"'):
        RayRagRetriever(None, None, None, index=tmp_path / "shards")
