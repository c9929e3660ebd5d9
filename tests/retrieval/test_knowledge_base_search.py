"""Knowledge-base search (exact vs brute force, approximate recall), imports, updates and hot-swap,
and parity with the reference retriever on the same saved knowledge base."""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest
from transformers import BertModel
from transformers import RagRetriever as ReferenceRetriever

from conftest import PASSAGES, QUESTIONS, tiny_bert_config
from ragmodels.retrieval.knowledge_base import (
    ContextEncoder, KnowledgeBase, build_knowledge_base, import_dpr, import_saved_dataset,
)
from ragmodels.retrieval.retriever import RagRetriever
from tests.retrieval.conftest import rag_config

N, D = 2000, 32


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A clustered synthetic corpus in DPR's files: (folder, embeddings (N, D), queries (100, D))."""
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((40, D)).astype(np.float32)
    def sample(n):
        return (centers[rng.integers(0, 40, n)] + 0.5 * rng.standard_normal((n, D))).astype(np.float32)
    embeddings, queries = sample(N), sample(100)
    folder = tmp_path_factory.mktemp("dpr")
    np.save(folder / "part0.npy", embeddings[:1500])
    np.save(folder / "part1.npy", embeddings[1500:])
    rows = "".join(f'{i + 1}\t"text {i}"\ttitle {i}\n' for i in range(N))
    (folder / "psgs.tsv").write_text("id\ttext\ttitle\n" + rows)
    return folder, embeddings, queries


def import_corpus(corpus, output, kind="flat", **params):
    folder, _, _ = corpus
    return import_dpr(folder / "psgs.tsv", [folder / "part0.npy", folder / "part1.npy"], output, index_kind=kind,
                      index_params=params, shard_size=700)


def test_import_dpr_and_exact_search_equals_brute_force(corpus, tmp_path):
    _, embeddings, queries = corpus
    kb = import_corpus(corpus, tmp_path / "kb")
    assert len(kb) == N and kb.manifest.next_id == N + 1
    docs = kb.passages.fetch(np.array([[0, N - 1]]))[0]
    assert docs == {"id": ["1", str(N)], "title": ["title 0", f"title {N - 1}"], "text": ["text 0", f"text {N - 1}"]}
    scores, ids = kb.search(queries, 5)
    brute = queries @ embeddings.T  # (100, N)
    np.testing.assert_array_equal(ids, np.argsort(-brute, axis=1)[:, :5])
    np.testing.assert_allclose(scores, np.take_along_axis(brute, ids, 1), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind,params,threshold", [
    ("hnsw", {"M": 16, "ef_construction": 64}, 0.95),
    ("ivf_sq8", {}, 0.9),
    ("ivf_pq", {"pq_m": 16, "pq_nbits": 6}, 0.6),
])
def test_approximate_recall_at_5(corpus, tmp_path, kind, params, threshold):
    _, embeddings, queries = corpus
    kb = import_corpus(corpus, tmp_path / kind, kind, **params)
    assert kb.kind == kind and KnowledgeBase.load(tmp_path / kind).kind == kind
    exact = np.argsort(-(queries @ embeddings.T), axis=1)[:, :5]
    _, ids = kb.search(queries, 5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ids.tolist(), exact.tolist())])
    assert recall >= threshold


class _Bomb:
    def __reduce__(self):
        return (open, ("/tmp/ragmodels-pickle-was-loaded", "w"))


def test_import_dpr_refuses_pickled_embeddings(corpus, tmp_path):
    folder, _, _ = corpus
    (tmp_path / "emb.pkl").write_bytes(pickle.dumps([_Bomb()]))
    with pytest.raises(ValueError, match="pickle"):
        import_dpr(folder / "psgs.tsv", [tmp_path / "emb.pkl"], tmp_path / "kb")
    assert not (tmp_path / "kb").exists()
    assert not os.path.exists("/tmp/ragmodels-pickle-was-loaded")


def test_import_reference_saved_dataset(passage_dataset, tmp_path):
    dataset = passage_dataset.with_format(None)
    dataset._indexes = dict(passage_dataset._indexes)
    dataset.get_index("embeddings").save(tmp_path / "ref.faiss")
    dataset.drop_index("embeddings")
    dataset.save_to_disk(tmp_path / "ref_passages")
    kb = import_saved_dataset(tmp_path / "ref_passages", tmp_path / "ref.faiss", tmp_path / "kb")
    assert len(kb) == len(PASSAGES) and kb.kind == "flat"
    assert kb.passages.fetch(np.array([[3]]))[0]["title"] == [PASSAGES[3][0]]
    queries = np.array(dataset["embeddings"][:3], dtype=np.float32)
    np.testing.assert_array_equal(kb.search(queries, 3)[1][:, 0], [0, 1, 2])


@pytest.fixture(scope="module")
def built(tmp_path_factory, question_tokenizer):
    """A KB of the shared passages built with a tiny BERT: (kb folder, encoder)."""
    encoder = ContextEncoder(BertModel(tiny_bert_config()), question_tokenizer, pooling="mean", name="tiny")
    folder = tmp_path_factory.mktemp("built")
    (folder / "docs.tsv").write_text("title\ttext\n" + "".join(f"{t}\t{x}\n" for t, x in PASSAGES))
    build_knowledge_base([folder / "docs.tsv"], folder / "kb", encoder, progress=False)
    return folder / "kb", encoder


def test_reference_and_ours_retrieve_same_ids_from_saved_kb(built, question_tokenizer, bart_tokenizer):
    kb = KnowledgeBase.load(built[0])
    config = rag_config(bart_tokenizer, n_docs=3, **kb.retriever_config())
    ours = RagRetriever(config, question_tokenizer, bart_tokenizer)
    reference = ReferenceRetriever(rag_config(bart_tokenizer, n_docs=3, **kb.retriever_config()),
                                   question_tokenizer, bart_tokenizer)
    queries = built[1].encode([""] * len(QUESTIONS), QUESTIONS)  # (3, 32)
    embeds, ids, docs = ours.retrieve(queries, 3)
    ref_embeds, ref_ids, ref_docs = reference.retrieve(queries, 3)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(embeds, ref_embeds, atol=1e-6)
    assert [d["title"] for d in docs] == [d["title"] for d in ref_docs]


def test_add_replace_delete_and_hot_swap(built, tmp_path, question_tokenizer, bart_tokenizer):
    shutil.copytree(built[0], tmp_path / "kb")
    encoder = built[1]
    kb = KnowledgeBase.load(tmp_path / "kb")
    retriever = RagRetriever(rag_config(bart_tokenizer, n_docs=1), question_tokenizer, bart_tokenizer, index=kb)
    fact = ("Atlantis", "Atlantis is the capital of the sunken continent, ruled by Poseidon.")
    query = encoder.encode([fact[0]], [fact[1]])  # (1, 32): the new passage's own vector

    kb_added = kb.add([fact[0]], [fact[1]], encoder=encoder)
    assert retriever.retrieve(query, 1)[2][0]["title"] != ["Atlantis"]  # not swapped yet: old KB still answers
    kb_added.attach(retriever)
    _, ids, docs = retriever.retrieve(query, 1)
    assert ids.tolist() == [[len(PASSAGES)]] and docs[0]["title"] == ["Atlantis"]
    assert docs[0]["id"] == [str(len(PASSAGES))]

    kb_replaced = kb_added.replace([len(PASSAGES)], ["Atlantis"], ["Atlantis is a myth told by Plato."],
                                   encoder=encoder)
    kb_replaced.attach(retriever)
    new_query = encoder.encode(["Atlantis"], ["Atlantis is a myth told by Plato."])
    _, ids, docs = retriever.retrieve(new_query, 1)
    assert ids.tolist() == [[len(PASSAGES)]] and docs[0]["text"] == ["Atlantis is a myth told by Plato."]

    kb_deleted = kb_replaced.delete([0, len(PASSAGES)])
    kb_deleted.attach(retriever)
    assert len(kb_deleted) == len(PASSAGES) - 1
    _, ids, docs = retriever.retrieve(encoder.encode([PASSAGES[1][0]], [PASSAGES[1][1]]), 1)
    assert ids.tolist() == [[0]] and docs[0]["title"] == [PASSAGES[1][0]]  # ids moved up by one
    titles = kb_deleted.passages.fetch(np.arange(len(kb_deleted))[None])[0]["title"]
    assert "Atlantis" not in titles and PASSAGES[0][0] not in titles
    assert KnowledgeBase.load(tmp_path / "kb", full_check=True).manifest.next_id == len(PASSAGES) + 1


def test_ivf_pq_knowledge_bases_rerank_by_default(corpus, tmp_path, question_tokenizer, bart_tokenizer):
    """ivf_pq KBs record refine=10 and re-rank exactly when loaded (KnowledgeBase or retriever config paths);
    refine=1 gives the plain index search, the reference's."""
    _, embeddings, queries = corpus
    exact = np.argsort(-(queries @ embeddings.T), axis=1)[:, :5]

    def recall(ids):
        return np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ids.tolist(), exact.tolist())])

    kb = import_corpus(corpus, tmp_path / "pq", "ivf_pq", pq_nbits=6)
    assert kb.manifest.index_params["refine"] == 10 and kb.manifest.index_params["pq_m"] == D // 8
    assert kb.index.refine_factor == 10
    reranked = kb.search(queries, 5)
    assert recall(reranked[1]) >= 0.95
    exact_scores = np.einsum("bd,bkd->bk", queries, embeddings[reranked[1]])
    np.testing.assert_allclose(reranked[0], exact_scores, rtol=1e-5, atol=1e-4)
    config = rag_config(bart_tokenizer, n_docs=5, **kb.retriever_config())
    ours = RagRetriever(config, question_tokenizer, bart_tokenizer)
    np.testing.assert_array_equal(ours.retrieve(queries, 5)[1], reranked[1])

    plain_kb = import_corpus(corpus, tmp_path / "pq-plain", "ivf_pq", pq_nbits=6, refine=1)
    assert plain_kb.index.refine_factor == 1 and recall(plain_kb.search(queries, 5)[1]) < recall(reranked[1])
    config = rag_config(bart_tokenizer, n_docs=5, **plain_kb.retriever_config())
    ours = RagRetriever(config, question_tokenizer, bart_tokenizer)
    reference = ReferenceRetriever(rag_config(bart_tokenizer, n_docs=5,
                                              **plain_kb.retriever_config()), question_tokenizer, bart_tokenizer)
    np.testing.assert_array_equal(ours.retrieve(queries, 5)[1], reference.retrieve(queries, 5)[1])
