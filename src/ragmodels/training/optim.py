"""Which parameters train, AdamW over them, the linear warm-up / linear decay schedule, and how the C
allocator treats the memory a CPU step frees."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

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
    glibc = _glibc()
    if glibc is None:
        return False
    glibc.malloc_trim(0)
    return True


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
KEPT_BLOCK_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Let the C allocator keep what a training step frees for the next step (glibc's ``mallopt``), process-wide.

    Every step allocates and frees the same tensors. By default glibc serves blocks above its mmap
    threshold (at most 32 MB) straight from the system and unmaps them when freed, and trims the heap's
    free top beyond twice that; so each step page-faults its large activations and gradients in again,
    zero-filled by the kernel: on BART-base + BERT-base (benchmarks/training.py, one thread) ~650k page
    faults and 1.4-2.4 s of system time per 15 s step for transformers' RAG, ~330k for ours. With blocks up
    to ``KEPT_BLOCK_BYTES`` taken from the heap and no automatic trim, later steps reuse the same pages
    (a few hundred faults per step) at the same peak; ``release_free_memory`` still trims on demand.
    Returns False where there is no ``mallopt`` (not Linux, or not glibc).
    """
    glibc = _glibc()
    if glibc is None:
        return False
    return bool(glibc.mallopt(_M_MMAP_THRESHOLD, KEPT_BLOCK_BYTES)) and bool(
        glibc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


_GLIBC: ctypes.CDLL | None | bool = False  # False: not looked up yet


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has malloc_trim and mallopt), else None."""
    global _GLIBC
    if _GLIBC is False:
        _GLIBC = None
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
                libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                _GLIBC = libc
            except (OSError, AttributeError):  # musl and others have neither
                _GLIBC = None
    return _GLIBC


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
