"""Copy-constrained decoding: every generated answer is a contiguous token span of a retrieved passage.

A small generator trained from scratch reads well but writes reliably only the names it has written in
training; constrained to copy, it only has to choose where a span starts and where it stops.
Each passage z may continue the answer y_1..y_m only as it continues somewhere in z's own context c
("title / text // question" as the generator reads it), or stop (EOS) once m >= 1:

  allowed_z(y_<=m) = { c[p + m] : c[p : p + m] == y_1..y_m } U {EOS if m >= 1}
  allowed_z()      = every token of c but EOS (and BOS)

and its next-token distribution is the generator's softmax over allowed_z alone (renormalized):
p_z(v) = exp(l_v) / sum_{u in allowed_z} exp(l_u). RAG then marginalizes as usual (RAG-Token per step
over the question's passages, RAG-Sequence per answer), so an answer is a span of a passage that
produced it and scores are likelihoods under these restricted distributions. A generator pre-trained with
the same restricted softmax (``recipes/geoqa/reader_pretraining.py``, ``copy_softmax``) fits it.
Off by default (the reference has no such option).

Shapes: P passages (contexts) of L tokens, R decoding rows, t tokens so far, V vocabulary.
"""

from __future__ import annotations

import torch
from transformers import GenerationConfig, LogitsProcessor

from .._transformers_compat import eos_token_tensor
from ..marginal import shift_left


class ContextCopy:
    """The tokens each passage allows next (see the module doc).

    context_ids / context_mask (P, L): the generator inputs. ``start``: leading decoder positions that are not
    part of the answer (the decoder start token, and a forced BOS when there is one). ``bos_token_id``: a BOS
    written as the first answer token (BART-style targets begin with it) is not part of the span either.
    """

    def __init__(self, context_ids: torch.LongTensor, context_mask: torch.Tensor, eos_token_ids: list[int],
                 start: int = 1, bos_token_id: int | None = None):
        if not eos_token_ids:
            raise ValueError("Copy-constrained decoding needs an eos_token_id to end a copied span.")
        self.sources = context_ids.masked_fill(context_mask == 0, -1)  # (P, L), -1: padding
        self.eos = torch.tensor(eos_token_ids, device=context_ids.device)
        self.start = start
        self.bos = bos_token_id

    def allowed(self, input_ids: torch.LongTensor, rows: torch.LongTensor, vocab: int) -> torch.Tensor:
        """input_ids (R, t) decoder tokens so far, rows (R,) passage of each -> (R, V) the allowed next tokens.
        Rows still inside the first ``start`` positions allow everything."""
        return self._allowed(input_ids, self.sources[rows], vocab)

    def _allowed(self, input_ids: torch.LongTensor, sources: torch.LongTensor, vocab: int) -> torch.Tensor:
        """``allowed`` with each row's context given: sources (R, L)."""
        if input_ids.shape[1] < self.start:
            return torch.ones(input_ids.shape[0], vocab, dtype=torch.bool, device=input_ids.device)
        answer = input_ids[:, self.start :]  # (R, m)
        allowed = torch.zeros(input_ids.shape[0], vocab, dtype=torch.bool, device=input_ids.device)
        after_bos = torch.zeros(answer.shape[0], dtype=torch.bool, device=answer.device)  # (R,)
        if self.bos is not None and answer.shape[1]:
            after_bos = answer[:, 0] == self.bos
        for group, span in ((~after_bos, answer), (after_bos, answer[:, 1:])):
            if group.any():
                allowed[group] = self._continuations(span[group], sources[group], vocab)
        if self.bos is not None and answer.shape[1] == 0:
            allowed[:, self.bos] = True  # the answer may open with BOS
        dead = ~allowed.any(-1)  # nothing continues (e.g. a finished row): let it stop
        allowed[dead[:, None] & torch.isin(torch.arange(vocab, device=allowed.device), self.eos)[None, :]] = True
        return allowed

    def restrict(self, logits: torch.Tensor, input_ids: torch.LongTensor, rows: torch.LongTensor) -> torch.Tensor:
        """logits (R, V) of the next token -> the same with disallowed tokens at -inf (softmax renormalizes)."""
        return logits.masked_fill(~self.allowed(input_ids, rows, logits.shape[-1]), float("-inf"))

    def allowed_teacher_forced(self, decoder_input_ids: torch.LongTensor, rows: torch.LongTensor,
                               vocab: int) -> torch.Tensor:
        """decoder_input_ids (R, T): start token + targets; -> (R, T, V) the tokens allowed at each position."""
        sources = self.sources[rows]  # (R, L), gathered once for all positions
        return torch.stack([self._allowed(decoder_input_ids[:, : t + 1], sources, vocab)
                            for t in range(decoder_input_ids.shape[1])], dim=1)

    def _continuations(self, span: torch.LongTensor, sources: torch.LongTensor, vocab: int) -> torch.Tensor:
        """span (R, m), sources (R, L) -> (R, V) the tokens that follow the span somewhere in each source."""
        rows, length = sources.shape
        m = span.shape[1]
        if m == 0:  # any context token but BOS and EOS may open the span (no empty answers)
            opening = ~torch.isin(sources, self.eos) & (sources != (-1 if self.bos is None else self.bos))
            candidates = sources.masked_fill(~opening, -1)  # (R, L)
        elif m >= length:
            candidates = self.eos[None, :].expand(rows, -1)
        else:
            windows = sources.unfold(-1, m, 1)[:, : length - m]  # (R, L-m, m): spans that have a next token
            matches = (windows == span[:, None, :]).all(-1)  # (R, L-m): the span at p equals the answer
            following = torch.where(matches, sources[:, m:], -1)  # (R, L-m): the token after it
            candidates = torch.cat([following, self.eos[None, :].expand(rows, -1)], dim=1)  # stopping is allowed
        allowed = torch.zeros((rows, vocab), dtype=torch.bool, device=sources.device)
        valid = candidates >= 0
        row_index = torch.arange(rows, device=sources.device)[:, None].expand_as(candidates)
        allowed[row_index[valid], candidates[valid]] = True
        return allowed


class ContextCopyLogitsProcessor(LogitsProcessor):
    """``ContextCopy`` for a plain seq2seq ``generate`` whose row r reads context r (one passage per row)."""

    def __init__(self, copy: ContextCopy):
        self.copy = copy

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        return self.copy.restrict(scores, input_ids, rows)


def plugin(rag_config, options: dict):
    """The copy-from-context constraint (``constraints.PLUGINS``) if the generate() option ``copy_from_context``
    (popped from ``options``) asks for it or, when it is None, the model's ``RagConfig.copy_from_context`` (off
    unless the model was trained copy-restricted, as the embedded default; a reference config has no such
    field: off). -> a (contexts, generation_config) -> ContextCopy factory, or None."""
    requested = options.pop("copy_from_context", None)
    if not (bool(requested) if requested is not None else _config_copies(rag_config)):
        return None
    return lambda contexts, generation_config: _for_decoding(contexts, generation_config, rag_config)


def _config_copies(rag_config) -> bool:
    return bool(getattr(rag_config, "copy_from_context", False))


def _for_decoding(contexts, generation_config: GenerationConfig, rag_config) -> ContextCopy:
    """The ContextCopy of ``contexts`` (a ``Contexts``) for this decoding's EOS, forced BOS and the generator's BOS."""
    eos = eos_token_tensor(generation_config)
    generator = getattr(rag_config, "generator", rag_config)
    return ContextCopy(
        contexts.input_ids, contexts.attention_mask, eos_token_ids=[] if eos is None else eos.tolist(),
        start=1 + (generation_config.forced_bos_token_id is not None),  # decoder start (+ forced BOS)
        bos_token_id=getattr(generator, "bos_token_id", None),
    )


def loss_restriction(rag_config):
    """``restrict_loss_logits`` bound to ``rag_config`` when it sets ``copy_from_context``, else None."""
    if not _config_copies(rag_config):
        return None
    return lambda *args: restrict_loss_logits(rag_config, *args)


def restrict_loss_logits(rag_config, logits: torch.Tensor, decoder_input_ids: torch.LongTensor, pad_token_id: int,
                         context_input_ids: torch.LongTensor,
                         context_attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Teacher-forced logits (B*k, T, V) with what each passage does not allow next at -inf: the loss of a
    model whose config sets ``copy_from_context`` (generation restricts the same way, with ``allowed``).

    decoder_input_ids (B, T); position t predicts decoder_input_ids[:, t + 1] (the heads' shift); the first
    decoder input is the start, not part of the answer. A question none of whose passages holds its whole
    answer as a span keeps unrestricted logits (there is nothing to copy; the loss would be infinite).
    """
    n_docs = logits.shape[0] // decoder_input_ids.shape[0]
    generator = rag_config.generator
    mask = context_attention_mask if context_attention_mask is not None else torch.ones_like(context_input_ids)
    copy = ContextCopy(context_input_ids, mask, [generator.eos_token_id],
                       bos_token_id=getattr(generator, "bos_token_id", None))
    inputs = decoder_input_ids.repeat_interleave(n_docs, dim=0)  # (B*k, T)
    rows = torch.arange(inputs.shape[0], device=inputs.device)
    allowed = copy.allowed_teacher_forced(inputs, rows, logits.shape[-1])  # (B*k, T, V)
    target = shift_left(inputs, pad_token_id)  # (B*k, T): what each position predicts, as the losses shift
    counted = target != pad_token_id  # (B*k, T)
    copyable = (allowed.gather(-1, target[..., None])[..., 0] | ~counted).all(-1)  # (B*k,): the answer is a span
    copyable = copyable.view(-1, n_docs).any(-1).repeat_interleave(n_docs)  # (B*k,): of some passage
    restricted = (copyable[:, None] & counted)[..., None]  # (B*k, T, 1): padding positions stay as they are
    return logits.masked_fill(restricted & ~allowed, float("-inf"))
