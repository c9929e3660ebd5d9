"""TF twins of RetrievAugLMOutput / RetrievAugLMMarginOutput: same fields, same order, TF tensors.

Shapes: ``B`` questions, ``k`` = n_docs, ``T`` target length, ``V`` vocabulary, ``d`` vector size.
Fields read by name (``out.loss``), by key (``out["loss"]``) or, skipping Nones, by index / ``to_tuple()``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import tensorflow as tf

from .seq2seq import Cache


class _Output:
    """ModelOutput-like access to a dataclass of optional fields."""

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(v for v in (getattr(self, f.name) for f in fields(self)) if v is not None)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key: str | int) -> Any:
        return getattr(self, key) if isinstance(key, str) else self.to_tuple()[key]


@dataclass
class TFRetrievAugLMOutput(_Output):
    """Output of TFRagModel (see ragmodels.modeling.outputs.RetrievAugLMOutput).

    logits (B*k, T, V); doc_scores (B, k); cache: the generator's decoder cache; retrieved_doc_embeds (B, k, d),
    retrieved_doc_ids (B, k), context_input_ids / context_attention_mask (B*k, L) with output_retrieved=True;
    question_encoder_last_hidden_state (B, d) the pooled question vector.
    """

    logits: tf.Tensor | None = None
    doc_scores: tf.Tensor | None = None
    cache: Cache | None = None
    retrieved_doc_embeds: tf.Tensor | None = None
    retrieved_doc_ids: tf.Tensor | None = None
    context_input_ids: tf.Tensor | None = None
    context_attention_mask: tf.Tensor | None = None
    question_encoder_last_hidden_state: tf.Tensor | None = None
    question_enc_hidden_states: tuple[tf.Tensor, ...] | None = None
    question_enc_attentions: tuple[tf.Tensor, ...] | None = None
    generator_enc_last_hidden_state: tf.Tensor | None = None
    generator_enc_hidden_states: tuple[tf.Tensor, ...] | None = None
    generator_enc_attentions: tuple[tf.Tensor, ...] | None = None
    generator_dec_hidden_states: tuple[tf.Tensor, ...] | None = None
    generator_dec_attentions: tuple[tf.Tensor, ...] | None = None
    generator_cross_attentions: tuple[tf.Tensor, ...] | None = None


@dataclass
class TFRetrievAugLMMarginOutput(_Output):
    """Output of the TF heads: TFRetrievAugLMOutput plus ``loss`` first.

    loss: (B,) or a scalar with reduce_loss=True; logits (B*k, T, V), or (B, T, V) with do_marginalize=True.
    """

    loss: tf.Tensor | None = None
    logits: tf.Tensor | None = None
    doc_scores: tf.Tensor | None = None
    cache: Cache | None = None
    retrieved_doc_embeds: tf.Tensor | None = None
    retrieved_doc_ids: tf.Tensor | None = None
    context_input_ids: tf.Tensor | None = None
    context_attention_mask: tf.Tensor | None = None
    question_encoder_last_hidden_state: tf.Tensor | None = None
    question_enc_hidden_states: tuple[tf.Tensor, ...] | None = None
    question_enc_attentions: tuple[tf.Tensor, ...] | None = None
    generator_enc_last_hidden_state: tf.Tensor | None = None
    generator_enc_hidden_states: tuple[tf.Tensor, ...] | None = None
    generator_enc_attentions: tuple[tf.Tensor, ...] | None = None
    generator_dec_hidden_states: tuple[tf.Tensor, ...] | None = None
    generator_dec_attentions: tuple[tf.Tensor, ...] | None = None
    generator_cross_attentions: tuple[tf.Tensor, ...] | None = None
