import json

import numpy as np
import pytest
import torch

from ragmodels.data import JsonlFormatError
from ragmodels.evaluation import evaluate_file

PASSAGES = {
    "Peru": ("p-peru", "Lima is the capital of Peru."),
    "Chile": ("p-chile", "Santiago is the capital of Chile."),
    "Japan": ("p-japan", "Tokyo is the capital of Japan."),
}
ANSWERS = {"Peru": "Lima", "Chile": "Valparaiso", "Japan": "the Tokyo"}  # what the stub model says


class StubTokenizer:
    """Question tokenizer keeps the batch's countries; generator decodes them into canned answers."""

    def __init__(self):
        self.question_encoder = self
        self.generator = self
        self.countries: list[str] = []

    def __call__(self, questions, **kwargs):
        from transformers import BatchEncoding

        self.countries = [q.split()[-1].rstrip("?") for q in questions]
        ids = torch.arange(len(questions)).unsqueeze(1)
        return BatchEncoding({"input_ids": ids, "attention_mask": torch.ones_like(ids)})

    def batch_decode(self, ids, skip_special_tokens=True):
        return [ANSWERS[self.countries[i]] for i in ids[:, 0].tolist()]


class StubRetriever:
    """Retrieves the right passage first for Peru and second for Chile, never for Japan."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def retrieve(self, vectors, n_docs):
        order = {"Peru": ["Peru", "Chile", "Japan"], "Chile": ["Peru", "Chile", "Japan"], "Japan": ["Peru", "Chile", "Peru"]}
        docs = [order[c][:n_docs] for c in self.tokenizer.countries]
        dicts = [{"title": d, "text": [PASSAGES[x][1] for x in d]} for d in docs]
        return np.zeros((len(docs), n_docs, 2), np.float32), np.zeros((len(docs), n_docs), np.int64), dicts


class StubModel(torch.nn.Module):
    def __init__(self, retriever):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.retriever = retriever

    def question_encoder(self, input_ids, attention_mask=None):
        return (torch.zeros(len(input_ids), 2),)

    def generate(self, input_ids, attention_mask, **kwargs):
        assert kwargs["max_new_tokens"] == 24
        return input_ids


def write_set(tmp_path, lines):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(lines) + "\n")
    (tmp_path / "docs.jsonl").write_text(
        "".join(json.dumps({"id": i, "title": c, "text": t}) + "\n" for c, (i, t) in PASSAGES.items())
    )
    return path


def record(country, answer):
    return json.dumps({"question": f"What is the capital of {country}?", "answers": [answer],
                       "relation": "capital", "gold_passage_id": PASSAGES[country][0]})


def test_report_scores_answers_and_recall_and_lists_skipped_lines(tmp_path):
    path = write_set(tmp_path, [record("Peru", "Lima"), '{"question": "x"', record("Chile", "Santiago"),
                                record("Japan", "Tokyo")])
    tokenizer = StubTokenizer()
    model = StubModel(StubRetriever(tokenizer))
    report = evaluate_file(path, model, tokenizer, on_error="skip", ks=[1, 2, 3], documents_path=tmp_path / "docs.jsonl",
                           report_path=tmp_path / "report.json", plot_path=tmp_path / "recall.png", batch_size=2)
    assert report["n_questions"] == 3
    assert report["exact_match"] == pytest.approx(2 / 3)  # Lima, "the Tokyo" right; Valparaiso wrong
    assert report["answer_recall@k"] == {"1": pytest.approx(1 / 3), "2": pytest.approx(2 / 3), "3": pytest.approx(2 / 3)}
    assert report["gold_recall@k"] == {"1": pytest.approx(1 / 3), "2": pytest.approx(2 / 3), "3": pytest.approx(2 / 3)}
    assert report["malformed_lines"][0]["line"] == 2
    assert report["by_relation"]["capital"]["n"] == 3
    assert json.loads((tmp_path / "report.json").read_text())["f1"] == report["f1"]
    assert (tmp_path / "recall.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stop_on_malformed_line_writes_no_report(tmp_path):
    path = write_set(tmp_path, [record("Peru", "Lima"), "oops"])
    tokenizer = StubTokenizer()
    with pytest.raises(JsonlFormatError, match=":2:"):
        evaluate_file(path, StubModel(StubRetriever(tokenizer)), tokenizer, report_path=tmp_path / "report.json")
    assert not (tmp_path / "report.json").exists()
