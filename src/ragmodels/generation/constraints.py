"""Decoding constraints as plug-ins: which next tokens each passage allows, applied before its softmax.

A ``PassageConstraint`` restricts one passage's next-token distribution (it renormalizes over what is
allowed) before RAG marginalizes over passages; the decoding step (``loop``), candidate scoring
(``passages.sequence_log_likelihood``) and the heads' loss apply whatever list they are given and know no
constraint by name. ``choose`` is the one place that picks them, from the model's config and the
generate() options each plug-in reads (``PLUGINS``; today copy-from-context, ``context_copy``).
Constraints on the marginal itself (prefix_allowed_tokens_fn, bad_words_ids, ...) stay transformers'
logits processors over the decoding rows, as in the reference.

Shapes: R decoding rows, t tokens so far (T teacher-forced), V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from transformers import GenerationConfig

from . import context_copy


class PassageConstraint(Protocol):
    """The tokens a passage allows next."""

    def allowed(self, input_ids: torch.LongTensor, rows: torch.LongTensor, vocab: int) -> torch.Tensor:
        """input_ids (R, t) decoder tokens so far, rows (R,) passage of each -> (R, V) bool."""

    def allowed_teacher_forced(self, decoder_input_ids: torch.LongTensor, rows: torch.LongTensor,
                               vocab: int) -> torch.Tensor:
        """decoder_input_ids (R, T) start token + targets -> (R, T, V) bool, what each position allows."""


ConstraintFactory = Callable[[Any, GenerationConfig], PassageConstraint]
"""(contexts, generation config) -> a constraint over those contexts' passages."""

PLUGINS = (context_copy,)
"""Modules with ``plugin(rag_config, generate options) -> ConstraintFactory | None`` (it pops the options it
reads) and ``loss_restriction(rag_config) -> (logits, decoder_input_ids, pad_token_id, context_input_ids,
context_attention_mask) -> logits | None`` (the same allowed sets for the heads' teacher-forced loss)."""


def choose(rag_config, options: dict[str, Any]) -> list[ConstraintFactory]:
    """The constraints this generate() call asks for (popping their options from ``options``) or the config sets."""
    chosen = [module.plugin(rag_config, options) for module in PLUGINS]
    return [factory for factory in chosen if factory is not None]


def build(factories: Sequence[ConstraintFactory], contexts,
          generation_config: GenerationConfig) -> list[PassageConstraint]:
    """The chosen constraints over ``contexts`` (a ``Contexts``), for this decoding's generation config."""
    return [factory(contexts, generation_config) for factory in factories]


def restrict(logits: torch.Tensor, constraints: Sequence[PassageConstraint], input_ids: torch.LongTensor | None,
             rows: torch.LongTensor) -> torch.Tensor:
    """logits (R, V) with what any constraint disallows at -inf (float32); unchanged without constraints."""
    if not constraints:
        return logits
    if input_ids is None:
        raise RuntimeError("Constrained decoding needs the tokens so far (prepare_inputs_for_generation).")
    allowed = _all(c.allowed(input_ids, rows, logits.shape[-1]) for c in constraints)  # (R, V)
    return logits.float().masked_fill(~allowed, float("-inf"))


def restrict_teacher_forced(logits: torch.Tensor, constraints: Sequence[PassageConstraint],
                            decoder_input_ids: torch.LongTensor, rows: torch.LongTensor) -> torch.Tensor:
    """logits (R, T, V) for decoder inputs (R, T) with what any constraint disallows at -inf."""
    if not constraints:
        return logits
    allowed = _all(c.allowed_teacher_forced(decoder_input_ids, rows, logits.shape[-1]) for c in constraints)
    return logits.masked_fill(~allowed, float("-inf"))


def loss_restriction(rag_config) -> Callable[..., torch.Tensor] | None:
    """The heads' loss restriction of the plug-ins the config turns on (applied in turn), or None."""
    chosen = [r for r in (module.loss_restriction(rag_config) for module in PLUGINS) if r is not None]
    if not chosen:
        return None

    def restrict(logits: torch.Tensor, *args) -> torch.Tensor:
        for one in chosen:
            logits = one(logits, *args)
        return logits

    return restrict


def _all(masks) -> torch.Tensor:
    masks = iter(masks)
    allowed = next(masks)
    for mask in masks:
        allowed = allowed & mask
    return allowed
