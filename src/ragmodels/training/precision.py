"""Mixed precision for the recipe: the forward and the loss under ``torch.autocast``.

``precision="bf16"`` runs the matrix products of the forward (and so of the backward) in bfloat16 while
the weights, their gradients and AdamW's state stay float32 (autocast casts per operation and keeps
softmax, norms and the losses' log-probabilities in float32; ``marginal.fused`` reads
bfloat16 logits in float32). It is the usual way to train on GPUs and on CPUs with bfloat16 matrix
units; on hardware without them it is slower, not faster. "fp32" (the default) changes nothing, and is
what gives the reference's numbers.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> None:
    """ValueError unless ``precision`` is one the recipe knows."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context the training forward runs in: nothing for "fp32", bfloat16 autocast for "bf16"."""
    check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision='bf16' needs a GPU with bfloat16 support; {torch.cuda.get_device_name(device)} "
                         "has none. Train with precision='fp32'.")
    return torch.autocast(device.type, dtype=torch.bfloat16)
