"""RAG-Sequence generation: beam search per passage, then candidates ranked by marginal likelihood.

  log p(y|x) = logsumexp_i [ log p(z_i|x) + log p(y|x,z_i) ]
"thorough": every distinct candidate is scored under every passage (one batched, teacher-forced,
decoder-only pass reusing the passages' encoder and cross-attention states).
"fast" (Lewis et al. 2020, §2.5): p(y|x,z_i) is taken as 0 where beam search from z_i did not
produce y, so log p(y|x,z_i) is only needed for the producing passages and comes from the beam
search itself (its per-step log-probabilities): no extra forward pass.

Shapes: B questions, k passages each (P = B*k), R candidates per passage (num_beams),
C = k*R candidates per question, T candidate length (decoder start token included), V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList
from transformers.generation.utils import GenerationMode
from transformers.utils import ModelOutput

from .._transformers_compat import eos_token_tensor
from ..marginal import counted_targets, doc_log_prior, sequence_marginal
from . import constraints
from .contexts import resolve_contexts
from .loop import PassageDecodingStep, prepare_generation, run
from .passages import EncodedPassages, sequence_log_likelihood

DECODINGS = ("thorough", "fast")


@dataclass
class RagSequenceGenerateOutput(ModelOutput):
    """sequences (B*n, T); sequences_scores (B*n,) log p(y|x) as ranked ("fast": the restricted marginal)."""

    sequences: torch.LongTensor | None = None
    sequences_scores: torch.Tensor | None = None


@torch.no_grad()
def rag_sequence_generate(
    model,
    input_ids: torch.LongTensor | None = None,
    attention_mask: torch.Tensor | None = None,
    context_input_ids: torch.LongTensor | None = None,
    context_attention_mask: torch.Tensor | None = None,
    doc_scores: torch.Tensor | None = None,
    do_deduplication: bool | None = None,
    num_return_sequences: int | None = None,
    num_beams: int | None = None,
    n_docs: int | None = None,
    decoding: Literal["thorough", "fast"] = "thorough",
    generation_config: GenerationConfig | None = None,
    prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]] | None = None,
    logits_processor: LogitsProcessorList | None = None,
    stopping_criteria: StoppingCriteriaList | None = None,
    return_dict_in_generate: bool = False,
    **kwargs,
):
    """``RagSequenceForGeneration.generate``: the reference's arguments plus ``decoding`` and the options of
    the constraint plug-ins (``constraints.PLUGINS``; they restrict each passage's beams and every candidate's
    likelihood under it; default: as the model's config).

    Per-passage decoding takes the generator's generation config updated by ``generation_config``
    and ``kwargs`` (max_length, min_length, no_repeat_ngram_size, do_sample, ...), as the reference.
    ``prefix_allowed_tokens_fn(batch_id, ids)`` receives the question index as batch_id.
    Returns (B * num_return_sequences, T) ids, or ``RagSequenceGenerateOutput`` with the scores.
    """
    if decoding not in DECODINGS:
        raise ValueError(f"decoding={decoding!r}; use one of {DECODINGS}.")
    config = model.config
    do_deduplication = do_deduplication if do_deduplication is not None else config.do_deduplication
    num_return_sequences = num_return_sequences if num_return_sequences is not None else getattr(config, "num_return_sequences", 1)
    num_beams = num_beams if num_beams is not None else getattr(config, "num_beams", 1) or 1
    contexts = resolve_contexts(
        model, input_ids, attention_mask, context_input_ids, context_attention_mask, doc_scores, n_docs
    )
    k, batch = contexts.n_docs, contexts.batch_size
    generator = model.generator
    passages = EncodedPassages(generator, contexts.input_ids, contexts.attention_mask)  # (P, L, d)

    # 1. candidates: R per passage; each passage is its own group (k = 1)
    step = PassageDecodingStep(passages, 1, None, generator.config, generator.generation_config)
    fast = decoding == "fast"
    chosen = constraints.choose(config, kwargs)  # pops the plug-ins' own options from kwargs
    kwargs.update(num_beams=num_beams, num_return_sequences=num_beams, return_dict_in_generate=fast, output_logits=fast)
    gen_config, mode = prepare_generation(step, generation_config, kwargs, default_counts_new_tokens=True)
    beams = mode in (GenerationMode.BEAM_SEARCH, GenerationMode.BEAM_SAMPLE)
    if prefix_allowed_tokens_fn is not None:  # the loop's batch ids are passages: hand the question index
        user_fn = prefix_allowed_tokens_fn
        prefix_allowed_tokens_fn = lambda passage, ids: user_fn(passage // k, ids)  # noqa: E731
    step.constraints = constraints.build(chosen, contexts, gen_config)
    out = run(step, gen_config, mode, num_beams if beams else 1, contexts.input_ids, prefix_allowed_tokens_fn, logits_processor, stopping_criteria)
    sequences = out.sequences if fast else out  # (P*R, T)
    per_passage = sequences.shape[0] // passages.num_passages  # R
    cands = sequences.view(batch, k * per_passage, -1)  # (B, C, T)
    num_cands = cands.shape[1]

    eos = eos_token_tensor(gen_config)
    bos_id = config.bos_token_id if config.bos_token_id is not None else getattr(config.generator, "bos_token_id", None)
    target_mask = counted_targets(cands[:, :, 1:], eos, bos_id)  # (B, C, T-1) which target tokens count
    same = (cands[:, :, None, :] == cands[:, None, :, :]).all(-1)  # (B, C, C) candidate c equals c'
    first = same.int().argmax(-1)  # (B, C) first index of c's value
    is_rep = first == torch.arange(num_cands, device=cands.device)  # (B, C) first occurrence

    # 2. log p(y_c | x, z_j) for every candidate c and passage j: (B, C, k), -inf where unknown ("fast")
    if fast:
        own = generated_log_likelihood(out, target_mask.view(-1, target_mask.shape[-1]))  # (P*R,)
        own = own.view(batch, 1, k, per_passage)  # passage j's r-th candidate is c' = j*R + r
        produced = same.view(batch, num_cands, k, per_passage)  # (B, C, k, R): c' (from passage j) equals c
        ll = torch.where(produced, own, float("-inf")).amax(-1)  # (B, C, k)
    else:
        b_idx, c_idx = is_rep.nonzero(as_tuple=True)  # the N distinct candidates
        passage_rows = (b_idx[:, None] * k + torch.arange(k, device=cands.device)).reshape(-1)  # (N*k,)
        ids = cands[b_idx, c_idx].repeat_interleave(k, dim=0)  # (N*k, T)
        mask = target_mask[b_idx, c_idx].repeat_interleave(k, dim=0)  # (N*k, T-1)
        passages.ensure_cross_attention(gen_config.decoder_start_token_id)
        scores = sequence_log_likelihood(passages, ids, passage_rows, mask, constraints=step.constraints)
        scores = scores.view(-1, k)  # (N, k)
        ll = cands.new_zeros((batch, num_cands, k), dtype=scores.dtype)
        ll[b_idx, c_idx] = scores
        ll = ll.gather(1, first[:, :, None].expand(-1, -1, k))  # duplicates share their first copy's scores

    # 3. marginalize over passages, rank, pick
    marginal = sequence_marginal(ll, doc_log_prior(contexts.doc_scores.float()))  # (B, C)
    if do_deduplication:
        marginal = marginal.masked_fill(~is_rep, float("-inf"))
    n_out = min(num_return_sequences, num_cands)
    top_scores, top = marginal.topk(n_out, dim=1)  # (B, n)
    chosen = cands.gather(1, top[:, :, None].expand(-1, -1, cands.shape[-1]))  # (B, n, T)
    # fewer distinct candidates than asked for: those slots hold padding
    pad = config.generator.pad_token_id
    chosen = chosen.masked_fill(torch.isinf(top_scores)[:, :, None], pad if pad is not None else 0)
    chosen = chosen.reshape(batch * n_out, -1)
    if return_dict_in_generate:
        return RagSequenceGenerateOutput(sequences=chosen, sequences_scores=top_scores.reshape(-1))
    return chosen


def generated_log_likelihood(out, target_mask: torch.Tensor) -> torch.Tensor:
    """sum_t log p(y_t | x, z, y_<t) of each returned sequence, from the loop's per-step log-probs.

    out.logits: per step (rows, V) log-probs of the running rows (the step returns log-probs);
    out.beam_indices (N, steps) which running row produced each token (None: row n itself).
    target_mask (N, T-1). -> (N,)
    """
    sequences = out.sequences  # (N, T)
    steps = min(len(out.logits), sequences.shape[1] - 1)
    total = torch.zeros(sequences.shape[0], dtype=torch.float32, device=sequences.device)
    rows = torch.arange(sequences.shape[0], device=sequences.device)
    for s in range(steps):
        src = rows if out.get("beam_indices") is None else out.beam_indices[:, s].clamp(min=0).long()  # (N,)
        token_lp = out.logits[s][src, sequences[:, s + 1]]  # (N,)
        total += token_lp.masked_fill(~target_mask[:, s], 0.0)
    return total
