"""RAG-Token generation: beam search / greedy / sampling over per-step passage-marginalized log-probs.

log p(y_t | x, y_<t) = logsumexp_i [ log softmax(doc_scores)_i + log p(y_t | x, z_i, y_<t) ]
The encoder runs once per (question, passage); see ``loop`` for how the decoder states are shared.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList
from transformers.generation.utils import GenerationMode

from ..marginal import doc_log_prior
from . import constraints
from .contexts import resolve_contexts
from .loop import PassageDecodingStep, prepare_generation, run
from .passages import EncodedPassages


def _base_generation_config(model) -> GenerationConfig:
    config = getattr(model, "generation_config", None)
    return config if config is not None else GenerationConfig.from_model_config(model.config)


@torch.no_grad()
def rag_token_generate(
    model,
    input_ids: torch.LongTensor | None = None,
    attention_mask: torch.Tensor | None = None,
    context_input_ids: torch.LongTensor | None = None,
    context_attention_mask: torch.Tensor | None = None,
    doc_scores: torch.Tensor | None = None,
    n_docs: int | None = None,
    generation_config: GenerationConfig | None = None,
    prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]] | None = None,
    logits_processor: LogitsProcessorList | None = None,
    stopping_criteria: StoppingCriteriaList | None = None,
    **kwargs,
):
    """``RagTokenForGeneration.generate``: same arguments and outputs as the reference, plus the options of the
    constraint plug-ins (``constraints.PLUGINS``; e.g. ``context_copy``'s, default: as the model's config).

    Returns (B * num_return_sequences, T) token ids, or a transformers ``Generate*Output`` when
    ``return_dict_in_generate=True`` (``sequences_scores`` for beam search with ``output_scores=True``).
    """
    contexts = resolve_contexts(
        model, input_ids, attention_mask, context_input_ids, context_attention_mask, doc_scores, n_docs
    )
    passages = EncodedPassages(model.generator, contexts.input_ids, contexts.attention_mask)  # (B*k, L, d)
    doc_lp = doc_log_prior(contexts.doc_scores.float())  # (B, k): log p(z_i | x)
    step = PassageDecodingStep(passages, contexts.n_docs, doc_lp, model.config, _base_generation_config(model))
    chosen = constraints.choose(model.config, kwargs)  # pops the plug-ins' own options from kwargs
    config, mode = prepare_generation(step, generation_config, kwargs)
    step.constraints = constraints.build(chosen, contexts, config)
    beams = mode in (GenerationMode.BEAM_SEARCH, GenerationMode.BEAM_SAMPLE)
    copies = config.num_beams if beams else config.num_return_sequences  # rows per question
    return run(
        step, config, mode, copies, contexts.input_ids, prefix_allowed_tokens_fn, logits_processor, stopping_criteria
    )
