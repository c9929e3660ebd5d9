"""RagConfig: same config.json as transformers.RagConfig, plus validated question_encoder_pooling."""

from __future__ import annotations

import pytest
import transformers

from conftest import tiny_bart_config, tiny_bert_config, tiny_dpr_config
from ragmodels import RagConfig


@pytest.fixture()
def config(bart_tokenizer) -> RagConfig:
    return RagConfig.from_question_encoder_generator_configs(
        tiny_dpr_config(), tiny_bart_config(bart_tokenizer), n_docs=4, label_smoothing=0.1, retrieval_vector_size=32
    )


def test_defaults_match_reference():
    ours, ref = RagConfig(), transformers.RagConfig()
    fields = ("n_docs", "max_combined_length", "retrieval_vector_size", "title_sep", "doc_sep", "index_name",
              "dataset", "retrieval_batch_size", "label_smoothing", "do_deduplication", "exclude_bos_score",
              "do_marginalize", "reduce_loss", "use_cache", "is_encoder_decoder")
    assert {f: getattr(ours, f) for f in fields} == {f: getattr(ref, f) for f in fields}
    assert ours.question_encoder.model_type == ref.question_encoder.model_type == "dpr"
    assert ours.generator.model_type == ref.generator.model_type == "bart"


@pytest.mark.parametrize("direction", ["ours_to_reference", "reference_to_ours"])
def test_json_round_trip_with_reference(config, tmp_path, direction):
    source = config if direction == "ours_to_reference" else transformers.RagConfig(**config.to_dict())
    target_class = transformers.RagConfig if direction == "ours_to_reference" else RagConfig
    source.save_pretrained(tmp_path)
    loaded = target_class.from_pretrained(tmp_path)
    assert (loaded.n_docs, loaded.label_smoothing, loaded.retrieval_vector_size) == (4, 0.1, 32)
    assert loaded.generator.to_dict() == source.generator.to_dict()
    assert loaded.question_encoder.to_dict() == source.question_encoder.to_dict()


def test_pooling_survives_round_trip(tmp_path):
    config = RagConfig.from_question_encoder_generator_configs(
        tiny_bert_config(), transformers.BartConfig(), question_encoder_pooling="mean"
    )
    config.save_pretrained(tmp_path)
    loaded = RagConfig.from_pretrained(tmp_path)
    assert loaded.question_encoder_pooling == "mean" and loaded.question_encoder.model_type == "bert"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"question_encoder_pooling": "max"}, "question_encoder_pooling='max' is not supported"),
        ({"n_docs": 0}, "n_docs must be a positive"),
        ({"question_encoder": {"model_type": "no-such-model"}}, "Unknown sub-model type 'no-such-model'"),
    ],
)
def test_invalid_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RagConfig(**kwargs)
