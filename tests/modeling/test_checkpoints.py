"""Checkpoints: ours <-> reference both ways, safetensors only, and building from two pretrained models."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from conftest import tiny_bart_config, tiny_dpr_config
from ragmodels import RagConfig, RagModel, RagTokenForGeneration

from .conftest import CLASSES, answer_labels


@pytest.mark.parametrize("head", ["model", "token", "sequence"])
@pytest.mark.parametrize("direction", ["ours_to_reference", "reference_to_ours"])
def test_checkpoint_round_trip(rag_pair, questions, tmp_path, head, direction):
    pair = rag_pair(head)
    ours_class, ref_class = CLASSES[head]
    saver, loader_class = (pair.ours, ref_class) if direction == "ours_to_reference" else (pair.ref, ours_class)
    saver.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    loaded = loader_class.from_pretrained(tmp_path).eval()
    (loaded if head == "model" else loaded.rag).retriever = pair.retriever  # the reference type-checks retriever=
    labels = answer_labels(pair.generator_tokenizer)
    kwargs = {"decoder_input_ids": labels} if head == "model" else {"labels": labels}
    with torch.no_grad():
        expected, got = saver(**questions, **kwargs), loaded(**questions, **kwargs)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.doc_scores, expected.doc_scores, atol=1e-5, rtol=1e-5)
    if head != "model":
        torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)


def test_state_dict_keys_are_the_references(rag_pair):
    for head in ("model", "token"):
        pair = rag_pair(head)
        assert set(pair.ours.state_dict()) == set(pair.ref.state_dict())
    prefixes = {key.split(".")[0] + "." + key.split(".")[1] for key in rag_pair("token").ours.state_dict()}
    assert prefixes == {"rag.question_encoder", "rag.generator"}


def test_config_json_round_trip_with_reference(rag_pair, tmp_path):
    config = rag_pair("token").ours.config
    config.save_pretrained(tmp_path / "ours")
    ref = transformers.RagConfig.from_pretrained(tmp_path / "ours")
    assert ref.n_docs == config.n_docs and ref.generator.d_model == config.generator.d_model
    ref.save_pretrained(tmp_path / "ref")
    back = RagConfig.from_pretrained(tmp_path / "ref")
    keys = ("n_docs", "retrieval_vector_size", "title_sep", "doc_sep", "max_combined_length", "label_smoothing")
    assert {k: getattr(back, k) for k in keys} == {k: getattr(config, k) for k in keys}
    assert back.question_encoder.to_dict() == config.question_encoder.to_dict()
    assert json.loads((tmp_path / "ref" / "config.json").read_text())["model_type"] == "rag"


def test_from_pretrained_question_encoder_generator(bart_tokenizer, tmp_path):
    torch.manual_seed(0)
    transformers.DPRQuestionEncoder(tiny_dpr_config()).save_pretrained(tmp_path / "qe")
    transformers.BartForConditionalGeneration(tiny_bart_config(bart_tokenizer)).save_pretrained(tmp_path / "gen")
    ours = RagTokenForGeneration.from_pretrained_question_encoder_generator(
        tmp_path / "qe", tmp_path / "gen", n_docs=4, generator_dropout=0.0
    )
    ref = transformers.RagTokenForGeneration.from_pretrained_question_encoder_generator(
        tmp_path / "qe", tmp_path / "gen", n_docs=4, generator_dropout=0.0
    )
    assert isinstance(ours.config, RagConfig) and ours.config.n_docs == 4
    assert ours.generator.config.dropout == ref.generator.config.dropout == 0.0
    ours_state, ref_state = ours.state_dict(), ref.state_dict()
    assert ours_state.keys() == ref_state.keys()
    assert all(torch.equal(ours_state[k], ref_state[k]) for k in ours_state)


def test_model_from_sub_models_without_config(rag_pair):
    pair = rag_pair("model")
    model = RagModel(question_encoder=pair.ours.question_encoder, generator=pair.ours.generator, n_docs=2)
    assert model.config.n_docs == 2 and model.question_encoder is pair.ours.question_encoder
