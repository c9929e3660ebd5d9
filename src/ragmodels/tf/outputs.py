"""TF twins of RetrievAugLMOutput / RetrievAugLMMarginOutput: same fields, same order, TF tensors.

Shapes: ``B`` questions, ``k`` = n_docs, ``T`` target length, ``V`` vocabulary, ``d`` vector size.
Fields read as transformers' TF outputs (``TFModelOutput``): by name (``out.loss``), by key
(``out["loss"]``) or, skipping Nones, by index / ``to_tuple()``.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from .model_output import TFModelOutput
from .seq2seq import Cache


class _CacheAlias:
    """``past_key_values``: the name transformers' TF RAG outputs give the decoder cache."""

    @property
    def past_key_values(self) -> Cache | None:
        return self.cache


@dataclass
class TFRetrievAugLMOutput(_CacheAlias, TFModelOutput):
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
class TFRetrievAugLMMarginOutput(_CacheAlias, TFModelOutput):
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
