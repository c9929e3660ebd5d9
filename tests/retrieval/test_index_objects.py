"""The reference's index objects (CustomHFIndex, CanonicalHFIndex, LegacyIndex), foreign indexes in the
retriever, and the search in chunks of retrieval_batch_size.

transformers' own index classes are the oracle for signatures and search results; a brute-force inner
product is the oracle for which passages come back.
"""

from __future__ import annotations

import inspect

import datasets
import numpy as np
import pytest
from conftest import DIM, PASSAGES, passage_embeddings
from transformers.models.rag import retrieval_rag as reference

import ragmodels
from ragmodels.retrieval import RagRetriever

from .conftest import query_vectors, rag_config, reference_copy
from .test_legacy import DB_IDS, write_dpr_folder
from .test_retriever import assert_same_outputs

N_DOCS = 4


def brute_force_top(queries: np.ndarray, n_docs: int) -> np.ndarray:
    """Ids of the n_docs largest inner products with the conftest passages, (bs, n_docs); random data: no ties."""
    return np.argsort(-(queries @ passage_embeddings().T), axis=1, kind="stable")[:, :n_docs]


def test_exported_index_classes_have_the_references_signatures():
    for name, methods in [("CustomHFIndex", ["__init__", "load_from_disk"]), ("CanonicalHFIndex", ["__init__"]),
                          ("LegacyIndex", ["__init__"])]:
        ours, theirs = getattr(ragmodels, name), getattr(reference, name)
        for method in methods + ["get_top_docs", "get_doc_dicts", "init_index", "is_initialized"]:
            got = [(p.name, p.default) for p in inspect.signature(getattr(ours, method)).parameters.values()]
            expected = [(p.name, p.default) for p in inspect.signature(getattr(theirs, method)).parameters.values()]
            assert got == expected, f"{name}.{method}"


def test_custom_hf_index_searches_as_the_reference(passage_dataset):
    ours = ragmodels.CustomHFIndex(DIM, passage_dataset)
    theirs = reference.CustomHFIndex(DIM, reference_copy(passage_dataset))
    assert ours.is_initialized() and ours.dataset is passage_dataset and ours.vector_size == DIM
    q = query_vectors()
    ids, vectors = ours.get_top_docs(q, N_DOCS)
    expected_ids, expected_vectors = theirs.get_top_docs(q, N_DOCS)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(ids, brute_force_top(q, N_DOCS))
    np.testing.assert_array_equal(vectors, expected_vectors)  # the same stored float32 values
    ours_docs, their_docs = ours.get_doc_dicts(ids), theirs.get_doc_dicts(ids)
    assert [(d["title"], d["text"]) for d in ours_docs] == [(d["title"], d["text"]) for d in their_docs]
    np.testing.assert_array_equal(np.stack([d["embeddings"] for d in ours_docs]), expected_vectors)


def test_custom_hf_index_load_from_disk_reads_the_index_on_init(tmp_path, passage_dataset):
    dataset = reference_copy(passage_dataset)
    dataset.get_index("embeddings").save(tmp_path / "index.faiss")
    dataset.drop_index("embeddings")
    dataset.save_to_disk(tmp_path / "passages")
    index = ragmodels.CustomHFIndex.load_from_disk(DIM, tmp_path / "passages", tmp_path / "index.faiss")
    assert not index.is_initialized()
    index.init_index()
    q = query_vectors()
    np.testing.assert_array_equal(index.get_top_docs(q, N_DOCS)[0], brute_force_top(q, N_DOCS))
    assert isinstance(index.dataset, datasets.Dataset) and index.dataset["title"] == [t for t, _ in PASSAGES]
    with pytest.raises(ValueError, match="needs passages_path and index_path"):
        ragmodels.CustomHFIndex.load_from_disk(DIM, tmp_path / "passages", None)


def test_custom_hf_index_bad_inputs(passage_dataset):
    with pytest.raises(TypeError, match="Dataset should be a datasets.Dataset object"):
        ragmodels.CustomHFIndex(DIM, {"title": []})
    with pytest.raises(ValueError, match="Missing faiss index"):
        ragmodels.CustomHFIndex(DIM, datasets.Dataset(passage_dataset.data))


def test_canonical_hf_index_calls_datasets_load_dataset_at_call_time(monkeypatch, passage_dataset):
    calls = []

    def fake_load_dataset(name, **kwargs):
        calls.append((name, kwargs))
        return passage_dataset

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    index = ragmodels.CanonicalHFIndex(DIM, "wiki_dpr", "train", index_name="exact", use_dummy_dataset=True,
                                       dataset_revision="b24a417")
    assert calls == [("wiki_dpr", dict(split="train", dummy=True, revision="b24a417", with_index=False))]
    assert not index.is_initialized()
    index.init_index()
    assert calls[1] == ("wiki_dpr", dict(split="train", dummy=True, revision="b24a417", with_index=True,
                                         with_embeddings=True, index_name="exact"))
    q = query_vectors()
    np.testing.assert_array_equal(index.get_top_docs(q, N_DOCS)[0], brute_force_top(q, N_DOCS))
    with pytest.raises(ValueError, match="Please provide `index_name` or `index_path`"):
        ragmodels.CanonicalHFIndex(DIM)


def test_a_canonical_config_builds_a_canonical_index(monkeypatch, passage_dataset, question_tokenizer, bart_tokenizer):
    monkeypatch.setattr(datasets, "load_dataset", lambda name, **kwargs: passage_dataset)
    config = rag_config(bart_tokenizer, index_name="exact", dataset="wiki_dpr")
    retriever = RagRetriever(config, question_tokenizer, bart_tokenizer)
    assert isinstance(retriever.index, ragmodels.CanonicalHFIndex) and retriever.index.is_initialized()


def test_legacy_index_get_top_docs(tmp_path):
    index = ragmodels.LegacyIndex(DIM, write_dpr_folder(tmp_path / "dpr"))
    index.init_index()
    q = query_vectors()
    ids, vectors = index.get_top_docs(q, N_DOCS)
    top = brute_force_top(q, N_DOCS)  # HNSW over 12 vectors with ef_search 128 visits them all: exact
    np.testing.assert_array_equal(ids, DB_IDS[top])
    np.testing.assert_array_equal(vectors, passage_embeddings()[top])  # stored exactly (flat HNSW storage)


def test_retriever_takes_the_references_index_objects(bart_tokenizer, question_tokenizer, question_ids,
                                                      passage_dataset):
    config = rag_config(bart_tokenizer)
    ours = RagRetriever(config, question_tokenizer, bart_tokenizer, index=passage_dataset)
    foreign = RagRetriever(config, question_tokenizer, bart_tokenizer,
                           index=reference.CustomHFIndex(DIM, reference_copy(passage_dataset)))
    q = query_vectors()
    assert_same_outputs(foreign(question_ids, q), ours(question_ids, q))


class CountingIndex:
    """A duck-typed index (the reference's API only) over another, counting get_top_docs calls."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def get_top_docs(self, question_hidden_states, n_docs=5):
        self.calls.append(len(question_hidden_states))
        return self.inner.get_top_docs(question_hidden_states, n_docs)

    def get_doc_dicts(self, doc_ids):
        return self.inner.get_doc_dicts(doc_ids)

    def init_index(self):
        self.inner.init_index()

    def is_initialized(self):
        return self.inner.is_initialized()


@pytest.mark.parametrize("batch_size, chunks", [(8, []), (3, [3, 3, 3, 1]), (1, [1] * 10), (16, [10])])
def test_retrieval_batch_size_chunks_the_search_with_the_same_results(batch_size, chunks, bart_tokenizer,
                                                                       question_tokenizer, passage_dataset,
                                                                       monkeypatch):
    """Our index at the default 8: one search, no get_top_docs; any other size: one get_top_docs per chunk."""
    config = rag_config(bart_tokenizer, retrieval_batch_size=batch_size)
    retriever = RagRetriever(config, question_tokenizer, bart_tokenizer, index=passage_dataset)
    one_search = RagRetriever(rag_config(bart_tokenizer), question_tokenizer, bart_tokenizer, index=passage_dataset)
    calls = []
    get_top_docs = retriever.index.get_top_docs
    monkeypatch.setattr(retriever.index, "get_top_docs", lambda q, n: calls.append(len(q)) or get_top_docs(q, n))
    ids = question_tokenizer([f"question {i}" for i in range(10)], padding=True)["input_ids"]
    q = query_vectors(10)
    got = retriever(ids, q, n_docs=N_DOCS)
    assert calls == chunks
    assert_same_outputs(got, one_search(ids, q, n_docs=N_DOCS))


def test_a_foreign_index_is_searched_in_chunks_of_eight(bart_tokenizer, question_tokenizer, passage_dataset):
    """As the reference: an index of its API is searched retrieval_batch_size (8) questions at a time."""
    index = CountingIndex(ragmodels.CustomHFIndex(DIM, passage_dataset))
    retriever = RagRetriever(rag_config(bart_tokenizer), question_tokenizer, bart_tokenizer, index=index)
    embeds, doc_ids, _ = retriever.retrieve(query_vectors(10), N_DOCS)
    assert index.calls == [8, 2]
    np.testing.assert_array_equal(doc_ids, brute_force_top(query_vectors(10), N_DOCS))
    assert embeds.shape == (10, N_DOCS, DIM) and embeds.dtype == np.float32


def test_retrieval_batch_size_must_be_positive(bart_tokenizer, question_tokenizer, passage_dataset):
    retriever = RagRetriever(rag_config(bart_tokenizer, retrieval_batch_size=0), question_tokenizer, bart_tokenizer,
                             index=passage_dataset)
    with pytest.raises(ValueError, match="retrieval_batch_size=0 must be a positive number"):
        retriever.retrieve(query_vectors(), N_DOCS)
