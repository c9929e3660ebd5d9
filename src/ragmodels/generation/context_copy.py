"""Copy-constrained decoding: every generated answer is a contiguous token span of a retrieved context.

A small generator trained from scratch reads well but writes reliably only the names it has written in
training; constrained to copy, the first token picks the span and the rest follows the passage.
At each step a row may continue its generated tokens y_1..y_m only as they continue somewhere in its
group's contexts (the passages it is conditioned on: the question's k passages for RAG-Token, the one
passage for RAG-Sequence's per-passage beams), or stop (EOS) once m >= 1:

  allowed(y_<=m) = { c[p + m] : c a context of the group, c[p : p + m] == y_1..y_m } U {EOS if m >= 1}
  allowed()      = every token of the contexts but EOS (and BOS)
A row with nothing allowed (a finished row, padded after its EOS) may only write EOS.

Off by default (the reference has no such option); on, it is one more logits processor, so greedy,
sampling and beam search all keep their meaning over the allowed tokens.
"""

from __future__ import annotations

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList


class ContextCopyLogitsProcessor(LogitsProcessor):
    """Mask next-token scores to the tokens that extend a copy from the row's contexts.

    context_ids / context_mask (G*k, L): the generator inputs, group g's contexts in rows g*k .. g*k+k-1;
    the loop has ``copies`` rows per group (row r belongs to group r // copies). ``start``: generated
    positions not part of the answer (the decoder start token, and a forced BOS when there is one).
    ``bos_token_id``: a BOS written as the first answer token (BART-style targets begin with it) is not part
    of the span.
    """

    def __init__(self, context_ids: torch.LongTensor, context_mask: torch.Tensor, group_size: int, copies: int,
                 eos_token_ids: list[int], start: int = 1, bos_token_id: int | None = None):
        if not eos_token_ids:
            raise ValueError("Copy-constrained decoding needs an eos_token_id to end a copied span.")
        groups = context_ids.shape[0] // group_size
        sources = context_ids.masked_fill(context_mask == 0, -1).view(groups, group_size, -1)  # (G, k, L), -1: pad
        self.sources = sources.repeat_interleave(copies, dim=0)  # (R, k, L) the contexts of each loop row
        self.eos = torch.tensor(eos_token_ids, device=context_ids.device)
        self.start = start
        self.bos = bos_token_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """input_ids (R, t) tokens so far; scores (R, V) -> scores with disallowed tokens at -inf."""
        if input_ids.shape[1] < self.start:
            return scores
        answer = input_ids[:, self.start :]  # (R, m) answer tokens generated so far
        allowed = torch.zeros_like(scores, dtype=torch.bool)  # (R, V)
        after_bos = torch.zeros(answer.shape[0], dtype=torch.bool, device=answer.device)  # (R,)
        if self.bos is not None and answer.shape[1]:
            after_bos = answer[:, 0] == self.bos
        for rows, span in ((~after_bos, answer), (after_bos, answer[:, 1:])):
            if rows.any():
                allowed[rows] = self._continuations(span[rows], self.sources[rows], scores.shape[1])
        if self.bos is not None and answer.shape[1] == 0:
            allowed[:, self.bos] = True  # the answer may open with BOS
        dead = ~allowed.any(-1)  # nothing continues (e.g. a finished row): let it stop
        allowed[dead[:, None] & torch.isin(torch.arange(scores.shape[1], device=scores.device), self.eos)[None, :]] = True
        return scores.masked_fill(~allowed, float("-inf"))

    def _continuations(self, span: torch.LongTensor, sources: torch.LongTensor, vocab: int) -> torch.Tensor:
        """span (R, m), sources (R, k, L) -> (R, V) the tokens that follow the span somewhere in the sources."""
        rows, k, length = sources.shape
        m = span.shape[1]
        if m == 0:  # any context token but BOS and EOS may open the span (no empty answers)
            candidates = sources.reshape(rows, -1)  # (R, k*L)
            opening = ~torch.isin(candidates, self.eos) & (candidates != (-1 if self.bos is None else self.bos))
            candidates = candidates.masked_fill(~opening, -1)
        elif m >= length:
            candidates = self.eos[None, :].expand(rows, -1)
        else:
            windows = sources.unfold(-1, m, 1)[:, :, : length - m]  # (R, k, L-m, m): spans with a next token
            matches = (windows == span[:, None, None, :]).all(-1)  # (R, k, L-m): span at p equals the answer
            following = sources[:, :, m:]  # (R, k, L-m): the token after the span at p
            candidates = torch.where(matches, following, -1).reshape(rows, -1)  # (R, k*(L-m))
            eos = self.eos[None, :].expand(rows, -1)  # (R, n_eos): stopping is allowed once a token is out
            candidates = torch.cat([candidates, eos], dim=1)
        allowed = torch.zeros((rows, vocab), dtype=torch.bool, device=sources.device)
        valid = candidates >= 0
        row_index = torch.arange(rows, device=sources.device)[:, None].expand_as(candidates)
        allowed[row_index[valid], candidates[valid]] = True
        return allowed


def with_context_copy(processors: LogitsProcessorList | None, contexts, group_size: int, copies: int,
                      generation_config: GenerationConfig, rag_config) -> LogitsProcessorList:
    """``processors`` plus a ContextCopyLogitsProcessor over ``contexts`` (a ``Contexts``), applied last."""
    eos = generation_config._eos_token_tensor
    start = 1 + (generation_config.forced_bos_token_id is not None)  # decoder start (+ forced BOS)
    generator = getattr(rag_config, "generator", rag_config)
    copy = ContextCopyLogitsProcessor(
        contexts.input_ids, contexts.attention_mask, group_size, copies,
        eos_token_ids=[] if eos is None else eos.tolist(), start=start,
        bos_token_id=getattr(generator, "bos_token_id", None),
    )
    return LogitsProcessorList([*(processors or []), copy])
