"""Which TF class implements a sub-model config: question encoders (DPR, BERT) and generators (BART, T5)."""

from __future__ import annotations

import tensorflow as tf

from .._transformers_compat import PreTrainedConfig
from .bart import TFBartForConditionalGeneration
from .bert import TFBertModel, TFDPRQuestionEncoder
from .seq2seq import TFSeq2SeqLM

QUESTION_ENCODERS = {"dpr": TFDPRQuestionEncoder, "bert": TFBertModel}
GENERATORS: dict[str, type[TFSeq2SeqLM]] = {"bart": TFBartForConditionalGeneration}


def _build(registry: dict[str, type], config: PreTrainedConfig, role: str) -> tf.Module:
    cls = registry.get(config.model_type)
    if cls is None:
        raise ValueError(
            f"The TF RAG models have no {role} of type {config.model_type!r}; supported: {sorted(registry)}."
        )
    return cls(config)


def build_question_encoder(config: PreTrainedConfig) -> tf.Module:
    return _build(QUESTION_ENCODERS, config, "question encoder")


def build_generator(config: PreTrainedConfig) -> TFSeq2SeqLM:
    return _build(GENERATORS, config, "generator")
