"""Answer metrics (SQuAD exact match and token F1) and retrieval recall@k."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalization: lowercase, drop punctuation, drop articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answer: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(answer))


def f1(prediction: str, answer: str) -> float:
    """Token-level F1 between normalized prediction and answer."""
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def max_over_answers(metric: Callable[[str, str], float], prediction: str, answers: Sequence[str]) -> float:
    """The best score of ``prediction`` against any gold answer."""
    if not answers:
        raise ValueError("At least one gold answer is needed to score a prediction.")
    return max(metric(prediction, answer) for answer in answers)


def answer_in_passage(answers: Sequence[str], passage: str) -> bool:
    """Whether any normalized answer occurs as a whole-token span of the normalized passage."""
    padded = f" {normalize_answer(passage)} "
    return any(f" {normalize_answer(a)} " in padded for a in answers if normalize_answer(a))


def recall_at_k(hits: Sequence[Sequence[bool]], ks: Sequence[int]) -> dict[int, float]:
    """Fraction of questions with a hit among their first k retrieved passages, for each k.

    ``hits[i][j]`` says whether the j-th passage retrieved for question i is relevant.
    """
    if not hits:
        raise ValueError("recall_at_k needs at least one question.")
    return {k: sum(any(row[:k]) for row in hits) / len(hits) for k in ks}
