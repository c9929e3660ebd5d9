"""RayRagRetriever on a local Ray (2 CPUs): same results as RagRetriever, shared actors, dead actors."""

from __future__ import annotations

import copy
import os
import signal

import numpy as np
import pytest
import torch
from conftest import ANSWERS, QUESTIONS, tiny_rag_config

from ragmodels import RagTokenForGeneration
from ragmodels.retrieval import RagRetriever
from ragmodels.retrieval.distributed import RayRagRetriever, ShardedKnowledgeBase, ShardError
from ragmodels.retrieval.distributed import shard_knowledge_base

from .conftest import query_vectors
from .test_distributed_sharding import passage_kb, tie_kb, tie_queries

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def passages(tmp_path_factory):
    """(knowledge-base folder, its 2-shard folder) of the shared tiny passages."""
    root = tmp_path_factory.mktemp("passages")
    kb = passage_kb(root)
    return kb.path, shard_knowledge_base(kb.path, root / "shards", 2).root


@pytest.fixture(scope="module")
def tie_shards(tmp_path_factory):
    """(knowledge base with many tied scores, its 2 shards served by actors)."""
    root = tmp_path_factory.mktemp("ties")
    kb = tie_kb(root)
    sharded = ShardedKnowledgeBase(shard_knowledge_base(kb.path, root / "shards", 2).root)
    sharded.init_index()
    return kb, sharded


@pytest.fixture(scope="module")
def config(bart_tokenizer):
    return tiny_rag_config(bart_tokenizer)


@pytest.fixture(scope="module")
def retrievers(passages, config, question_tokenizer, bart_tokenizer):
    """(RagRetriever over the knowledge base, RayRagRetriever over its shards)."""
    kb_path, shards = passages
    single = RagRetriever(copy.deepcopy(config), question_tokenizer, bart_tokenizer, index=str(kb_path))
    sharded = RayRagRetriever(copy.deepcopy(config), question_tokenizer, bart_tokenizer, index=shards)
    return single, sharded


def assert_same_retrieval(single, sharded, queries: np.ndarray, n_docs: int) -> None:
    expected_embeds, expected_ids, expected_docs = single.retrieve(queries, n_docs)
    embeds, ids, docs = sharded.retrieve(queries, n_docs)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(embeds, expected_embeds)
    assert [d["title"] for d in docs] == [d["title"] for d in expected_docs]
    assert [d["text"] for d in docs] == [d["text"] for d in expected_docs]


def test_sharded_search_equals_one_index_with_ties(tie_shards):
    kb, sharded = tie_shards
    for num_queries in (3, 25):
        queries = tie_queries(num_queries)
        for k in (1, 5, 17):
            expected_scores, expected_ids = kb.search(queries, k)
            scores, ids = sharded.search(queries, k)
            np.testing.assert_array_equal(ids, expected_ids)
            np.testing.assert_array_equal(scores, expected_scores)


@pytest.mark.parametrize("n_docs", [1, 3, 12])
def test_retrieve_and_call_equal_rag_retriever(retrievers, question_tokenizer, n_docs):
    single, sharded = retrievers
    assert_same_retrieval(single, sharded, query_vectors(), n_docs)
    question_ids = question_tokenizer(QUESTIONS, padding=True)["input_ids"]
    expected = single(question_ids, query_vectors(), n_docs=n_docs, return_tensors="np")
    got = sharded(question_ids, query_vectors(), n_docs=n_docs, return_tensors="np")
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_chunked_search_over_shards_equals_one_search(retrievers, monkeypatch):
    """retrieval_batch_size != 8: one get_top_docs per chunk over the shards, the same passages."""
    single, sharded = retrievers
    monkeypatch.setattr(sharded, "batch_size", 2)
    calls = []
    get_top_docs = sharded.index.get_top_docs
    monkeypatch.setattr(sharded.index, "get_top_docs", lambda q, n: calls.append(len(q)) or get_top_docs(q, n))
    assert_same_retrieval(single, sharded, query_vectors(5), 3)
    assert calls == [2, 2, 1]


def test_model_forward_and_generate_are_the_same(retrievers, config, question_tokenizer, bart_tokenizer):
    encoded = question_tokenizer(QUESTIONS, padding=True, return_tensors="pt")
    questions = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    labels = bart_tokenizer(ANSWERS, padding=True, return_tensors="pt")["input_ids"]
    torch.manual_seed(0)
    model = RagTokenForGeneration(config).eval()
    outputs = []
    for retriever in retrievers:
        model.set_retriever(retriever)
        with torch.no_grad():
            forward = model(**questions, labels=labels)
            generated = model.generate(**questions, num_beams=2, max_new_tokens=6)
        outputs.append((forward.loss, forward.logits, forward.doc_scores, generated))
    for expected, got in zip(*outputs):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_workers_share_actors_by_name(retrievers, passages):
    _, sharded = retrievers
    other_worker = ShardedKnowledgeBase(passages[1])  # same folder and settings: same actor names
    other_worker.init_index()
    pids = [ray.get(actor.info.remote())["pid"] for actor in sharded.index.actors]
    assert [ray.get(actor.info.remote())["pid"] for actor in other_worker.actors] == pids


def test_killed_actor_restarts_and_reloads_its_shard(retrievers):
    single, sharded = retrievers
    actor = sharded.index.actors[1]
    old_pid = ray.get(actor.info.remote())["pid"]
    for step in range(4):  # a run of batches; the shard's process dies in the middle
        if step == 2:
            os.kill(old_pid, signal.SIGKILL)
        assert_same_retrieval(single, sharded, query_vectors(seed=step), 3)
    assert ray.get(actor.info.remote())["pid"] != old_pid


def test_set_index_switches_to_other_shards(retrievers, passages, tie_shards, config, question_tokenizer,
                                           bart_tokenizer):
    kb, tie_sharded = tie_shards
    switched = RayRagRetriever(copy.deepcopy(config), question_tokenizer, bart_tokenizer, index=passages[1],
                               init_retrieval=False)
    assert not switched.index.is_initialized()
    switched.set_index(tie_sharded.path)  # finds the running actors of those shards by name
    assert switched.config.index_path == str(tie_sharded.path)
    _, ids, docs = switched.retrieve(tie_queries(3), 5)
    np.testing.assert_array_equal(ids, kb.search(tie_queries(3), 5)[1])
    assert docs[0]["title"] == [f"title {i}" for i in ids[0]]
    with pytest.raises(TypeError, match="shard folder"):
        switched.set_index(retrievers[0].index)


def test_actor_dead_for_good_is_reported_naming_its_shard(retrievers):
    """Last test of the module: it kills a shard of ``retrievers`` for good."""
    _, sharded = retrievers
    ray.kill(sharded.index.actors[1], no_restart=True)
    with pytest.raises(ShardError, match=r"Shard 1 \(.*shard-00001.*no partial results"):
        sharded.retrieve(query_vectors(), 3)
