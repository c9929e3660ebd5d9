"""Evaluation: SQuAD EM/F1, retrieval recall@k, a JSONL-set evaluator with a JSON report and a PNG plot."""

from .evaluator import evaluate, evaluate_file, question_vectors
from .metrics import answer_in_passage, exact_match, f1, max_over_answers, normalize_answer, recall_at_k
from .plot import plot_recall_at_k

__all__ = [
    "answer_in_passage", "evaluate", "evaluate_file", "exact_match", "f1", "max_over_answers", "normalize_answer",
    "plot_recall_at_k", "question_vectors", "recall_at_k",
]
