"""The shipped default model: it loads from the package (MiniLM from its own package), answers held-out
GeoQA questions, and ``ragmodels ask --json`` prints one JSON object per question."""

from __future__ import annotations

import json

import pytest

from ragmodels import default

pytestmark = pytest.mark.skipif(not default.available(), reason="the default model is not shipped in this checkout")

# test-split entities (never seen in training) that the shipped model answers correctly
QUESTIONS = {
    "What is the currency of Lebanon?": "Pound",
    "Which country borders Lesotho?": "South Africa",
    "Tajikistan is located on which continent?": "Asia",
    "Which continent is Montserrat part of?": "North America",
    "What money do people pay with in American Samoa?": "Dollar",
}


@pytest.fixture(scope="module")
def pipeline():
    from ragmodels.pipeline import RagPipeline

    return RagPipeline.from_default(device="cpu")


def test_ships_without_question_encoder_weights():
    files = [p for p in default.DEFAULT_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 60 * 2**20
    from safetensors import safe_open

    with safe_open(str(default.DEFAULT_DIR / "generator" / "model.safetensors"), "pt") as f:
        assert not any(k.startswith("question_encoder") for k in f.keys())


def test_answers_held_out_questions(pipeline):
    answers = pipeline.answer(list(QUESTIONS), num_beams=1)
    assert [a.answer for a in answers] == list(QUESTIONS.values())
    for a in answers:
        assert len(a.passages) == pipeline.model.config.n_docs
        assert abs(sum(p.score for p in a.passages) - 1) < 1e-4


def test_ask_json_shape(capsys):
    from ragmodels.cli import main

    assert main(["ask", "--json", "What is the capital of Mongolia?", "Which continent is Italy part of?"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        obj = json.loads(line)
        assert isinstance(obj["answer"], str) and obj["answer"]
        assert isinstance(obj["score"], float)
        assert obj["passages"] and all({"title", "text", "score"} <= set(p) for p in obj["passages"])
