"""Abstention: "no answer in the knowledge base" when the evidence for an answer is weak.

A retrieval-augmented model always finds *some* passages and, copy-restricted, always copies *some* span
from them, so a question the knowledge base cannot answer ("Who wrote Hamlet?") still gets a confident
looking answer. The rule here looks at three numbers per question, all framework-neutral (plain floats
and strings, the same for the PyTorch and the TensorFlow stack):

  - ``top_inner_product``: <q, d_1>, the retrieval score of the best passage (in domain it is several
    units above what unrelated questions reach);
  - ``unsupported_words``: the share of the question's words that are neither common words of the
    questions the rule was fitted on (its ``vocabulary``: "what", "capital", "currency", ...) nor words
    of the retrieved passages: "president" in "Who is the president of France?", "Atlantis" in "What is
    the capital of Atlantis?" (no passage names it);
  - ``log_likelihood``: log p(answer | question) under the model (available; ``fit`` leaves it out by
    default, FIT_FEATURES).

confidence = sigmoid(bias + sum_f weight_f * feature_f), a logistic regression of "answerable" fitted on
in-domain dev questions (answerable: positive) against out-of-domain questions (negative), classes
weighted equally and the weights L2-regularised (the two sets are separable, so without it the weights
would grow without bound). The model abstains when confidence < ``threshold``; ``fit`` puts the
threshold halfway (in logits) between the least confident answerable dev question and the most confident
unanswerable one, and never above the least confident answerable one: no answerable dev question of any
relation abstains.

Stored with the model as ``abstention.json`` in its folder (``save`` / ``load``).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._io import atomic_write_bytes

FILE_NAME = "abstention.json"
FORMAT = 1
FEATURES = ("top_inner_product", "unsupported_words", "log_likelihood")
# what ``fit`` uses unless told otherwise: on the default model the answer's log-likelihood added nothing
# (out-of-domain answers are copied spans too, as likely as in-domain ones), see README "Knowing when it does not know"
FIT_FEATURES = ("top_inner_product", "unsupported_words")
_WORD = re.compile(r"\w+")


def question_words(text: str) -> list[str]:
    """The lower-cased words (runs of letters/digits) of ``text``."""
    return _WORD.findall(text.lower())


# English function words and question verbs: how a question is put, never what it is about. ``fit_vocabulary``
# adds them to the fitted questions' common words, so a paraphrase ("Tell me the capital of Peru.", "What
# currency does Japan use?") is not taken for an unsupported question because of its wording.
FUNCTION_WORDS = frozenset("""
a an the this that these those it its is are was were be been being am do does did done have has had
of in on at to for from by with within into about as than and or not no yes s
what which who whom whose where when why how much many
i me my we us our you your he she they them their there here
can could would will shall should may might must please tell say give name list show find know call called
use uses used lie lies located situated official also
""".split())


def fit_vocabulary(questions: Iterable[str], min_share: float = 0.01) -> list[str]:
    """The vocabulary a rule is fitted with: ``common_words`` of ``questions`` and FUNCTION_WORDS."""
    return sorted(FUNCTION_WORDS.union(common_words(questions, min_share)))


def common_words(questions: Iterable[str], min_share: float = 0.01) -> list[str]:
    """Words that occur in at least ``min_share`` of ``questions`` (the question templates' words, not the
    entities: an entity occurs in the few questions about it)."""
    questions = list(questions)
    counts = Counter(w for q in questions for w in set(question_words(q)))
    return sorted(w for w, c in counts.items() if c >= min_share * len(questions))


def features(question: str, passages: Sequence[str], inner_products: Sequence[float], log_likelihood: float,
             vocabulary: Iterable[str]) -> dict[str, float]:
    """The rule's inputs for one answered question: ``passages`` are the retrieved passages' texts (title
    and text), ``inner_products`` their <q, d> (best first, or in any order: the largest is taken)."""
    if not inner_products:
        raise ValueError("Abstention needs at least one retrieved passage (inner_products is empty).")
    words = question_words(question)
    known = set(vocabulary).union(*(question_words(p) for p in passages))
    unsupported = sum(w not in known for w in words) / max(len(words), 1)
    return {"top_inner_product": float(max(inner_products)), "unsupported_words": float(unsupported),
            "log_likelihood": float(log_likelihood)}


@dataclass
class AbstentionRule:
    """A fitted rule: ``weights`` per feature name (see FEATURES), ``bias``, ``threshold`` on confidence,
    the ``vocabulary`` of common question words, and ``report`` (what it was fitted on, and how it did)."""

    weights: dict[str, float]
    bias: float
    threshold: float
    vocabulary: list[str]
    report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(FEATURES))
        if unknown:
            raise ValueError(f"Abstention rule: unknown features {unknown}; known: {list(FEATURES)}.")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"Abstention rule: threshold {self.threshold} is not a probability in [0, 1].")

    def features(self, question: str, passages: Sequence[str], inner_products: Sequence[float],
                 log_likelihood: float) -> dict[str, float]:
        return features(question, passages, inner_products, log_likelihood, self.vocabulary)

    def confidence(self, feats: dict[str, float]) -> float:
        """p(answerable | features), the fitted logistic regression."""
        return _sigmoid(self.bias + sum(self.weights[n] * feats[n] for n in FEATURES if n in self.weights))

    def decide(self, question: str, passages: Sequence[str], inner_products: Sequence[float],
               log_likelihood: float) -> tuple[bool, float]:
        """(abstain?, confidence) for one answered question (arguments as ``features``)."""
        confidence = self.confidence(self.features(question, passages, inner_products, log_likelihood))
        return confidence < self.threshold, confidence

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AbstentionRule":
        if data.get("format") != FORMAT:
            raise ValueError(f"Abstention rule of format {data.get('format')!r}; this version reads format {FORMAT}. "
                             "Refit it with recipes/fit_abstention.py.")
        try:
            return cls(weights={k: float(v) for k, v in data["weights"].items()}, bias=float(data["bias"]),
                       threshold=float(data["threshold"]), vocabulary=[str(w) for w in data["vocabulary"]],
                       report=dict(data.get("report", {})))
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"Abstention rule is missing or has a malformed field ({err!r}); refit it with "
                             "recipes/fit_abstention.py.") from err

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``folder/abstention.json`` (atomically: a failed save leaves the old file)."""
        path = Path(folder) / FILE_NAME
        atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode())
        return path


def load(folder: str | os.PathLike) -> AbstentionRule | None:
    """The rule stored in a model ``folder``, or None when it has none (then nothing abstains)."""
    path = Path(folder) / FILE_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); refit it with recipes/fit_abstention.py.") from err
    try:
        return AbstentionRule.from_dict(data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def fit(answerable: Sequence[dict[str, float]], relations: Sequence[str], unanswerable: Sequence[dict[str, float]],
        vocabulary: Sequence[str], margin: float | None = None, l2: float = 1.0,
        feature_names: Sequence[str] = FIT_FEATURES) -> AbstentionRule:
    """Fit a rule on feature dicts of answerable (in-domain dev) questions, with their ``relations`` (any
    grouping: the report gives each group's abstention), and of unanswerable (out-of-domain) questions.

    ``margin``: how far (logit units) the threshold sits below the least confident answerable question;
    None: half the gap to the most confident unanswerable one (0 when the two sets overlap);
    ``l2``: the weight penalty on standardized features (each feature scaled by its spread);
    ``feature_names``: which of FEATURES the rule weighs.
    """
    if len(answerable) != len(relations):
        raise ValueError(f"fit: {len(answerable)} answerable questions but {len(relations)} relations.")
    if not answerable or not unanswerable:
        raise ValueError("fit needs both answerable (in-domain) and unanswerable (out-of-domain) questions.")
    names = list(feature_names)
    unknown = sorted(set(names) - set(FEATURES))
    if unknown or not names:
        raise ValueError(f"fit: features {unknown or names} are not among {list(FEATURES)}.")
    rows = [[f[n] for n in names] for f in (*answerable, *unanswerable)]
    labels = [1.0] * len(answerable) + [0.0] * len(unanswerable)
    weights_per_row = [0.5 / len(answerable)] * len(answerable) + [0.5 / len(unanswerable)] * len(unanswerable)
    means = [sum(r[j] for r in rows) / len(rows) for j in range(len(names))]
    scales = [math.sqrt(sum((r[j] - means[j]) ** 2 for r in rows) / len(rows)) or 1.0 for j in range(len(names))]
    standard = [[(r[j] - means[j]) / scales[j] for j in range(len(names))] for r in rows]
    beta = _logistic_regression(standard, labels, weights_per_row, l2 / len(rows))
    weights = {n: beta[j + 1] / scales[j] for j, n in enumerate(names)}  # back to raw feature units
    bias = beta[0] - sum(weights[n] * means[j] for j, n in enumerate(names))
    def logit(f: dict[str, float]) -> float:
        return bias + sum(weights[n] * f[n] for n in names)

    lowest, highest = min(map(logit, answerable)), max(map(logit, unanswerable))
    if margin is None:
        margin = max((lowest - highest) / 2, 0.0)
    rule = AbstentionRule(weights=weights, bias=bias, threshold=_sigmoid(lowest - margin), vocabulary=list(vocabulary))
    rule.report = {"margin": margin, "l2": l2, "answerable": len(answerable), "unanswerable": len(unanswerable),
                   "lowest_answerable_confidence": _sigmoid(lowest), "highest_unanswerable_confidence": _sigmoid(highest),
                   "abstention": abstention_rates(rule, answerable, relations, unanswerable)}
    return rule


def abstention_rates(rule: AbstentionRule, answerable: Sequence[dict[str, float]], relations: Sequence[str],
                     unanswerable: Sequence[dict[str, float]]) -> dict[str, float]:
    """Share of questions the rule abstains on: per relation of the answerable ones, and "out_of_domain"."""
    groups: dict[str, list[bool]] = {}
    for feats, relation in zip(answerable, relations):
        groups.setdefault(relation, []).append(rule.confidence(feats) < rule.threshold)
    rates = {r: sum(g) / len(g) for r, g in sorted(groups.items())}
    rates["out_of_domain"] = sum(rule.confidence(f) < rule.threshold for f in unanswerable) / max(len(unanswerable), 1)
    return rates


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _logistic_regression(x: list[list[float]], y: list[float], w: list[float], l2: float,
                         steps: int = 50) -> list[float]:
    """[bias, coefficients...] maximizing sum_i w_i log-likelihood_i - l2/2 |coefficients|^2 (Newton steps;
    the objective is strictly concave, so they converge to its one maximum)."""
    import numpy as np

    X = np.hstack([np.ones((len(x), 1)), np.asarray(x, dtype=np.float64)])  # (n, 1 + d)
    Y, W = np.asarray(y, dtype=np.float64), np.asarray(w, dtype=np.float64)
    penalty = np.full(X.shape[1], l2)
    penalty[0] = 0.0  # the bias is not penalized
    beta = np.zeros(X.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(X @ beta)))  # (n,)
        gradient = X.T @ (W * (Y - p)) - penalty * beta
        hessian = (X * (W * p * (1 - p))[:, None]).T @ X + np.diag(penalty)  # (1 + d, 1 + d)
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    return beta.tolist()
