"""What every TF generator shares: its output types and ``__call__`` = encode once, then decode.

A generator implements ``encode`` and ``decode``; the decoder cache is a tuple over layers of
(self_k, self_v, cross_k, cross_v), each (batch, heads, length, head_dim), reordered by ``reorder_cache``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from .bert import TFEncoderOutput
from .model_output import TFModelOutput

Cache = tuple[tuple[tf.Tensor, ...], ...]


@dataclass
class TFDecoderOutput(TFModelOutput):
    """logits (B, T, V); cache; per-layer decoder states, self- and cross-attentions."""

    logits: tf.Tensor
    cache: Cache
    hidden_states: tuple[tf.Tensor, ...] | None = None
    attentions: tuple[tf.Tensor, ...] | None = None
    cross_attentions: tuple[tf.Tensor, ...] | None = None


@dataclass
class TFSeq2SeqLMOutput(TFModelOutput):
    """The fields of transformers' Seq2SeqLMOutput that RAG passes on."""

    logits: tf.Tensor
    cache: Cache | None = None
    encoder_last_hidden_state: tf.Tensor | None = None
    encoder_hidden_states: tuple[tf.Tensor, ...] | None = None
    encoder_attentions: tuple[tf.Tensor, ...] | None = None
    decoder_hidden_states: tuple[tf.Tensor, ...] | None = None
    decoder_attentions: tuple[tf.Tensor, ...] | None = None
    cross_attentions: tuple[tf.Tensor, ...] | None = None


def reorder_cache(cache: Cache, rows: tf.Tensor) -> Cache:
    """Select batch rows of every cached tensor: rows (N,) int indices."""
    return tuple(tuple(tf.gather(x, rows) for x in layer) for layer in cache)


def shift_tokens_right(input_ids: tf.Tensor, pad_token_id: int, start_token_id: int) -> tf.Tensor:
    """Decoder inputs from targets: (B, T) -> (B, T), start token first, last token dropped, -100 -> pad."""
    start = tf.fill((tf.shape(input_ids)[0], 1), tf.constant(start_token_id, input_ids.dtype))
    shifted = tf.concat([start, input_ids[:, :-1]], axis=1)
    return tf.where(shifted == -100, tf.constant(pad_token_id, input_ids.dtype), shifted)


class TFSeq2SeqLM(tf.Module):
    """Base of the TF generators: subclasses define ``encode``/``decode``, ``store`` and ``tied_keys``."""

    tied_keys: tuple[str, ...] = ()  # checkpoint keys that alias another weight (ignored on load, not saved)

    def encode(self, input_ids, attention_mask=None, output_attentions=False, output_hidden_states=False,
               training=False) -> TFEncoderOutput:
        raise NotImplementedError

    def decode(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask=None,
               decoder_attention_mask=None, cache=None, output_attentions=False, output_hidden_states=False,
               training=False) -> TFDecoderOutput:
        raise NotImplementedError

    def __call__(
        self,
        input_ids: tf.Tensor | None = None,
        attention_mask: tf.Tensor | None = None,
        encoder_outputs: TFEncoderOutput | tuple[Any, ...] | None = None,
        decoder_input_ids: tf.Tensor | None = None,
        decoder_attention_mask: tf.Tensor | None = None,
        cache: Cache | None = None,
        use_cache: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        training: bool = False,
    ) -> TFSeq2SeqLMOutput:
        if encoder_outputs is None:
            encoder_outputs = self.encode(input_ids, attention_mask, output_attentions, output_hidden_states, training)
        elif not isinstance(encoder_outputs, TFEncoderOutput):
            encoder_outputs = TFEncoderOutput(encoder_outputs[0])
        if decoder_input_ids is None:
            c = self.config
            decoder_input_ids = shift_tokens_right(input_ids, c.pad_token_id, c.decoder_start_token_id)
        dec = self.decode(
            decoder_input_ids, encoder_outputs.last_hidden_state, attention_mask, decoder_attention_mask, cache,
            output_attentions, output_hidden_states, training,
        )
        return TFSeq2SeqLMOutput(
            logits=dec.logits,
            cache=dec.cache if use_cache else None,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
            decoder_hidden_states=dec.hidden_states,
            decoder_attentions=dec.attentions,
            cross_attentions=dec.cross_attentions,
        )
