"""RagRetriever against the reference (transformers.RagRetriever) and its error cases."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import DIM, PASSAGES, passage_embeddings
from datasets import Dataset
from transformers import RagRetriever as ReferenceRetriever

from ragmodels.retrieval import FaissIndex, PassageStore, RagRetriever, build_index

from .conftest import query_vectors, rag_config


def assert_same_outputs(ours, reference) -> None:
    assert set(ours.keys()) == set(reference.keys())
    for key in reference:
        got, expected = np.asarray(ours[key]), np.asarray(reference[key])
        assert got.dtype == expected.dtype, key
        np.testing.assert_array_equal(got, expected, err_msg=key)


@pytest.fixture
def bart_config(bart_tokenizer):
    return rag_config(bart_tokenizer)


@pytest.fixture
def ours(bart_config, question_tokenizer, bart_tokenizer, passage_dataset):
    return RagRetriever(bart_config, question_tokenizer, bart_tokenizer, index=passage_dataset)


@pytest.mark.parametrize("prefix", [None, "answer: "])
@pytest.mark.parametrize("n_docs", [None, 2])
def test_in_memory_dataset_matches_reference(generator, prefix, n_docs, question_tokenizer, question_ids,
                                             passage_dataset, reference_retriever):
    kind, tokenizer = generator
    config = rag_config(tokenizer, kind)
    retriever = RagRetriever(config, question_tokenizer, tokenizer, index=passage_dataset)
    reference = reference_retriever(config, question_tokenizer, tokenizer, passage_dataset)
    q = query_vectors()
    got = retriever(question_ids, q, prefix=prefix, n_docs=n_docs)
    assert_same_outputs(got, reference(question_ids, q, prefix=prefix, n_docs=n_docs))
    assert np.asarray(got["context_input_ids"]).shape == (3 * (n_docs or config.n_docs), config.max_combined_length)
    assert got["retrieved_doc_embeds"].dtype == np.float32 and got["doc_ids"].dtype == np.int64


def test_retrieve_matches_reference_and_brute_force(ours, bart_config, question_tokenizer, bart_tokenizer,
                                                    passage_dataset, reference_retriever):
    q = query_vectors()
    embeds, ids, docs = ours.retrieve(q, 3)
    ref_embeds, ref_ids, ref_docs = reference_retriever(
        bart_config, question_tokenizer, bart_tokenizer, passage_dataset
    ).retrieve(q, 3)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(embeds, ref_embeds)
    np.testing.assert_array_equal(ids, np.argsort(-(q @ passage_embeddings().T), axis=1)[:, :3])
    assert [d["title"] for d in docs] == [d["title"] for d in ref_docs]
    assert [d["text"] for d in docs] == [d["text"] for d in ref_docs]


def test_torch_tensors_and_pt_outputs_match_reference(ours, bart_config, question_tokenizer, bart_tokenizer,
                                                      question_ids, passage_dataset, reference_retriever):
    reference = reference_retriever(bart_config, question_tokenizer, bart_tokenizer, passage_dataset)
    ids, q = torch.tensor(question_ids), query_vectors()
    got = ours(ids, torch.from_numpy(q), return_tensors="pt")
    expected = reference(ids, q, return_tensors="pt")
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


def test_tokenized_docs_for_end2end_match_reference(ours, bart_config, question_tokenizer, bart_tokenizer,
                                                     question_ids, passage_dataset, reference_retriever):
    reference = reference_retriever(bart_config, question_tokenizer, bart_tokenizer, passage_dataset)
    ours.set_ctx_encoder_tokenizer(question_tokenizer)
    reference.set_ctx_encoder_tokenizer(question_tokenizer)
    got = ours(question_ids, query_vectors(), return_tensors="np")
    assert "tokenized_doc_ids" in got
    assert_same_outputs(got, reference(question_ids, query_vectors(), return_tensors="np"))


def test_retriever_saved_by_reference_loads_in_ours(tmp_path, bart_config, question_tokenizer, bart_tokenizer,
                                                    question_ids, passage_dataset, reference_retriever):
    reference = reference_retriever(bart_config, question_tokenizer, bart_tokenizer, passage_dataset)
    reference.save_pretrained(str(tmp_path / "ref"))
    loaded = RagRetriever.from_pretrained(tmp_path / "ref")
    assert loaded.config.index_name == "custom" and loaded.index.index.kind == "flat"
    q = query_vectors()
    assert_same_outputs(loaded(question_ids, q, n_docs=3), reference(question_ids, q, n_docs=3))


def test_retriever_saved_by_ours_loads_in_reference(tmp_path, ours, question_ids):
    ours.save_pretrained(tmp_path / "ours")
    assert (tmp_path / "ours" / "hf_dataset_index.faiss").is_file()
    assert (tmp_path / "ours" / "hf_dataset" / "state.json").is_file()
    reference = ReferenceRetriever.from_pretrained(str(tmp_path / "ours"))
    q = query_vectors()
    assert_same_outputs(ours(question_ids, q), reference(question_ids, q))
    assert ours.config.index_path == str(tmp_path / "ours" / "hf_dataset_index.faiss") == ours.index.index.path


def test_moved_retriever_folder_still_loads(tmp_path, ours, question_ids):
    ours.save_pretrained(tmp_path / "a")
    shutil.move(tmp_path / "a", tmp_path / "b")
    loaded = RagRetriever.from_pretrained(tmp_path / "b")
    assert loaded.index.index.path == str(tmp_path / "b" / "hf_dataset_index.faiss")
    assert_same_outputs(loaded(question_ids, query_vectors()), ours(question_ids, query_vectors()))


def test_from_pretrained_with_indexed_dataset_and_overrides(tmp_path, ours, passage_dataset):
    ours.save_pretrained(tmp_path / "r")
    loaded = RagRetriever.from_pretrained(tmp_path / "r", indexed_dataset=passage_dataset, n_docs=2)
    assert loaded.n_docs == 2 and loaded.index.passages.source == "<in-memory dataset>"
    assert loaded.retrieve(query_vectors(), 2)[1].shape == (3, 2)


def test_lazy_index_loads_on_init_retrieval(tmp_path, ours, bart_config, question_tokenizer, bart_tokenizer):
    ours.save_pretrained(tmp_path / "r")
    config = rag_config(bart_tokenizer, passages_path=str(tmp_path / "r" / "hf_dataset"),
                        index_path=str(tmp_path / "r" / "hf_dataset_index.faiss"))
    lazy = RagRetriever(config, question_tokenizer, bart_tokenizer, init_retrieval=False)
    with pytest.raises(ValueError, match="call retriever.init_retrieval"):
        lazy.retrieve(query_vectors(), 2)
    lazy.init_retrieval()
    np.testing.assert_array_equal(lazy.retrieve(query_vectors(), 2)[1], ours.retrieve(query_vectors(), 2)[1])


def other_corpus() -> Dataset:
    """Four new passages whose embeddings are far from the shared ones; no FAISS index yet."""
    embeddings = passage_embeddings(4, seed=7) * 10
    return Dataset.from_dict({"title": [f"New {i}" for i in range(4)], "text": [f"new text {i}" for i in range(4)],
                              "embeddings": embeddings.tolist()})


def test_set_index_swaps_the_knowledge_base(ours, question_ids):
    q = query_vectors()
    before = ours(question_ids, q, n_docs=2)
    dataset = other_corpus()
    dataset.add_faiss_index("embeddings")  # datasets' default: an L2 flat index
    ours.set_index(dataset)
    _, ids, docs = ours.retrieve(q, 2)
    assert all(title.startswith("New") for d in docs for title in d["title"])
    assert not np.array_equal(ours(question_ids, q, n_docs=2)["context_input_ids"], before["context_input_ids"])
    assert ours.config.index_name == "custom" and ours.config.passages_path is None


def test_set_index_accepts_index_and_passages_and_folders(tmp_path, ours, question_ids):
    dataset = other_corpus()
    store = PassageStore.from_dataset(dataset)
    index = build_index(store.all_embeddings(), "hnsw")
    ours.set_index(index, store)
    _, ids, _ = ours.retrieve(query_vectors(), 2)
    np.testing.assert_array_equal(ids, np.argsort(-(query_vectors() @ store.all_embeddings().T), axis=1)[:, :2])
    ours.save_pretrained(tmp_path / "saved")
    ours.set_index(tmp_path / "saved")
    assert ours.config.index_path == str(tmp_path / "saved" / "hf_dataset_index.faiss")
    assert ours.retrieve(query_vectors(), 2)[2][0]["title"][0].startswith("New")


def test_set_index_accepts_a_knowledge_base_folder_layout(tmp_path, ours):
    store = PassageStore.from_dataset(other_corpus())
    store.save(tmp_path / "kb" / "passages")
    build_index(store.all_embeddings(), "flat").save(tmp_path / "kb" / "index.faiss")
    ours.set_index(tmp_path / "kb")
    assert ours.retrieve(query_vectors(), 1)[2][0]["title"][0].startswith("New")


# -- bad input --------------------------------------------------------------------------------------

def test_question_dimension_mismatch(ours):
    with pytest.raises(ValueError, match=f"retrieval_vector_size {DIM + 1} does not match the index dimension {DIM}"):
        ours.retrieve(np.zeros((2, DIM + 1), np.float32), 2)


@pytest.mark.parametrize("n_docs", [0, len(PASSAGES) + 1])
def test_n_docs_out_of_range(ours, n_docs):
    with pytest.raises(ValueError, match=rf"n_docs={n_docs} must be between 1 and the number of passages \(12\)"):
        ours.retrieve(query_vectors(), n_docs)


def test_no_question_vectors(ours):
    with pytest.raises(ValueError, match="non-empty"):
        ours.retrieve(np.zeros((0, DIM), np.float32), 2)


def test_questions_that_decode_to_no_text_warn_and_go_on_as_the_reference(
        ours, bart_config, question_tokenizer, bart_tokenizer, passage_dataset, reference_retriever):
    """Rows of only special tokens (padding rows, ids of another tokenizer) are retrieved for, with a warning."""
    ids = question_tokenizer(["", "who wrote the book", ""], padding=True)["input_ids"]  # rows 0, 2: [CLS] [SEP] pads
    q = query_vectors()
    with pytest.warns(UserWarning, match=r"question rows \[0, 2\] decode to no text"):
        got = ours(ids, q, n_docs=2)
    reference = reference_retriever(bart_config, question_tokenizer, bart_tokenizer, passage_dataset)
    assert_same_outputs(got, reference(ids, q, n_docs=2))


def test_question_count_mismatch(ours, question_ids):
    with pytest.raises(ValueError, match="Got 3 questions' input ids but 2 question vectors"):
        ours(question_ids, query_vectors(2))


def test_missing_files(tmp_path, ours, question_tokenizer, bart_tokenizer):
    ours.save_pretrained(tmp_path / "r")
    passages, index = str(tmp_path / "r" / "hf_dataset"), str(tmp_path / "r" / "hf_dataset_index.faiss")
    cases = [
        (dict(passages_path=passages, index_path=str(tmp_path / "no.faiss")), "No FAISS index file at .*no.faiss"),
        (dict(passages_path=str(tmp_path / "none"), index_path=index), "No passages folder at .*none"),
        (dict(), "needs passages_path and index_path"),
    ]
    for overrides, message in cases:
        with pytest.raises(ValueError, match=message):
            RagRetriever(rag_config(bart_tokenizer, **overrides), question_tokenizer, bart_tokenizer)


def test_dataset_without_embeddings_or_index(bart_config, question_tokenizer, bart_tokenizer, passage_dataset):
    with pytest.raises(ValueError, match=r"lack the column\(s\) \['embeddings'\]"):
        RagRetriever(bart_config, question_tokenizer, bart_tokenizer,
                     index=Dataset(passage_dataset.data).remove_columns("embeddings"))
    with pytest.raises(ValueError, match="Missing faiss index"):
        RagRetriever(bart_config, question_tokenizer, bart_tokenizer, index=Dataset(passage_dataset.data))


def test_index_and_passages_that_do_not_belong_together(tmp_path, bart_config, question_tokenizer, bart_tokenizer,
                                                        passage_dataset):
    PassageStore.from_dataset(passage_dataset).save(tmp_path / "p")
    FaissIndex(build_index(passage_embeddings(5), "flat").faiss_index).save(tmp_path / "i.faiss")
    config = rag_config(bart_tokenizer, passages_path=str(tmp_path / "p"), index_path=str(tmp_path / "i.faiss"))
    with pytest.raises(ValueError, match="holds 5 vectors but the passages .* are 12"):
        RagRetriever(config, question_tokenizer, bart_tokenizer)


def test_wiki_dpr_offline_says_what_to_download(monkeypatch, question_tokenizer, bart_tokenizer):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    config = rag_config(bart_tokenizer, index_name="compressed", dataset="wiki_dpr")
    with pytest.raises(OSError, match=r"(?s)'wiki_dpr'.*no network.*index_name='custom', passages_path="):
        RagRetriever(config, question_tokenizer, bart_tokenizer)


def test_unsupported_knowledge_base_type(ours):
    with pytest.raises(TypeError, match="Cannot use a int as a knowledge base"):
        ours.set_index(3)


class CallCounter:
    """Delegates to ``target`` and counts calls of ``method`` (``__call__`` when None)."""

    def __init__(self, target, method=None):
        self.target, self.method, self.calls = target, method, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.target(*args, **kwargs)

    def __getattr__(self, name):
        attr = getattr(self.target, name)
        if name != self.method:
            return attr

        def counted(*args, **kwargs):
            self.calls += 1
            return attr(*args, **kwargs)

        return counted


def test_a_batch_is_one_search_and_at_most_two_tokenizer_calls(ours, question_tokenizer, monkeypatch):
    """One search; the generator tokenizer sees the uncached passages once and the questions once
    (a few strings go to its backend one by one, ``contextualize.content_ids``: counted by strings)."""
    from ragmodels.retrieval import contextualize as ctx

    tokenized = []
    content_ids = ctx.content_ids
    monkeypatch.setattr(ctx, "content_ids", lambda tok, strings: tokenized.append(len(strings)) or content_ids(tok, strings))
    questions = [f"question number {i}" for i in range(20)]  # more than retrieval_batch_size (8)
    search = ours.index.index.faiss_index = CallCounter(ours.index.index.faiss_index, "search")
    tokenizer = ours.generator_tokenizer = CallCounter(ours.generator_tokenizer)
    ours.context_cache  # noqa: B018 - the cache of the new tokenizer object probes it once; not counted
    tokenizer.calls = 0
    question_ids = question_tokenizer(questions, padding=True)["input_ids"]
    out = ours(question_ids, query_vectors(20), n_docs=3)
    assert search.calls == 1 and tokenizer.calls <= 2
    assert np.asarray(out["context_input_ids"]).shape[0] == 60
    calls, tokenized[:] = tokenizer.calls, []
    again = ours(question_ids, query_vectors(20), n_docs=3)  # passages now cached: only the questions
    assert tokenizer.calls <= calls + 1 and tokenized == [20]
    assert again["context_input_ids"] == out["context_input_ids"]
