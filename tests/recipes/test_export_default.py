"""The default's export recipe (recipes/geoqa/export.py, what ``recipes/train_default.py --export`` writes)."""

from __future__ import annotations

import json

import pytest

from geoqa.export import export_default
from ragmodels import default
from ragmodels.pipeline import RagPipeline

pytestmark = pytest.mark.skipif(not default.available(), reason="the embedded default model is not installed")
QUESTIONS = ["What is the capital of Lebanon?", "Which country borders Lesotho?", "Tajikistan is located on which continent?"]


def test_export_and_reload_round_trip(tmp_path):
    """An exported default reloads to the same answers, with its config pointing at its own folders."""
    model, tokenizer = default.load_default()
    folder = export_default(model, tokenizer, default.DEFAULT_DIR / default.KB_DIR, tmp_path / "exported",
                            extra={"note": "test"}, question_layers=1)
    config = json.loads((folder / "config.json").read_text())
    assert config["copy_from_context"] is True and config["generator"]["_name_or_path"] == default.GENERATOR_DIR
    want = RagPipeline(model, tokenizer).answer(QUESTIONS, num_beams=1, abstain=False)
    again = RagPipeline(*default.load_default(folder=folder)).answer(QUESTIONS, num_beams=1, abstain=False)
    assert [a.answer for a in again] == [a.answer for a in want]
    assert json.loads((folder / "info.json").read_text()) == {"note": "test"}
