"""BartForConditionalGeneration in TF, loading Hugging Face weights (``model.*``, ``final_logits_bias``).

Post-layer-norm encoder/decoder with learned positions (offset 2), the LM head tied to ``model.shared``
plus ``final_logits_bias``.
"""

from __future__ import annotations

import math

import tensorflow as tf
from transformers import BartConfig

from .bert import TFEncoderOutput
from .layers import (
    LayerNorm, Linear, ParamStore, activation, attend, causal_bias, default_scale, dropout, padding_bias, split_heads,
)
from .seq2seq import Cache, TFDecoderOutput, TFSeq2SeqLM

POSITION_OFFSET = 2  # BartLearnedPositionalEmbedding's offset


class _Attention(tf.Module):
    """BART multi-head attention (q/k/v/out_proj with biases); returns (context, probs, k, v)."""

    def __init__(self, store: ParamStore, name: str, d: int, heads: int, rate: float):
        super().__init__()
        self.q, self.k, self.v, self.out = (Linear(store, f"{name}.{n}_proj", d, d) for n in ("q", "k", "v", "out"))
        self.heads, self.rate, self.scale = heads, rate, default_scale(d // heads)

    def __call__(self, x, kv_source, bias, past_kv, training):
        q = split_heads(self.q(x), self.heads)  # (B, H, Tq, dh)
        if kv_source is None:  # cross-attention with cached keys/values
            k, v = past_kv
        else:
            k, v = split_heads(self.k(kv_source), self.heads), split_heads(self.v(kv_source), self.heads)
            if past_kv is not None:  # self-attention: append this step's keys/values
                k, v = tf.concat([past_kv[0], k], axis=2), tf.concat([past_kv[1], v], axis=2)
        ctx, probs = attend(q, k, v, bias, self.scale, self.rate, training)
        return self.out(ctx), probs, k, v


class _Layer(tf.Module):
    """An encoder layer, or with ``cross`` a decoder layer; post-LN residual blocks."""

    def __init__(self, store: ParamStore, name: str, config: BartConfig, heads: int, ffn: int, cross: bool):
        super().__init__()
        d, c = config.d_model, config
        self.self_attn = _Attention(store, f"{name}.self_attn", d, heads, c.attention_dropout)
        self.self_norm = LayerNorm(store, f"{name}.self_attn_layer_norm", d, 1e-5)
        self.cross_attn = _Attention(store, f"{name}.encoder_attn", d, heads, c.attention_dropout) if cross else None
        self.cross_norm = LayerNorm(store, f"{name}.encoder_attn_layer_norm", d, 1e-5) if cross else None
        self.fc1, self.fc2 = Linear(store, f"{name}.fc1", d, ffn), Linear(store, f"{name}.fc2", ffn, d)
        self.final_norm = LayerNorm(store, f"{name}.final_layer_norm", d, 1e-5)
        self.act, self.config = activation(c.activation_function), c

    def __call__(self, x, bias, enc=None, enc_bias=None, past=None, training=False):
        c = self.config
        h, probs, k, v = self.self_attn(x, x, bias, past[:2] if past else None, training)
        x = self.self_norm(x + dropout(h, c.dropout, training))
        cross_probs, new_past = None, (k, v)
        if self.cross_attn is not None:
            cross_kv = past[2:] if past else None
            h, cross_probs, ck, cv = self.cross_attn(x, None if cross_kv else enc, enc_bias, cross_kv, training)
            x = self.cross_norm(x + dropout(h, c.dropout, training))
            new_past = (k, v, ck, cv)
        h = self.fc2(dropout(self.act(self.fc1(x)), c.activation_dropout, training))
        return self.final_norm(x + dropout(h, c.dropout, training)), probs, cross_probs, new_past


class TFBartForConditionalGeneration(TFSeq2SeqLM):
    """BART encoder-decoder with its LM head; weights named as transformers' BartForConditionalGeneration."""

    tied_keys = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight")

    def __init__(self, config: BartConfig):
        super().__init__()
        self.config = config
        self.store = s = ParamStore(config.init_std)
        d, positions = config.d_model, config.max_position_embeddings + POSITION_OFFSET
        self.shared = s.get("model.shared.weight", (config.vocab_size, d))
        self.final_logits_bias = s.get("final_logits_bias", (1, config.vocab_size), "zeros", trainable=False)
        self.embed_scale = math.sqrt(d) if config.scale_embedding else 1.0
        self.enc_pos = s.get("model.encoder.embed_positions.weight", (positions, d))
        self.dec_pos = s.get("model.decoder.embed_positions.weight", (positions, d))
        self.enc_norm = LayerNorm(s, "model.encoder.layernorm_embedding", d, 1e-5)
        self.dec_norm = LayerNorm(s, "model.decoder.layernorm_embedding", d, 1e-5)
        c = config
        self.enc_layers = [
            _Layer(s, f"model.encoder.layers.{i}", c, c.encoder_attention_heads, c.encoder_ffn_dim, cross=False)
            for i in range(c.encoder_layers)
        ]
        self.dec_layers = [
            _Layer(s, f"model.decoder.layers.{i}", c, c.decoder_attention_heads, c.decoder_ffn_dim, cross=True)
            for i in range(c.decoder_layers)
        ]

    def _embed(self, ids: tf.Tensor, positions: tf.Tensor, start: int | tf.Tensor) -> tf.Tensor:
        length = tf.shape(ids)[1]
        pos = positions[start + POSITION_OFFSET : start + POSITION_OFFSET + length]  # (T, d)
        return tf.gather(self.shared, ids) * self.embed_scale + pos[None]

    def encode(self, input_ids, attention_mask=None, output_attentions=False, output_hidden_states=False,
               training=False) -> TFEncoderOutput:
        x = dropout(self.enc_norm(self._embed(input_ids, self.enc_pos, 0)), self.config.dropout, training)  # (B, L, d)
        bias = padding_bias(attention_mask)
        hidden, attentions = [x], []
        for layer in self.enc_layers:
            x, probs, _, _ = layer(x, bias, training=training)
            hidden.append(x)
            attentions.append(probs)
        return TFEncoderOutput(
            x, None, tuple(hidden) if output_hidden_states else None, tuple(attentions) if output_attentions else None
        )

    def decode(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask=None,
               decoder_attention_mask=None, cache: Cache | None = None, output_attentions=False,
               output_hidden_states=False, training=False) -> TFDecoderOutput:
        past_len = 0 if cache is None else tf.shape(cache[0][0])[2]
        length = tf.shape(decoder_input_ids)[1]
        x = self._embed(decoder_input_ids, self.dec_pos, past_len)
        x = dropout(self.dec_norm(x), self.config.dropout, training)  # (B, T, d)
        bias = causal_bias(length, past_len + length)  # (1, 1, T, past+T)
        if decoder_attention_mask is not None:  # (B, past+T) or (B, T) padding of the decoder inputs
            bias = bias + padding_bias(decoder_attention_mask)
        enc_bias = padding_bias(encoder_attention_mask)
        hidden, attentions, crosses, new_cache = [x], [], [], []
        for i, layer in enumerate(self.dec_layers):
            x, probs, cross, past = layer(
                x, bias, encoder_hidden_states, enc_bias, cache[i] if cache else None, training
            )
            hidden.append(x)
            attentions.append(probs)
            crosses.append(cross)
            new_cache.append(past)
        logits = tf.einsum("btd,vd->btv", x, self.shared) + self.final_logits_bias  # (B, T, V)
        keep = output_attentions
        return TFDecoderOutput(
            logits, tuple(new_cache), tuple(hidden) if output_hidden_states else None,
            tuple(attentions) if keep else None, tuple(crosses) if keep else None,
        )
