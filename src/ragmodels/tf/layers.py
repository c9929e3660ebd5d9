"""Building blocks of the TF sub-models, with variables named and shaped as Hugging Face's PyTorch weights.

Every variable lives in one ``ParamStore`` under its transformers state-dict key (``encoder.layers.0.fc1.weight``),
with the PyTorch layout (a Linear weight is (out, in)), so loading and saving a checkpoint is a dict lookup.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf

NEG_INF = -1e9  # additive attention bias for masked positions


class ParamStore(tf.Module):
    """All variables of a sub-model, keyed by their Hugging Face state-dict name."""

    def __init__(self, init_std: float):
        super().__init__()
        self.init_std = init_std
        self.params: dict[str, tf.Variable] = {}

    def get(self, name: str, shape: tuple[int, ...], init: str = "normal", trainable: bool = True) -> tf.Variable:
        """Create the variable ``name`` ("normal" N(0, init_std), "zeros" or "ones"); buffers are not trainable."""
        if init == "normal":
            value = tf.random.normal(shape, stddev=self.init_std)
        else:
            value = tf.zeros(shape) if init == "zeros" else tf.ones(shape)
        var = tf.Variable(value, name=name.replace(".", "/"), trainable=trainable)
        self.params[name] = var
        return var


class Linear(tf.Module):
    """y = x W^T + b with W stored (out, in) as torch.nn.Linear."""

    def __init__(self, store: ParamStore, name: str, d_in: int, d_out: int, bias: bool = True):
        super().__init__()
        self.weight = store.get(f"{name}.weight", (d_out, d_in))
        self.bias = store.get(f"{name}.bias", (d_out,), "zeros") if bias else None

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        y = tf.einsum("...i,oi->...o", x, self.weight)
        return y if self.bias is None else y + self.bias


class LayerNorm(tf.Module):
    """torch.nn.LayerNorm over the last axis."""

    def __init__(self, store: ParamStore, name: str, dim: int, eps: float):
        super().__init__()
        self.weight = store.get(f"{name}.weight", (dim,), "ones")
        self.bias = store.get(f"{name}.bias", (dim,), "zeros")
        self.eps = eps

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + self.eps) * self.weight + self.bias


def gelu_exact(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.gelu(x, approximate=False)


ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "gelu": gelu_exact,
    "gelu_new": lambda x: tf.nn.gelu(x, approximate=True),
    "relu": tf.nn.relu,
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "tanh": tf.tanh,
}


def activation(name: str) -> Callable[[tf.Tensor], tf.Tensor]:
    if name not in ACTIVATIONS:
        raise ValueError(f"Activation {name!r} is not supported by the TF sub-models; use one of {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]


def dropout(x: tf.Tensor, rate: float, training: bool) -> tf.Tensor:
    return tf.nn.dropout(x, rate=rate) if training and rate > 0 else x


def padding_bias(mask: tf.Tensor | None) -> tf.Tensor | None:
    """(B, S) 1/0 key mask -> (B, 1, 1, S) additive bias (0 kept, NEG_INF masked)."""
    if mask is None:
        return None
    return (1.0 - tf.cast(mask, tf.float32))[:, None, None, :] * NEG_INF


def causal_bias(query_len: int, key_len: int) -> tf.Tensor:
    """(1, 1, Tq, Tk) bias letting query i (at absolute position key_len - query_len + i) see keys <= it."""
    q = tf.range(query_len)[:, None] + (key_len - query_len)
    k = tf.range(key_len)[None, :]
    return tf.cast(k > q, tf.float32)[None, None] * NEG_INF


def split_heads(x: tf.Tensor, num_heads: int) -> tf.Tensor:
    """(B, T, H*dh) -> (B, H, T, dh)."""
    batch, length = tf.shape(x)[0], tf.shape(x)[1]
    return tf.transpose(tf.reshape(x, (batch, length, num_heads, -1)), (0, 2, 1, 3))


def merge_heads(x: tf.Tensor) -> tf.Tensor:
    """(B, H, T, dh) -> (B, T, H*dh)."""
    batch, heads, length, dim = tf.unstack(tf.shape(x))
    return tf.reshape(tf.transpose(x, (0, 2, 1, 3)), (batch, length, heads * dim))


def attend(
    q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, bias: tf.Tensor | None, scale: float, rate: float, training: bool
) -> tuple[tf.Tensor, tf.Tensor]:
    """Scaled dot-product attention: q (B, H, Tq, dh), k/v (B, H, Tk, dh) -> context (B, Tq, H*dh), probs."""
    scores = tf.matmul(q, k, transpose_b=True) * scale  # (B, H, Tq, Tk)
    if bias is not None:
        scores = scores + bias
    probs = tf.nn.softmax(scores, axis=-1)
    return merge_heads(tf.matmul(dropout(probs, rate, training), v)), probs


def default_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)
