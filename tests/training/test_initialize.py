"""``ragmodels init`` and ``--model-path default``: the offline start of the README's training section."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
import torch

from ragmodels import RagSequenceForGeneration
from ragmodels.cli import build_parser, main
from ragmodels.default import available, load_default
from ragmodels.training import TrainConfig, train
from ragmodels.training.config import FIELD_HELP

pytestmark = pytest.mark.skipif(not available(), reason="the embedded default model is not installed")
QUESTIONS = ["What is the capital of Mongolia?", "Which continent is Chile in?"]


@pytest.fixture(scope="module")
def initialized(tmp_path_factory):
    folder = tmp_path_factory.mktemp("init") / "my_rag"
    assert main(["init", str(folder)]) == 0
    return folder


def _answers(model, tokenizer):
    enc = tokenizer.question_encoder(QUESTIONS, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], num_beams=2,
                             max_new_tokens=12, return_dict_in_generate=True, output_scores=False)
    return out.sequences, out.sequences_scores


def test_init_writes_a_checkpoint_that_reloads_strictly_to_the_defaults_outputs(initialized):
    from ragmodels import RagRetriever, RagTokenizer

    retriever = RagRetriever.from_pretrained(initialized)  # the config points at the shipped knowledge base
    model = RagSequenceForGeneration.from_pretrained(initialized, retriever=retriever).eval()  # strict loading
    tokenizer = RagTokenizer.from_pretrained(initialized)
    default, default_tokenizer = load_default()
    ids, scores = _answers(model, tokenizer)
    want_ids, want_scores = _answers(default, default_tokenizer)
    assert torch.equal(ids, want_ids)
    # the same float32 weights (the default's fp16 generator upcast, its MiniLM scaled once) on both sides
    torch.testing.assert_close(scores, want_scores, rtol=1e-6, atol=1e-6)


def test_init_refuses_a_folder_that_holds_files(initialized, capsys):
    assert main(["init", str(initialized)]) == 1
    assert "not empty" in capsys.readouterr().err


def test_fresh_generator_keeps_the_architecture_with_new_weights(tmp_path):
    assert main(["init", str(tmp_path / "fresh"), "--generator", "fresh", "--head", "token"]) == 0
    config = json.loads((tmp_path / "fresh" / "config.json").read_text())
    default, _ = load_default()
    assert config["architectures"] == ["RagTokenForGeneration"]
    assert config["generator"]["d_model"] == default.config.generator.d_model
    from ragmodels import RagTokenForGeneration

    fresh = RagTokenForGeneration.from_pretrained(tmp_path / "fresh")
    name = "shared.weight"
    assert not torch.equal(fresh.rag.generator.state_dict()[name], default.rag.generator.state_dict()[name])


def test_training_starts_from_the_shipped_default(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answers": [a]}) + "\n"
                            for q, a in [(QUESTIONS[0], "Ulaanbaatar"), (QUESTIONS[1], "South America")]))
    result = train(TrainConfig(train_file=str(data), output_dir=str(tmp_path / "run"), model_path="default",
                               batch_size=2, max_steps=1, learning_rate=1e-4, progress_bar=False, device="cpu"))
    trained = RagSequenceForGeneration.from_pretrained(result.output_dir / "model")
    default, _ = load_default()
    name = "rag.generator.shared.weight"
    assert not torch.equal(trained.state_dict()[name], default.state_dict()[name])  # the step changed it


def test_every_train_flag_has_help():
    assert set(FIELD_HELP) == {f.name for f in fields(TrainConfig)}
    train_parser = build_parser("train")._subparsers._group_actions[0].choices["train"]
    undocumented = [a.option_strings for a in train_parser._actions if a.option_strings and not a.help]
    assert not undocumented


def test_a_generator_that_is_no_folder_is_refused_before_anything_loads(tmp_path, capsys):
    assert main(["init", str(tmp_path / "x"), "--generator", str(tmp_path / "missing")]) == 1
    assert "not a folder" in capsys.readouterr().err and not (tmp_path / "x").exists()
