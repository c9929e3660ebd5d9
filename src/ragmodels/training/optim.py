"""Which parameters train, AdamW over them, and the linear warm-up / linear decay schedule."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR


def freeze(model: torch.nn.Module, question_encoder: bool, generator: bool) -> None:
    """Stop gradients to the question encoder and/or the generator of a RAG model."""
    for part, frozen in (("question_encoder", question_encoder), ("generator", generator)):
        if frozen:
            getattr(model, part).requires_grad_(False)


def build_optimizer(
    model: torch.nn.Module, learning_rate: float, weight_decay: float, eps: float = 1e-8, fused: bool | None = None
) -> torch.optim.AdamW:
    """AdamW over trainable parameters; biases and norm weights (1-d tensors) get no weight decay.

    ``fused`` None uses torch's fused AdamW kernel where it supports every parameter (floating point on
    CPU or GPU): one pass per tensor, no full-size temporaries (the for-each implementation allocates a
    copy of all parameters for sqrt(v)), and the same update up to float rounding.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters.")
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    if fused is None:
        fused = _fused_supported(params)
    return torch.optim.AdamW(groups, lr=learning_rate, eps=eps, fused=fused or None)


def _fused_supported(params: list[torch.nn.Parameter]) -> bool:
    return all(
        p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float16, torch.bfloat16)
        and not p.is_sparse for p in params
    )


def release_free_memory() -> bool:
    """Give the memory that the C allocator holds but no tensor uses back to the system (glibc's ``malloc_trim``).

    On a CPU, tensors smaller than glibc's mmap threshold live in its heap; once freed (activations during
    the backward, say) that memory stays resident, and new tensors of other sizes (optimizer state) do
    not always fit in the holes, so the resident set grows past what is in use. Trimming returns the free
    pages. Returns False where there is no ``malloc_trim`` (not Linux, or not glibc).
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


_TRIM: Callable[[int], int] | None | bool = False  # False: not looked up yet


def _malloc_trim() -> Callable[[int], int] | None:
    global _TRIM
    if _TRIM is False:
        _TRIM = None
        if sys.platform.startswith("linux"):
            try:
                _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
                _TRIM.argtypes, _TRIM.restype = [ctypes.c_size_t], ctypes.c_int
            except (OSError, AttributeError):  # musl and others have no malloc_trim
                _TRIM = None
    return _TRIM


class LinearWarmupDecay:
    """LR factor: 0 -> 1 over ``warmup_steps``, then linearly to 0 at ``total_steps`` (a picklable lambda)."""

    def __init__(self, warmup_steps: int, total_steps: int):
        self.warmup_steps = warmup_steps
        self.total_steps = max(total_steps, 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        remaining = self.total_steps - step
        return max(0.0, remaining / max(1, self.total_steps - self.warmup_steps))


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    return LambdaLR(optimizer, LinearWarmupDecay(warmup_steps, total_steps))
