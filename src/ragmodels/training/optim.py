"""Which parameters train, AdamW over them, and the linear warm-up / linear decay schedule."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR


def freeze(model: torch.nn.Module, question_encoder: bool, generator: bool) -> None:
    """Stop gradients to the question encoder and/or the generator of a RAG model."""
    for part, frozen in (("question_encoder", question_encoder), ("generator", generator)):
        if frozen:
            getattr(model, part).requires_grad_(False)


def build_optimizer(
    model: torch.nn.Module, learning_rate: float, weight_decay: float, eps: float = 1e-8
) -> torch.optim.AdamW:
    """AdamW over trainable parameters; biases and norm weights (1-d tensors) get no weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters.")
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=learning_rate, eps=eps)


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
