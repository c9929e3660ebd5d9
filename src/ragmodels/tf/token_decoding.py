"""TF twin of ragmodels.generation.token_decoding: greedy / beam search over the per-step RAG-Token marginal.

log p(y_t | x, y_<t) = logsumexp_i [ log softmax(doc_scores)_i + log p(y_t | x, z_i, y_<t) ]
The encoder runs once per (question, passage); see ``loop``.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
from transformers import GenerationConfig

from .contexts import resolve_contexts
from .loop import TFPassageDecodingStep, resolve_generation_config, search


def rag_token_generate(
    model,
    input_ids: Any = None,
    attention_mask: Any = None,
    context_input_ids: Any = None,
    context_attention_mask: Any = None,
    doc_scores: Any = None,
    n_docs: int | None = None,
    generation_config: GenerationConfig | None = None,
    **kwargs: Any,
) -> tf.Tensor:
    """``TFRagTokenForGeneration.generate``: returns (B * num_return_sequences, T) token ids."""
    contexts = resolve_contexts(model, input_ids, attention_mask, context_input_ids, context_attention_mask, doc_scores, n_docs)
    config = resolve_generation_config(GenerationConfig.from_model_config(model.config), generation_config, kwargs)
    doc_lp = tf.nn.log_softmax(contexts.doc_scores, axis=1)  # (B, k): log p(z_i | x)
    copies = config.num_beams if config.num_beams > 1 else config.num_return_sequences  # rows per question
    step = TFPassageDecodingStep(
        model.generator, contexts.input_ids, contexts.attention_mask, contexts.n_docs, doc_lp, copies
    )
    return tf.constant(search(step, config))
