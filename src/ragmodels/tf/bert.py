"""BERT and DPR question encoders in TF, loading Hugging Face BertModel / DPRQuestionEncoder weights.

Weight names: BertModel ``embeddings.*``, ``encoder.layer.{i}.*``, ``pooler.dense.*``; DPRQuestionEncoder the
same under ``question_encoder.bert_model.`` plus ``question_encoder.encode_proj`` when projection_dim > 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf
from transformers import BertConfig, DPRConfig

from .layers import LayerNorm, Linear, ParamStore, activation, attend, default_scale, dropout, padding_bias, split_heads
from .model_output import TFModelOutput


@dataclass
class TFEncoderOutput(TFModelOutput):
    """last_hidden_state (B, L, d); pooler_output (B, d) or None; per-layer hidden states / attentions.

    The fields and order of transformers' TFBaseModelOutputWithPooling (BERT, BART's encoder).
    """

    last_hidden_state: tf.Tensor
    pooler_output: tf.Tensor | None = None
    hidden_states: tuple[tf.Tensor, ...] | None = None
    attentions: tuple[tf.Tensor, ...] | None = None


@dataclass
class TFDPRQuestionEncoderOutput(TFModelOutput):
    """transformers' TFDPRQuestionEncoderOutput: pooler_output (B, d) first, so ``out[0]`` is the question
    vector; then hidden states / attentions, and last, our ``last_hidden_state`` (B, L, d) for "cls"/"mean"
    pooling (last, so the reference's fields keep their positions)."""

    pooler_output: tf.Tensor | None = None
    hidden_states: tuple[tf.Tensor, ...] | None = None
    attentions: tuple[tf.Tensor, ...] | None = None
    last_hidden_state: tf.Tensor | None = None


class _BertLayer(tf.Module):
    def __init__(self, store: ParamStore, name: str, config: BertConfig):
        super().__init__()
        d, eps = config.hidden_size, config.layer_norm_eps
        self.heads = config.num_attention_heads
        self.query, self.key, self.value = (Linear(store, f"{name}.attention.self.{n}", d, d) for n in ("query", "key", "value"))
        self.attn_out = Linear(store, f"{name}.attention.output.dense", d, d)
        self.attn_norm = LayerNorm(store, f"{name}.attention.output.LayerNorm", d, eps)
        self.intermediate = Linear(store, f"{name}.intermediate.dense", d, config.intermediate_size)
        self.output = Linear(store, f"{name}.output.dense", config.intermediate_size, d)
        self.out_norm = LayerNorm(store, f"{name}.output.LayerNorm", d, eps)
        self.act = activation(config.hidden_act)
        self.config = config

    def __call__(self, x: tf.Tensor, bias: tf.Tensor | None, training: bool) -> tuple[tf.Tensor, tf.Tensor]:
        c = self.config
        q, k, v = (split_heads(f(x), self.heads) for f in (self.query, self.key, self.value))  # (B, H, L, dh)
        ctx, probs = attend(q, k, v, bias, default_scale(c.hidden_size // self.heads), c.attention_probs_dropout_prob, training)
        x = self.attn_norm(x + dropout(self.attn_out(ctx), c.hidden_dropout_prob, training))
        h = self.output(self.act(self.intermediate(x)))
        return self.out_norm(x + dropout(h, c.hidden_dropout_prob, training)), probs


class TFBertModel(tf.Module):
    """BertModel (absolute positions): token states and, with ``add_pooling_layer``, the tanh pooler."""

    def __init__(self, config: BertConfig, store: ParamStore | None = None, prefix: str = "", add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.store = store if store is not None else ParamStore(config.initializer_range)
        s, d, p = self.store, config.hidden_size, prefix
        self.word = s.get(f"{p}embeddings.word_embeddings.weight", (config.vocab_size, d))
        self.position = s.get(f"{p}embeddings.position_embeddings.weight", (config.max_position_embeddings, d))
        self.token_type = s.get(f"{p}embeddings.token_type_embeddings.weight", (config.type_vocab_size, d))
        self.emb_norm = LayerNorm(s, f"{p}embeddings.LayerNorm", d, config.layer_norm_eps)
        self.layers = [_BertLayer(s, f"{p}encoder.layer.{i}", config) for i in range(config.num_hidden_layers)]
        self.pooler = Linear(s, f"{p}pooler.dense", d, d) if add_pooling_layer else None

    def __call__(
        self,
        input_ids: tf.Tensor,
        attention_mask: tf.Tensor | None = None,
        token_type_ids: tf.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        training: bool = False,
    ) -> TFEncoderOutput:
        length = tf.shape(input_ids)[1]
        types = tf.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        x = tf.gather(self.word, input_ids) + self.position[None, :length] + tf.gather(self.token_type, types)
        x = dropout(self.emb_norm(x), self.config.hidden_dropout_prob, training)  # (B, L, d)
        bias = padding_bias(attention_mask)
        hidden, attentions = [x], []
        for layer in self.layers:
            x, probs = layer(x, bias, training)
            hidden.append(x)
            attentions.append(probs)
        pooled = tf.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None  # (B, d)
        return TFEncoderOutput(
            x, pooled, tuple(hidden) if output_hidden_states else None, tuple(attentions) if output_attentions else None
        )


class TFDPRQuestionEncoder(tf.Module):
    """DPRQuestionEncoder: BERT without pooler; pooler_output is the [CLS] state (projected if projection_dim)."""

    def __init__(self, config: DPRConfig):
        super().__init__()
        self.config = config
        self.store = ParamStore(config.initializer_range)
        self.bert = TFBertModel(config, self.store, prefix="question_encoder.bert_model.", add_pooling_layer=False)
        dim = config.projection_dim
        self.proj = Linear(self.store, "question_encoder.encode_proj", config.hidden_size, dim) if dim > 0 else None

    def __call__(self, input_ids: tf.Tensor, attention_mask: tf.Tensor | None = None,
                 **kwargs) -> TFDPRQuestionEncoderOutput:
        if attention_mask is None:  # as transformers' DPR: pad tokens are masked
            attention_mask = tf.cast(tf.not_equal(input_ids, self.config.pad_token_id), tf.int32)
        out = self.bert(input_ids, attention_mask, **kwargs)
        cls = out.last_hidden_state[:, 0]  # (B, d)
        return TFDPRQuestionEncoderOutput(
            pooler_output=self.proj(cls) if self.proj is not None else cls,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            last_hidden_state=out.last_hidden_state,
        )
