"""The question vector q = E_q(x): run the question encoder and pool its output (rules in encoding.py)."""

from __future__ import annotations

import torch
from torch import nn
from transformers.utils import ModelOutput

from ..encoding import pool, resolve_pooling


def encode(
    encoder: nn.Module,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    pooling: str | None,
    output_attentions: bool = False,
    output_hidden_states: bool = False,
) -> tuple[torch.Tensor, ModelOutput]:
    """Return the pooled question vectors (B, d) and the encoder's full output.

    ``pooling`` None picks the default for the encoder's model type ("pooler" for DPR, else "cls").
    """
    if input_ids is None or input_ids.dim() != 2 or input_ids.numel() == 0:
        shape = None if input_ids is None else tuple(input_ids.shape)
        raise ValueError(
            f"input_ids must be a non-empty (batch_size, sequence_length) tensor of question token ids, got "
            f"shape {shape}; tokenize the questions with the question-encoder tokenizer, or pass "
            "context_input_ids, context_attention_mask and doc_scores instead."
        )
    outputs = encoder(
        input_ids,
        attention_mask=attention_mask,
        output_attentions=output_attentions,
        output_hidden_states=output_hidden_states,
        return_dict=True,
    )
    vector = pool(outputs, attention_mask, resolve_pooling(pooling, encoder.config.model_type))  # (B, d)
    return vector, outputs
