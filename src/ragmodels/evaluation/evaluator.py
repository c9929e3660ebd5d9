"""Evaluate a RAG model and its retriever on a question/answer set: EM, F1 and retrieval recall@k.

Answers come from ``model.generate`` (which retrieves through the model's retriever); recall is
measured on the retriever's top ``max(ks)`` passages for the same question vectors: a passage counts
when it contains a gold answer ("answer" recall) or when it is the record's gold passage ("gold"
recall: its text equals ``gold_texts[record["gold_passage_id"]]``, whitespace-normalized, since
knowledge bases number passages themselves; reported when ``gold_texts`` is given).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .._io import atomic_write_bytes
from ..data.jsonl import OnError, read_jsonl, read_qa_jsonl
from .metrics import answer_in_passage, exact_match, f1, max_over_answers, recall_at_k
from .plot import plot_recall_at_k

DEFAULT_KS = (1, 5, 10, 20)


def question_vectors(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(batch, d) question vectors: the model's own pooling rule, or DPR's pooled output for reference models."""
    rag = getattr(model, "rag", model)
    if hasattr(rag, "encode_question"):
        return rag.encode_question(input_ids, attention_mask)
    return model.question_encoder(input_ids, attention_mask=attention_mask)[0]


@torch.no_grad()
def evaluate(
    model,
    tokenizer,
    records: Sequence[dict[str, Any]],
    retriever=None,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 16,
    max_question_length: int = 64,
    generation_kwargs: dict[str, Any] | None = None,
    keep_predictions: bool = True,
    gold_texts: Mapping[str, str] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score ``records`` (dicts with question and answers); returns a JSON-ready report.

    ``progress``: a progress bar of questions on stderr.
    """
    from tqdm.auto import tqdm

    if not records:
        raise ValueError("Nothing to evaluate: the question set is empty.")
    retriever = retriever if retriever is not None else model.retriever
    if retriever is None:
        raise ValueError("evaluate needs a retriever: pass one or give the model one with set_retriever.")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ks = sorted(set(ks))
    generation_kwargs = {"max_new_tokens": 24, **(generation_kwargs or {})}
    predictions, answer_hits, gold_hits = [], [], []
    bar = tqdm(total=len(records), desc="evaluating", unit="question", disable=not progress)
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        enc = tokenizer.question_encoder(
            [r["question"] for r in batch], padding=True, truncation=True, max_length=max_question_length,
            return_tensors="pt",
        ).to(device)
        vectors = question_vectors(model, enc["input_ids"], enc["attention_mask"])
        _, _, doc_dicts = retriever.retrieve(vectors.float().cpu().numpy(), ks[-1])
        for record, docs in zip(batch, doc_dicts):
            answer_hits.append([answer_in_passage(record["answers"], text) for text in docs["text"]])
            if gold_texts is not None:
                gold = _squash(gold_texts.get(record.get("gold_passage_id"), ""))
                gold_hits.append([_squash(text) == gold for text in docs["text"]])
        generated = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **generation_kwargs)
        predictions.extend(tokenizer.generator.batch_decode(generated, skip_special_tokens=True))
        bar.update(len(batch))
    bar.close()
    model.train(was_training)
    return _report(records, [p.strip() for p in predictions], answer_hits, gold_hits, ks, keep_predictions)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _report(records, predictions, answer_hits, gold_hits, ks, keep_predictions) -> dict[str, Any]:
    scores = [
        (max_over_answers(exact_match, p, r["answers"]), max_over_answers(f1, p, r["answers"]))
        for p, r in zip(predictions, records)
    ]
    by_relation: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record, score in zip(records, scores):
        if "relation" in record:
            by_relation[record["relation"]].append(score)
    report: dict[str, Any] = {
        "n_questions": len(records),
        "exact_match": sum(s[0] for s in scores) / len(scores),
        "f1": sum(s[1] for s in scores) / len(scores),
        "answer_recall@k": {str(k): v for k, v in recall_at_k(answer_hits, ks).items()},
    }
    if len(gold_hits) == len(records):
        report["gold_recall@k"] = {str(k): v for k, v in recall_at_k(gold_hits, ks).items()}
    if by_relation:
        report["by_relation"] = {
            rel: {"n": len(s), "exact_match": sum(x[0] for x in s) / len(s), "f1": sum(x[1] for x in s) / len(s)}
            for rel, s in sorted(by_relation.items())
        }
    if keep_predictions:
        report["predictions"] = [
            {"question": r["question"], "answers": r["answers"], "prediction": p, "exact_match": s[0], "f1": s[1]}
            for r, p, s in zip(records, predictions, scores)
        ]
    return report


def evaluate_file(
    path: str | os.PathLike,
    model,
    tokenizer,
    retriever=None,
    on_error: OnError = "stop",
    documents_path: str | os.PathLike | None = None,
    report_path: str | os.PathLike | None = None,
    plot_path: str | os.PathLike | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Evaluate a JSONL set; malformed lines stop the run or are skipped and listed in the report.

    ``documents_path``: the documents JSONL (id, title, text) the knowledge base was built from, for gold recall.
    """
    data = read_qa_jsonl(path, on_error=on_error)
    if documents_path is not None:
        kwargs["gold_texts"] = {d["id"]: d["text"] for d in read_jsonl(documents_path).records}
    report = {"file": str(path), **evaluate(model, tokenizer, data.records, retriever=retriever, **kwargs)}
    report["malformed_lines"] = [e.to_dict() for e in data.errors]
    if report_path is not None:
        atomic_write_bytes(report_path, (json.dumps(report, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    if plot_path is not None:
        plot_recall_at_k(report, plot_path)
    return report
