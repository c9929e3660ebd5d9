"""Turning a transformers encoder's output into one vector per text: the pooling choices.

Shared by the question encoder of the RAG models and the context encoder of knowledge-base builds,
so that questions and passages are embedded by the same rule.
  - "pooler": the model's own pooled output (DPR's ``pooler_output``, i.e. ``outputs[0]`` of DPR).
  - "cls":    the first token's last hidden state.
  - "mean":   the attention-masked mean of the last hidden states (sentence-transformers' MiniLM).
"""

from __future__ import annotations

import torch

POOLINGS = ("pooler", "cls", "mean")


def default_pooling(model_type: str) -> str:
    """The pooling a model of ``model_type`` is meant for: DPR encoders pool themselves, others use CLS."""
    return "pooler" if model_type == "dpr" else "cls"


def resolve_pooling(requested: str | None, model_type: str) -> str:
    """Validate a pooling name, or pick the default for ``model_type`` when ``requested`` is None."""
    if requested is None:
        return default_pooling(model_type)
    if requested not in POOLINGS:
        raise ValueError(f"Unknown pooling {requested!r}; use one of {POOLINGS}.")
    return requested


def pool(outputs, attention_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """Pool encoder ``outputs`` (a transformers ModelOutput) into (batch, hidden) vectors."""
    if pooling == "pooler":
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is None:
            raise ValueError(
                "pooling='pooler' needs an encoder with a pooled output (such as DPR); "
                "choose 'cls' or 'mean' for this encoder."
            )
        return pooled
    hidden = outputs.last_hidden_state  # (batch, seq, hidden)
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        if attention_mask is None:
            return hidden.mean(dim=1)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    raise ValueError(f"Unknown pooling {pooling!r}; use one of {POOLINGS}.")
