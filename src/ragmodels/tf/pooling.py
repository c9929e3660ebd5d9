"""TF twin of ragmodels.encoding.pool: one question vector per text ("pooler", "cls" or "mean")."""

from __future__ import annotations

import tensorflow as tf

from ..encoding import POOLINGS
from .bert import TFDPRQuestionEncoderOutput, TFEncoderOutput


def pool(
    outputs: TFEncoderOutput | TFDPRQuestionEncoderOutput, attention_mask: tf.Tensor | None, pooling: str
) -> tf.Tensor:
    """Pool encoder ``outputs`` into (batch, hidden) vectors."""
    if pooling == "pooler":
        if outputs.pooler_output is None:
            raise ValueError(
                "pooling='pooler' needs an encoder with a pooled output (such as DPR); "
                "choose 'cls' or 'mean' for this encoder."
            )
        return outputs.pooler_output
    hidden = outputs.last_hidden_state  # (batch, seq, hidden)
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        if attention_mask is None:
            return tf.reduce_mean(hidden, axis=1)
        mask = tf.cast(attention_mask, hidden.dtype)[:, :, None]  # (batch, seq, 1)
        return tf.reduce_sum(hidden * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1e-9)
    raise ValueError(f"Unknown pooling {pooling!r}; use one of {POOLINGS}.")
