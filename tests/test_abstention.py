"""The abstention rule (ragmodels.abstention): features, fit, apply, save/load; and the pipeline applying it."""

from __future__ import annotations

import json
import math
import random

import pytest

from ragmodels import abstention
from ragmodels.abstention import AbstentionRule


def test_features_count_words_neither_common_nor_in_the_passages():
    feats = abstention.features("Who is the president of France?", ["France / France is a country in Europe."],
                                [2.0, 4.5, 3.0], -0.7, vocabulary=["what", "is", "the", "of"])
    # words: who, is, the, president, of, france; unsupported: who, president
    assert feats == {"top_inner_product": 4.5, "unsupported_words": pytest.approx(2 / 6), "log_likelihood": -0.7}
    assert abstention.features("What is the capital of France?", ["France / capital Paris"], [7.0], -0.1,
                               vocabulary=["what", "is", "the", "of"])["unsupported_words"] == 0.0
    with pytest.raises(ValueError, match="at least one retrieved passage"):
        abstention.features("x", [], [], 0.0, vocabulary=[])


def test_common_words_keep_template_words_and_drop_entities():
    questions = [f"What is the capital of Land{i}?" for i in range(100)]  # each entity in 1 of 101 questions
    questions.append("Which country borders Oman?")
    assert abstention.common_words(questions, min_share=0.05) == ["capital", "is", "of", "the", "what"]


def _synthetic(seed: int = 0):
    """Answerable questions: high inner products, few unsupported words; unanswerable: the opposite."""
    rng = random.Random(seed)
    answerable = [{"top_inner_product": rng.uniform(4, 10), "unsupported_words": 0.0,
                   "log_likelihood": rng.uniform(-2, 0)} for _ in range(60)]
    relations = ["capital", "currency", "continent"] * 20
    unanswerable = [{"top_inner_product": rng.uniform(0.5, 3.5), "unsupported_words": rng.uniform(0.2, 0.8),
                     "log_likelihood": rng.uniform(-2.5, 0)} for _ in range(40)]
    return answerable, relations, unanswerable


def test_fit_answers_every_answerable_question_and_abstains_on_the_separable_rest():
    answerable, relations, unanswerable = _synthetic()
    rule = abstention.fit(answerable, relations, unanswerable, vocabulary=["what"], margin=0.5)
    rates = rule.report["abstention"]
    assert rates == {"capital": 0.0, "continent": 0.0, "currency": 0.0, "out_of_domain": 1.0}
    assert rule.weights["top_inner_product"] > 0 and rule.weights["unsupported_words"] < 0
    # the threshold is `margin` logits below the least confident answerable question
    least = min(rule.bias + sum(rule.weights[k] * f[k] for k in rule.weights) for f in answerable)
    assert math.log(rule.threshold / (1 - rule.threshold)) == pytest.approx(least - 0.5, abs=1e-9)


def test_fit_needs_both_sides_and_matching_relations():
    answerable, relations, unanswerable = _synthetic()
    with pytest.raises(ValueError, match="both answerable"):
        abstention.fit(answerable, relations, [], vocabulary=[])
    with pytest.raises(ValueError, match="relations"):
        abstention.fit(answerable, relations[:-1], unanswerable, vocabulary=[])


def test_save_load_round_trip_decides_the_same(tmp_path):
    answerable, relations, unanswerable = _synthetic(1)
    rule = abstention.fit(answerable, relations, unanswerable, vocabulary=["what", "capital"])
    assert abstention.load(tmp_path) is None  # no file: no rule
    path = rule.save(tmp_path)
    assert path.name == abstention.FILE_NAME
    again = abstention.load(tmp_path)
    assert again == rule  # JSON keeps every float exactly (repr round trip)
    for args, abstains in [
        (("Who wrote the play Hamlet?", ["Samoa / Apia is the capital of Samoa."], [1.5, 1.2], -1.1), True),
        (("What is the capital of Samoa?", ["Samoa / Apia is the capital of Samoa."], [8.0, 3.9], -0.2), False),
    ]:
        assert again.decide(*args) == rule.decide(*args)
        assert again.decide(*args)[0] is abstains


def test_bad_rule_files_are_clear_errors(tmp_path):
    (tmp_path / abstention.FILE_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        abstention.load(tmp_path)
    (tmp_path / abstention.FILE_NAME).write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="format 99"):
        abstention.load(tmp_path)
    (tmp_path / abstention.FILE_NAME).write_text(json.dumps({"format": abstention.FORMAT, "bias": 0.0}))
    with pytest.raises(ValueError, match="malformed field"):
        abstention.load(tmp_path)
    with pytest.raises(ValueError, match="unknown features"):
        AbstentionRule(weights={"length": 1.0}, bias=0.0, threshold=0.5, vocabulary=[])


def _always(abstain: bool) -> AbstentionRule:
    """A rule whose confidence is sigmoid(0) = 0.5 for every question, and a threshold above or below it."""
    return AbstentionRule(weights={}, bias=0.0, threshold=0.9 if abstain else 0.1, vocabulary=[])


def test_pipeline_applies_its_rule_and_can_be_told_not_to(tiny_rag_checkpoint, tiny_knowledge_base, tmp_path):
    import shutil

    from conftest import QUESTIONS
    from ragmodels.pipeline import RagPipeline

    folder = shutil.copytree(tiny_rag_checkpoint("token"), tmp_path / "model")
    pipe = RagPipeline.from_pretrained(folder, index=tiny_knowledge_base, device="cpu")
    assert pipe.abstention is None  # the checkpoint has no abstention.json
    fast = dict(n_docs=2, num_beams=1, max_new_tokens=4)
    plain = pipe.answer(QUESTIONS[:2], **fast)
    assert all(not a.abstained and a.confidence is None for a in plain)
    pipe.abstention = _always(abstain=True)
    judged = pipe.answer(QUESTIONS[:2], **fast)
    assert [(a.answer, a.abstained, a.confidence) for a in judged] == [(None, True, 0.5)] * 2
    assert [a.passages for a in judged] == [a.passages for a in plain]  # the evidence is still shown
    assert [a.answer for a in pipe.answer(QUESTIONS[:2], abstain=False, **fast)] == [a.answer for a in plain]
    _always(abstain=False).save(folder)  # stored with the model: from_pretrained reads it
    loaded = RagPipeline.from_pretrained(folder, index=tiny_knowledge_base, device="cpu")
    assert loaded.abstention == _always(abstain=False)
    assert [(a.answer, a.abstained, a.confidence) for a in loaded.answer(QUESTIONS[:2], **fast)] == \
        [(a.answer, False, 0.5) for a in plain]


def test_the_fit_vocabulary_holds_function_words_and_the_questions_common_words():
    from ragmodels.abstention import FUNCTION_WORDS, fit_vocabulary

    questions = [f"What is the capital of Country{i}?" for i in range(200)]
    vocabulary = set(fit_vocabulary(questions))
    assert {"capital", "what", "tell", "does"} <= vocabulary and FUNCTION_WORDS <= vocabulary
    assert not any(w.startswith("country") for w in vocabulary)  # each entity is in too few questions
