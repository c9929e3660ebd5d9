"""Strict loading: a RAG checkpoint missing a weight (or holding an unknown one) is an error naming the key."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import QUESTIONS
from ragmodels import RagTokenForGeneration
from ragmodels.cli import main
from ragmodels.loading import WeightLoadError

QE_KEY = "rag.question_encoder.question_encoder.bert_model.encoder.layer.0.attention.self.query.weight"


def _edited_copy(folder, tmp_path, edit):
    out = tmp_path / "edited"
    shutil.copytree(folder, out)
    weights = load_file(out / "model.safetensors")
    edit(weights)
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    return out


def test_a_missing_question_encoder_weight_is_an_error_naming_it(tiny_rag_checkpoint, tmp_path):
    folder = _edited_copy(tiny_rag_checkpoint("token"), tmp_path, lambda w: w.pop(QE_KEY))
    with pytest.raises(WeightLoadError, match=r"missing: " + QE_KEY.replace(".", r"\.")):
        RagTokenForGeneration.from_pretrained(folder)
    model = RagTokenForGeneration.from_pretrained(folder, strict=False)  # the explicit opt-out
    assert isinstance(model, RagTokenForGeneration)


def test_an_unexpected_weight_is_an_error(tiny_rag_checkpoint, tmp_path):
    folder = _edited_copy(tiny_rag_checkpoint("token"), tmp_path, lambda w: w.update({"rag.extra.weight": torch.ones(2)}))
    with pytest.raises(WeightLoadError, match=r"unexpected: rag\.extra\.weight"):
        RagTokenForGeneration.from_pretrained(folder)


def test_a_complete_checkpoint_loads_with_its_loading_info(tiny_rag_checkpoint):
    model, info = RagTokenForGeneration.from_pretrained(tiny_rag_checkpoint("token"), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_ask_on_a_checkpoint_without_a_question_encoder_weight_exits_naming_the_key(
        tiny_rag_checkpoint, tiny_knowledge_base, tmp_path, capsys):
    folder = _edited_copy(tiny_rag_checkpoint("token"), tmp_path, lambda w: w.pop(QE_KEY))
    code = main(["ask", QUESTIONS[0], "--model", str(folder), "--index", str(tiny_knowledge_base), "--no-worker"])
    err = capsys.readouterr().err
    assert code != 0
    assert QE_KEY in err and "Traceback" not in err
