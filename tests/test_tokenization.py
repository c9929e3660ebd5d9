"""RagTokenizer: questions through the question-encoder tokenizer, answers through the generator's;
folders interchangeable with transformers.RagTokenizer."""

from __future__ import annotations

import pytest
import transformers

from conftest import ANSWERS, QUESTIONS, tiny_bart_config, tiny_dpr_config
from ragmodels import RagConfig, RagTokenizer


@pytest.fixture()
def tokenizer(question_tokenizer, bart_tokenizer) -> RagTokenizer:
    return RagTokenizer(question_encoder=question_tokenizer, generator=bart_tokenizer)


def test_questions_and_answers_use_their_tokenizers(tokenizer, question_tokenizer, bart_tokenizer):
    encoding = tokenizer(QUESTIONS, text_target=ANSWERS, padding=True)
    assert encoding["input_ids"] == question_tokenizer(QUESTIONS, padding=True)["input_ids"]
    assert encoding["labels"] == bart_tokenizer(ANSWERS, padding=True)["input_ids"]
    assert tokenizer.batch_decode(encoding["labels"], skip_special_tokens=True) == ANSWERS


def test_answers_only(tokenizer, bart_tokenizer):
    assert tokenizer(text_target=ANSWERS)["input_ids"] == bart_tokenizer(ANSWERS)["input_ids"]


def test_nothing_to_tokenize_raises(tokenizer):
    with pytest.raises(ValueError, match="Give the questions"):
        tokenizer()


@pytest.mark.parametrize("direction", ["ours_to_reference", "reference_to_ours"])
def test_save_load_round_trip_with_reference(tokenizer, bart_tokenizer, tmp_path, direction):
    config = RagConfig.from_question_encoder_generator_configs(tiny_dpr_config(), tiny_bart_config(bart_tokenizer))
    config.save_pretrained(tmp_path)
    if direction == "ours_to_reference":
        tokenizer.save_pretrained(tmp_path)
        loaded = transformers.RagTokenizer.from_pretrained(tmp_path)
    else:
        transformers.RagTokenizer(tokenizer.question_encoder, tokenizer.generator).save_pretrained(tmp_path)
        loaded = RagTokenizer.from_pretrained(tmp_path)
    assert (tmp_path / "question_encoder_tokenizer").is_dir() and (tmp_path / "generator_tokenizer").is_dir()
    assert loaded.question_encoder(QUESTIONS)["input_ids"] == tokenizer.question_encoder(QUESTIONS)["input_ids"]
    assert loaded.generator(ANSWERS)["input_ids"] == tokenizer.generator(ANSWERS)["input_ids"]


def test_save_keeps_other_files(tokenizer, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == b"weights"
    assert list(tmp_path.glob(".*tmp*")) == []
