"""The cached fast contextualization path equals the reference's single tokenizer call, on random and edge cases."""

from __future__ import annotations

import copy
import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
from transformers import RagRetriever as ReferenceRetriever

from ragmodels.retrieval.contextualize import ContextCache, contextualize

PIECES = [
    "a", "the", "Zürich", "naïve", "日本語", "😀", "e\u0301", "\u0301", "\u00a0", "\u3000", "\t", "\n", " ", "  ", "   ",
    '"', "'s", "//", "/", " // ", "-", "1990", "<s>", "</s>", "<mask>", "<pad>", "\u200b", "\u0600", "ﬁ", "Ⅳ", "x\u0308",
    "\u203e", "don't", "?", "...", "▁", "Ġ", "\\",
]


def random_string(rng: random.Random, max_pieces: int = 12) -> str:
    return "".join(rng.choice(PIECES) + rng.choice(["", " ", "", "  "]) for _ in range(rng.randint(0, max_pieces)))


def cases(seed: int, n_questions: int = 6, n_docs: int = 5):
    rng = random.Random(seed)
    docs = []
    for _ in range(n_questions):
        titles = [rng.choice([random_string(rng, 4), '""', '"' + random_string(rng, 3) + '"', "", '"quoted']) for _ in range(n_docs)]
        texts = [random_string(rng, rng.choice([3, 30, 120])) + rng.choice(["", ".", "x", "é", "日本", "😀", "'s"] * 2 + [" "])
                 for _ in range(n_docs)]  # mostly a safe end (fast path), sometimes not (fallback)
        docs.append({"title": titles, "text": texts})
    questions = [random_string(rng, 8) or "q" for _ in range(n_questions)]
    return docs, questions


def reference(tokenizer, docs, questions, prefix, max_length, title_sep=" / ", doc_sep=" // "):
    config = SimpleNamespace(title_sep=title_sep, doc_sep=doc_sep, max_combined_length=max_length)
    me = SimpleNamespace(config=config, generator_tokenizer=tokenizer)
    return ReferenceRetriever.postprocess_docs(me, docs, questions, prefix, n_docs=len(docs[0]["title"]))


def variant(tokenizer, edit):
    """A copy of a fast tokenizer whose backend JSON went through ``edit``."""
    from tokenizers import Tokenizer

    other = copy.deepcopy(tokenizer)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    edit(spec)
    other._tokenizer = Tokenizer.from_str(json.dumps(spec))
    return other


def t5_like_normalizer(spec):  # SentencePiece-style: NFKC + collapse space runs
    spec["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "NFKC"}, {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]}


def metaspace_alone(scheme):
    def edit(spec):
        spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": True}
    return edit


def prefix_space(spec):
    spec["pre_tokenizer"]["add_prefix_space"] = True


def tokenizer_variant(name, bart_tokenizer, t5_tokenizer):
    """The generator tokenizer ``name`` (one of TOKENIZER_VARIANTS) built from the shared BART and T5 ones."""
    if name == "bart":
        return bart_tokenizer
    if name == "t5":
        return t5_tokenizer
    if name == "t5-nfkc":
        return variant(t5_tokenizer, t5_like_normalizer)
    if name.startswith("t5-metaspace"):
        return variant(t5_tokenizer, metaspace_alone(name.rsplit("-", 1)[1]))
    if name == "bart-prefix-space":
        return variant(bart_tokenizer, prefix_space)
    other = copy.deepcopy(bart_tokenizer)
    other.padding_side = "left"
    return other


TOKENIZER_VARIANTS = ["bart", "t5", "t5-nfkc", "t5-metaspace-first", "t5-metaspace-always", "bart-prefix-space",
                      "bart-left-pad", "wordpiece"]


@pytest.fixture(params=TOKENIZER_VARIANTS)
def tokenizer(request, bart_tokenizer, t5_tokenizer):
    if request.param == "wordpiece":  # BERT's WordPiece (MiniLM's, uncased): BertNormalizer + BertPreTokenizer
        return request.getfixturevalue("question_tokenizer")
    return tokenizer_variant(request.param, bart_tokenizer, t5_tokenizer)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("prefix", [None, "question: ", " "])
def test_fast_path_equals_one_tokenizer_call(tokenizer, seed, prefix):
    cache = ContextCache(tokenizer, max_passages=7)  # small: exercises eviction too
    assert cache.enabled
    max_length = [16, 48, 300][seed % 3]
    for round_ in range(2):  # second round: hits in the cache
        docs, questions = cases(seed + 100 * round_ * (seed % 2))
        want = reference(tokenizer, docs, questions, prefix, max_length)
        got = contextualize(docs, questions, tokenizer, prefix=prefix, title_sep=" / ", doc_sep=" // ",
                            max_length=max_length, cache=cache)
        assert got == want
    assert cache.hits + cache.misses > 0


def test_most_rows_take_the_fast_path_and_tensors_match(bart_tokenizer):
    cache = ContextCache(bart_tokenizer)
    docs = [{"title": ["T one", '"Two"'], "text": ["some text here.", "more text"]}] * 3
    questions = ["who is it?", "what  now", "q"]
    want = reference(bart_tokenizer, docs, questions, None, 40)
    got = contextualize(docs, questions, bart_tokenizer, prefix=None, title_sep=" / ", doc_sep=" // ",
                        max_length=40, return_tensors="np", cache=cache)
    assert cache.fallbacks == 0 and cache.hits == 0 and cache.misses == 2  # 2 distinct passages
    np.testing.assert_array_equal(got[0], np.asarray(want[0])) and np.testing.assert_array_equal(got[1], np.asarray(want[1]))
    assert got[0].dtype == np.int64
    pt = contextualize(docs, questions, bart_tokenizer, prefix=None, title_sep=" / ", doc_sep=" // ",
                       max_length=40, return_tensors="pt", cache=cache)
    assert pt[0].tolist() == want[0] and cache.hits == 6


def test_unprovable_cases_fall_back(bart_tokenizer):
    cache = ContextCache(bart_tokenizer)
    docs = [{"title": ["t", "t"], "text": ["ends with space ", "ends with nbsp\u00a0"]}]
    for doc_sep in (" // ", "//"):
        want = reference(bart_tokenizer, docs, ["q"], None, 30, doc_sep=doc_sep)
        got = contextualize(docs, ["q"], bart_tokenizer, prefix=None, title_sep=" / ", doc_sep=doc_sep,
                            max_length=30, cache=cache)
        assert got == want
    assert cache.fallbacks == 4
    assert ContextCache(variant(bart_tokenizer, lambda s: s.update(pre_tokenizer=None))).plan is None
    assert ContextCache(variant(bart_tokenizer, lambda s: s.update(normalizer={"type": "Strip", "strip_left": True, "strip_right": True}))).plan is None


WORDPIECE_EDGES = [
    "ends with punctuation.", "ends with a quote'", "hyphen-", "(paren)", "Café", "naïve", "e\u0301", "İstanbul İ",
    "ΟΔΥΣΣΕΥΣ", "Σ", "日本語", "中文 text 中", "한국어", "😀", "x" * 150, "a" * 99 + "b", "tab\tend", "ctrl\x07",
    "zero\u200bwidth", "ﬁ ligature", "UPPER lower MiXeD", "don't", "1990s", "[UNK]", "[SEP] inside", "##piece",
]


@pytest.mark.parametrize("max_length", [12, 40, 300])
def test_wordpiece_edge_cases_equal_one_tokenizer_call(question_tokenizer, max_length):
    """BERT's normalizer and pre-tokenizer at the split: punctuation, accents and case, CJK, words that become
    [UNK] (emoji, longer than 100 characters), special-token text, and truncation at three lengths."""
    cache = ContextCache(question_tokenizer)
    assert cache.enabled
    docs = [{"title": [WORDPIECE_EDGES[(i + j) % len(WORDPIECE_EDGES)] for j in range(4)],
             "text": [WORDPIECE_EDGES[(3 * i + j + 1) % len(WORDPIECE_EDGES)] + " and " + WORDPIECE_EDGES[(i + 2 * j) % len(WORDPIECE_EDGES)]
                      for j in range(4)]} for i in range(len(WORDPIECE_EDGES))]
    questions = [WORDPIECE_EDGES[(5 * i) % len(WORDPIECE_EDGES)] + "?" for i in range(len(docs))]
    want = reference(question_tokenizer, docs, questions, None, max_length)
    got = contextualize(docs, questions, question_tokenizer, prefix=None, title_sep=" / ", doc_sep=" // ",
                        max_length=max_length, cache=cache)
    assert got == want
    rows = 4 * len(docs)
    assert cache.fallbacks < rows // 4  # mostly the fast path: only CJK/İ/control endings fall back
