"""One mechanism for every RAG decoding: GenerationMixin's loops over a step of passage-conditioned rows.

transformers' decoding loops (greedy, sampling, beam search with all their logits processors and
stopping criteria) drive ``PassageDecodingStep``, a stand-in model whose forward is one decoder step
over groups of passages and whose "logits" are next-token log-probabilities:

  loop rows:     G groups x E copies (E = beams, or samples per group), row g*E + e
  decoder rows:  G x E x k, row (g*E + e)*k + j decodes against passage g*k + j
  RAG-Token:     group = question, k = n_docs,
                 log p(v) = logsumexp_j [ log p(z_j|x) + log p_j(v) ]     (the reference's marginal)
  RAG-Sequence:  group = (question, passage), k = 1: log p(v) = log p(v | x, z)  (per-passage beams)

The first step runs one decoder row per passage (every copy of a group starts from the same decoder
start token) and computes the cross-attention states, which are then copied to the E copies once;
later steps reorder only the self-attention cache. With constraints (``constraints``, e.g. copy from context)
each decoder row's softmax runs over the tokens its passage allows before the rows are combined
(``ragmodels.marginal.step_marginal``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import GenerationConfig, GenerationMixin, LogitsProcessorList, StoppingCriteriaList
from transformers.generation.utils import GenerationMode
from transformers.modeling_outputs import Seq2SeqLMOutput

from .. import _transformers_compat as compat
from .._transformers_compat import CACHE_KWARG, cache_kwargs
from ..marginal import step_marginal
from .constraints import PassageConstraint, restrict
from .passages import EncodedPassages, reorder_self_attention, select_rows

SUPPORTED_MODES = (
    GenerationMode.GREEDY_SEARCH,
    GenerationMode.SAMPLE,
    GenerationMode.BEAM_SEARCH,
    GenerationMode.BEAM_SAMPLE,
)


class PassageDecodingStep(GenerationMixin):
    """A decoding step over ``passages`` grouped ``group_size`` at a time, for GenerationMixin's loops.

    doc_log_probs (G, k): log p(z_j | x) of each group's passages (None when k == 1).
    constraints: what each passage allows next (``constraints``; empty: unrestricted).
    """

    main_input_name = "input_ids"

    def __init__(self, passages: EncodedPassages, group_size: int, doc_log_probs: torch.Tensor | None, config,
                 generation_config: GenerationConfig, constraints: Sequence[PassageConstraint] = ()):
        self.passages = passages
        self.constraints = list(constraints)
        self.k = group_size
        self.groups = passages.num_passages // group_size
        self.doc_log_probs = doc_log_probs
        self.config = config
        self.generation_config = generation_config
        self.device = passages.hidden.device
        self.copies = 1  # E, set by ``run``
        self._passage_rows: torch.LongTensor | None = None  # (G*E*k,) passage of each decoder row

    # --- what the loops call -------------------------------------------------------------------
    def prepare_inputs_for_generation(self, input_ids, **kwargs) -> dict[str, Any]:
        """input_ids (G*E, t): all tokens so far; with a cache only the last one is new."""
        cache = kwargs.get(CACHE_KWARG)
        return {"input_ids": input_ids if cache is None else input_ids[:, -1:], "cache": cache, "so_far": input_ids}

    def __call__(self, input_ids: torch.LongTensor, cache=None, so_far=None, **kwargs) -> Seq2SeqLMOutput:
        groups, copies, k = self.groups, self.copies, self.k
        if cache is None:
            # every copy of a group holds the same start tokens: decode one row per passage
            first = input_ids.view(groups, copies, -1)[:, 0].repeat_interleave(k, dim=0)  # (G*k, t)
            logits, cache = self.passages.decode(first, None, None)  # (G*k, t, V)
            next_logits = restrict(logits[:, -1], self.constraints, first, torch.arange(groups * k, device=self.device))
            log_probs = step_marginal(next_logits, self.doc_log_probs)  # (G, V)
            log_probs = log_probs.repeat_interleave(copies, dim=0)  # (G*E, V)
            rows = self._rows()  # (G*E*k,) passage of each decoder row
            cache = select_rows(cache, rows)  # the one copy of the passages' states per decoder row
        else:
            decoder_ids = input_ids.repeat_interleave(k, dim=0)  # (G*E*k, 1)
            logits, cache = self.passages.decode(decoder_ids, self._passage_rows, cache)  # (G*E*k, 1, V)
            tokens = None if so_far is None else so_far.repeat_interleave(k, dim=0)  # (G*E*k, t)
            next_logits = restrict(logits[:, -1], self.constraints, tokens, self._passage_rows)
            doc_lp = None if self.doc_log_probs is None else self.doc_log_probs.repeat_interleave(copies, dim=0)
            log_probs = step_marginal(next_logits, doc_lp)  # (G*E, V)
        return Seq2SeqLMOutput(logits=log_probs.unsqueeze(1), **cache_kwargs(cache))

    def _reorder_cache(self, cache, beam_idx: torch.LongTensor):
        """Loop row i continues loop row beam_idx[i] (same group): move its k self-attention rows."""
        k = self.k
        index = (beam_idx.to(self.device)[:, None] * k + torch.arange(k, device=self.device)).reshape(-1)  # (G*E*k,)
        return reorder_self_attention(cache, index)

    @contextlib.contextmanager
    def _optimize_model_for_decode(self):
        yield

    def _valid_auto_compile_criteria(self, *args, **kwargs) -> bool:
        return False

    # --- helpers -------------------------------------------------------------------------------
    def _rows(self) -> torch.LongTensor:
        groups, copies, k = self.groups, self.copies, self.k
        passage = torch.arange(groups * k, device=self.device).view(groups, 1, k).expand(groups, copies, k)
        self._passage_rows = passage.reshape(-1)  # (G*E*k,)
        return self._passage_rows


def prepare_generation(
    step: PassageDecodingStep,
    generation_config: GenerationConfig | None,
    kwargs: dict[str, Any],
    default_counts_new_tokens: bool = False,
) -> tuple[GenerationConfig, GenerationMode]:
    """The effective GenerationConfig (base: step.generation_config, updated by kwargs) and its mode.

    default_counts_new_tokens: without max_length / max_new_tokens, generate max_length *new* tokens
    (transformers' generate, which the reference's RAG-Sequence uses) rather than max_length in all.
    """
    has_default_max_length = kwargs.get("max_length") is None
    has_default_min_length = kwargs.get("min_length") is None
    generation_config, model_kwargs = compat.prepare_generation_config(step, generation_config, kwargs)
    unused = {k: v for k, v in model_kwargs.items() if v is not None}
    if unused:
        raise TypeError(f"generate() got unexpected keyword arguments: {sorted(unused)}")
    mode = generation_config.get_generation_mode()
    if mode not in SUPPORTED_MODES:
        raise ValueError(f"RAG models support greedy search, sampling and beam search, not {mode}.")
    compat.prepare_special_tokens(step, generation_config)
    # lengths count the decoder start token: max_new_tokens / min_new_tokens -> max_length / min_length;
    # the generic default (20 new tokens) only where the reference uses transformers' generate (RAG-Sequence)
    compat.prepare_generated_length(
        step,
        generation_config,
        has_default_max_length=has_default_max_length
        and (default_counts_new_tokens or generation_config.max_new_tokens is not None),
        has_default_min_length=has_default_min_length,
    )
    if generation_config.decoder_start_token_id is None:
        raise ValueError("Set decoder_start_token_id (in the RAG config or the generation config) to generate.")
    return generation_config, mode


def run(
    step: PassageDecodingStep,
    generation_config: GenerationConfig,
    mode: GenerationMode,
    copies: int,
    encoder_input_ids: torch.LongTensor,
    prefix_allowed_tokens_fn: Callable | None = None,
    logits_processor: LogitsProcessorList | None = None,
    stopping_criteria: StoppingCriteriaList | None = None,
):
    """Run the loop of ``mode`` from the decoder start token with ``copies`` rows per group (E)."""
    step.copies = copies
    start = torch.full(
        (step.groups * copies, 1), generation_config.decoder_start_token_id, dtype=torch.long, device=step.device
    )  # (G*E, 1)
    processors = compat.logits_processors(
        step,
        generation_config,
        input_ids_seq_length=start.shape[-1],
        encoder_input_ids=encoder_input_ids,
        prefix_allowed_tokens_fn=prefix_allowed_tokens_fn,
        logits_processor=logits_processor if logits_processor is not None else LogitsProcessorList(),
        device=start.device,
    )
    criteria = compat.stopping_criteria(
        step, generation_config, stopping_criteria if stopping_criteria is not None else StoppingCriteriaList()
    )
    decoding_method = compat.decoding_loop(mode)
    return decoding_method(
        step,
        start,
        logits_processor=processors,
        stopping_criteria=criteria,
        generation_config=generation_config,
        synced_gpus=False,
        use_cache=True,
    )
