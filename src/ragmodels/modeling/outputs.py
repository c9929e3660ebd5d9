"""Output classes of the RAG models: the reference's fields, names and order, so code written for
``transformers.models.rag`` reads ours unchanged (by name, by index or as a tuple).

The decoder cache field has this transformers' name for it (``cache`` from 5.24, ``past_key_values``
before), as the reference's outputs of the same version.

Shapes: ``B`` questions, ``k`` = n_docs, ``T`` target length, ``V`` vocabulary, ``d`` vector size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import Cache
from transformers.utils import ModelOutput

from .._transformers_compat import CACHE_KWARG


_OTHER_CACHE_NAME = "past_key_values" if CACHE_KWARG == "cache" else "cache"


class _CacheAlias(ModelOutput):
    """The decoder cache under its other name too, so code written for either transformers line reads it."""

    locals()[_OTHER_CACHE_NAME] = property(lambda self: getattr(self, CACHE_KWARG))


@dataclass
class RetrievAugLMOutput(_CacheAlias):
    """Output of RagModel.

    logits: (B*k, T, V) generator scores per passage. doc_scores: (B, k) <question vector, passage>.
    cache (``past_key_values`` before transformers 5.24): the generator's decoder cache.
    retrieved_doc_embeds (B, k, d), retrieved_doc_ids (B, k), context_input_ids / context_attention_mask
    (B*k, L): only with output_retrieved=True and a retriever.
    question_encoder_last_hidden_state: (B, d) the pooled question vector (as the reference's DPR output).
    The remaining fields are the question encoder's and generator's hidden states and attentions.
    """

    logits: torch.Tensor | None = None
    doc_scores: torch.Tensor | None = None
    # the decoder cache, named as in this transformers' outputs (``cache``, or ``past_key_values`` before 5.24)
    locals()[CACHE_KWARG] = None
    __annotations__[CACHE_KWARG] = "Cache | None"
    retrieved_doc_embeds: torch.Tensor | None = None
    retrieved_doc_ids: torch.LongTensor | None = None
    context_input_ids: torch.LongTensor | None = None
    context_attention_mask: torch.LongTensor | None = None
    question_encoder_last_hidden_state: torch.Tensor | None = None
    question_enc_hidden_states: tuple[torch.Tensor, ...] | None = None
    question_enc_attentions: tuple[torch.Tensor, ...] | None = None
    generator_enc_last_hidden_state: torch.Tensor | None = None
    generator_enc_hidden_states: tuple[torch.Tensor, ...] | None = None
    generator_enc_attentions: tuple[torch.Tensor, ...] | None = None
    generator_dec_hidden_states: tuple[torch.Tensor, ...] | None = None
    generator_dec_attentions: tuple[torch.Tensor, ...] | None = None
    generator_cross_attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class RetrievAugLMMarginOutput(_CacheAlias):
    """Output of the RAG-Sequence and RAG-Token heads: RetrievAugLMOutput plus ``loss`` first.

    loss: the negative marginal log-likelihood, (B,) or a scalar with reduce_loss=True.
    logits: (B*k, T, V), or (B, T, V) marginal log-probabilities with RAG-Token's do_marginalize=True.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    doc_scores: torch.Tensor | None = None
    # the decoder cache, named as in this transformers' outputs (``cache``, or ``past_key_values`` before 5.24)
    locals()[CACHE_KWARG] = None
    __annotations__[CACHE_KWARG] = "Cache | None"
    retrieved_doc_embeds: torch.Tensor | None = None
    retrieved_doc_ids: torch.LongTensor | None = None
    context_input_ids: torch.LongTensor | None = None
    context_attention_mask: torch.LongTensor | None = None
    question_encoder_last_hidden_state: torch.Tensor | None = None
    question_enc_hidden_states: tuple[torch.Tensor, ...] | None = None
    question_enc_attentions: tuple[torch.Tensor, ...] | None = None
    generator_enc_last_hidden_state: torch.Tensor | None = None
    generator_enc_hidden_states: tuple[torch.Tensor, ...] | None = None
    generator_enc_attentions: tuple[torch.Tensor, ...] | None = None
    generator_dec_hidden_states: tuple[torch.Tensor, ...] | None = None
    generator_dec_attentions: tuple[torch.Tensor, ...] | None = None
    generator_cross_attentions: tuple[torch.Tensor, ...] | None = None
