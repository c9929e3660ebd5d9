"""The on-disk passage-token store: contexts read from it equal the reference's single tokenizer call, and a
store is only used for the tokenizer, prefix, title_sep and passages it was built for."""

from __future__ import annotations

import random

import faiss
import numpy as np
import pyarrow as pa
import pytest

from ragmodels.retrieval import FaissIndex, PassageStore, RagRetriever
from ragmodels.retrieval.contextualize import ContextCache, contextualize
from ragmodels.retrieval.passage_tokens import PassageTokens, build_passage_tokens, default_folder, find_passage_tokens

from .conftest import query_vectors, rag_config
from .test_contextualize_fast import cases, reference, tokenizer_variant, variant

DIM = 32


def edge_case_passages(seed: int, n_questions: int = 8, n_docs: int = 5) -> tuple[list[str], list[str]]:
    """Titles and texts of the random and edge-case strings of test_contextualize_fast (some unsafe ends)."""
    docs, _ = cases(seed, n_questions, n_docs)
    return [t for d in docs for t in d["title"]], [t for d in docs for t in d["text"]]


def save_passages(folder, titles, texts, seed=0) -> PassageStore:
    embeddings = np.random.default_rng(seed).standard_normal((len(titles), DIM)).astype(np.float32)
    table = pa.table({"id": [str(i) for i in range(len(titles))], "title": titles, "text": texts,
                      "embeddings": pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), DIM)})
    PassageStore(table).save(folder)
    return PassageStore.load(folder)


@pytest.fixture(params=["bart", "t5", "t5-nfkc", "t5-metaspace-first", "bart-left-pad"])
def tokenizer(request, bart_tokenizer, t5_tokenizer):
    return tokenizer_variant(request.param, bart_tokenizer, t5_tokenizer)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("prefix", [None, "question: "])
def test_contexts_from_the_store_equal_one_tokenizer_call(tmp_path, tokenizer, seed, prefix):
    titles, texts = edge_case_passages(seed)
    passages = save_passages(tmp_path / "passages", titles, texts)
    store = build_passage_tokens(passages, tokenizer, prefix=prefix, batch_size=7)  # several batches
    assert len(store) == len(titles) and not store.safe.all() and store.safe.any()  # both kinds of rows
    cache = ContextCache(tokenizer)
    rng = np.random.default_rng(seed)
    for max_length in (16, 48, 300):
        doc_ids = rng.integers(0, len(titles), (6, 5))
        docs = passages.fetch(doc_ids)
        questions = [q for q in cases(seed + 7, 6)[1]]
        want = reference(tokenizer, docs, questions, prefix, max_length)
        got = contextualize(docs, questions, tokenizer, prefix=prefix, title_sep=" / ", doc_sep=" // ",
                            max_length=max_length, cache=cache, doc_ids=doc_ids, passage_tokens=store)
        assert got == want
    assert cache.misses == 0 and cache.stored == 3 * 30  # every passage read from the store, none tokenized


def test_store_ids_equal_the_in_memory_cache(tmp_path, bart_tokenizer):
    titles, texts = edge_case_passages(3, n_questions=20)
    passages = save_passages(tmp_path / "passages", titles, texts)
    store = build_passage_tokens(passages, bart_tokenizer, title_sep=" | ")
    cache = ContextCache(bart_tokenizer)
    from_memory = cache._passage_ids([("", " | ", t, x) for t, x in zip(titles, texts)])
    from_disk = store.lookup(np.arange(len(titles)))
    as_lists = lambda ids: [None if a is None else a.tolist() for a in ids]  # noqa: E731
    assert as_lists(from_memory) == as_lists(from_disk)
    assert store.ids.dtype == np.uint16


def test_store_is_found_only_for_its_tokenizer_prefix_separator_and_passages(tmp_path, bart_tokenizer):
    folder = tmp_path / "passages"
    passages = save_passages(folder, ["a title", "b"], ["some text.", "more text"])
    fingerprint = ContextCache(bart_tokenizer).fingerprint
    assert find_passage_tokens(passages, fingerprint, None, " / ") is None  # nothing built yet
    store = build_passage_tokens(folder, bart_tokenizer, prefix="p: ")
    assert store.folder == default_folder(folder, fingerprint, "p: ", " / ")
    assert find_passage_tokens(passages, fingerprint, "p: ", " / ") is not None
    assert find_passage_tokens(passages, fingerprint, None, " / ") is None
    assert find_passage_tokens(passages, fingerprint, "p: ", " - ") is None
    bigger = variant(bart_tokenizer, lambda spec: None)
    bigger.add_tokens(["newtoken"])
    assert find_passage_tokens(passages, ContextCache(bigger).fingerprint, "p: ", " / ") is None
    in_memory = PassageStore(passages.table)
    assert find_passage_tokens(in_memory, fingerprint, "p: ", " / ") is None
    with pytest.raises(ValueError, match="saved folder"):
        build_passage_tokens(in_memory, bart_tokenizer)
    # the passages folder rewritten (a knowledge-base update): the old store no longer matches
    save_passages(folder, ["a title", "b"], ["other text.", "more text"])
    assert find_passage_tokens(PassageStore.load(folder), fingerprint, "p: ", " / ") is None
    # a retriever still mapping the old files may keep using the store: it describes exactly those files
    assert find_passage_tokens(passages, fingerprint, "p: ", " / ") is not None


def test_incomplete_or_damaged_store_is_ignored(tmp_path, bart_tokenizer):
    folder = tmp_path / "passages"
    passages = save_passages(folder, ["t"] * 3, ["x.", "y.", "z."])
    store = build_passage_tokens(passages, bart_tokenizer)
    assert PassageTokens.open(store.folder, passages.identity) is not None
    (store.folder / "ids.bin").write_bytes(b"\0" * 3)
    assert PassageTokens.open(store.folder, passages.identity) is None
    build_passage_tokens(passages, bart_tokenizer)  # rebuilt in place
    assert PassageTokens.open(store.folder, passages.identity) is not None
    (store.folder / "meta.json").unlink()  # what a crash before the last write leaves
    assert PassageTokens.open(store.folder, passages.identity) is None


def test_tokenizer_without_a_fast_path_is_refused(tmp_path, bart_tokenizer):
    passages = save_passages(tmp_path / "passages", ["t"], ["x."])
    with pytest.raises(ValueError, match="full tokenizer call"):
        build_passage_tokens(passages, variant(bart_tokenizer, lambda spec: spec.update(pre_tokenizer=None)))


def saved_knowledge_base(folder, titles, texts):
    passages = save_passages(folder / "passages", titles, texts)
    index = faiss.IndexFlatIP(DIM)
    index.add(passages.all_embeddings())
    FaissIndex(index).save(folder / "index.faiss")
    return folder / "passages", folder / "index.faiss"


@pytest.mark.parametrize("generator", ["bart", "t5"])
def test_retriever_with_a_store_matches_the_reference(tmp_path, generator, question_tokenizer, question_ids,
                                                      bart_tokenizer, t5_tokenizer):
    from transformers import RagRetriever as ReferenceRetriever

    tokenizer = {"bart": bart_tokenizer, "t5": t5_tokenizer}[generator]
    rng = random.Random(0)
    titles = [f"title {i}" + rng.choice(["", '"', " x"]) for i in range(60)]
    texts = [f"passage {i} says " + " ".join(rng.choice(["a", "bb", "Zürich", "日本", "1990"]) for _ in range(40))
             + rng.choice([".", "", " "]) for i in range(60)]
    passages_path, index_path = saved_knowledge_base(tmp_path, titles, texts)
    config = rag_config(tokenizer, generator, passages_path=str(passages_path), index_path=str(index_path),
                        max_combined_length=64)
    ours = RagRetriever(config, question_tokenizer, tokenizer)
    assert ours.passage_tokens() is None
    store = ours.build_passage_tokens()
    fresh = RagRetriever(config, question_tokenizer, tokenizer)  # another process would find it the same way
    assert fresh.passage_tokens() is not None and fresh.passage_tokens().folder == store.folder
    reference = ReferenceRetriever(config, question_tokenizer, tokenizer)
    q = query_vectors()
    for prefix in (None, "answer: "):  # "answer: " has no store: the in-memory cache serves it
        want = reference(question_ids, q, prefix=prefix, return_tensors="np")
        got = fresh(question_ids, q, prefix=prefix, return_tensors="np")
        for key in want:
            np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]), err_msg=key)
    assert fresh.context_cache.stored == 3 * config.n_docs and fresh.context_cache.misses == 3 * config.n_docs


def test_retriever_forgets_the_store_of_a_swapped_out_knowledge_base(tmp_path, question_tokenizer, question_ids,
                                                                     bart_tokenizer):
    first = saved_knowledge_base(tmp_path / "one", [f"t{i}" for i in range(20)], [f"one {i}." for i in range(20)])
    second = saved_knowledge_base(tmp_path / "two", [f"t{i}" for i in range(20)], [f"two {i}." for i in range(20)])
    config = rag_config(bart_tokenizer, passages_path=str(first[0]), index_path=str(first[1]))
    retriever = RagRetriever(config, question_tokenizer, bart_tokenizer)
    retriever.build_passage_tokens()
    assert retriever.passage_tokens() is not None
    retriever.set_index(tmp_path / "two")
    assert retriever.passage_tokens() is None
    out = retriever(question_ids, query_vectors(), return_tensors="np")
    texts = bart_tokenizer.batch_decode(out["context_input_ids"], skip_special_tokens=True)
    assert all("two" in t and "one" not in t for t in texts)


def test_fingerprint_ignores_call_settings_and_knowledge_base_builds_the_store(tmp_path, bart_tokenizer):
    tokenizer = variant(bart_tokenizer, lambda spec: None)
    before = ContextCache(tokenizer).fingerprint
    tokenizer(["a b c d e f"], truncation=True, max_length=3, padding="max_length")  # leaves settings in the backend
    assert ContextCache(tokenizer).fingerprint == before

    from ragmodels.retrieval.knowledge_base import KnowledgeBase, import_dpr

    (tmp_path / "psgs.tsv").write_text("id\ttext\ttitle\n" + "".join(f"{i}\ttext {i}.\ttitle {i}\n" for i in range(30)))
    np.save(tmp_path / "emb.npy", np.random.default_rng(0).standard_normal((30, DIM)).astype(np.float32))
    kb = import_dpr(tmp_path / "psgs.tsv", [tmp_path / "emb.npy"], tmp_path / "kb")
    store = kb.build_passage_tokens(tokenizer)
    assert store.folder.parent == tmp_path / "kb" / "passages.tokens"
    found = find_passage_tokens(KnowledgeBase.load(tmp_path / "kb").passages, before, None, " / ")
    assert found is not None and len(found) == 30


def test_index_tokens_command_builds_the_store_a_pipeline_then_reads(tmp_path, tiny_rag_checkpoint, tiny_knowledge_base,
                                                                      capsys):
    import shutil

    from conftest import QUESTIONS
    from ragmodels.cli import main
    from ragmodels.pipeline import DecodingOptions, RagPipeline

    kb = shutil.copytree(tiny_knowledge_base, tmp_path / "kb")
    checkpoint = tiny_rag_checkpoint("token")
    options = DecodingOptions(n_docs=3, num_beams=2, max_new_tokens=6)
    before = RagPipeline.from_pretrained(checkpoint, index=kb)
    assert before.retriever.passage_tokens() is None
    expected = before.answer(QUESTIONS, options)
    assert main(["index", "tokens", str(kb), "--model", str(checkpoint)]) == 0
    assert "passages tokenized" in capsys.readouterr().out
    after = RagPipeline.from_pretrained(checkpoint, index=kb)
    store = after.retriever.passage_tokens()
    assert store is not None and store.folder.parent == kb / "passages.tokens" and len(store) == after.num_passages
    assert [a.to_dict() for a in after.answer(QUESTIONS, options)] == [a.to_dict() for a in expected]
    assert main(["index", "tokens", str(kb), "--model", str(tmp_path / "missing")]) == 1
    assert "no such checkpoint folder" in capsys.readouterr().err
