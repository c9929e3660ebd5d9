"""TF twin of ragmodels.generation.contexts: the retrieved contexts of generation, retrieving when not given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from ..errors import RagInputError
from .rag_model import as_tensor


@dataclass
class TFContexts:
    """input_ids / attention_mask (B*k, L), passage i of question b in row b*k + i; doc_scores (B, k)."""

    input_ids: tf.Tensor
    attention_mask: tf.Tensor
    doc_scores: tf.Tensor
    n_docs: int

    @property
    def batch_size(self) -> int:
        return self.input_ids.shape[0] // self.n_docs


def resolve_contexts(model, input_ids: Any, attention_mask: Any, context_input_ids: Any, context_attention_mask: Any,
                     doc_scores: Any, n_docs: int | None) -> TFContexts:
    """Use the given contexts, or encode the questions and retrieve them (``model`` is a TF RAG head)."""
    n_docs = n_docs if n_docs is not None else model.config.n_docs
    if context_input_ids is None and model.retriever is not None:
        if input_ids is None:
            raise RagInputError("Give input_ids (the questions) or context_input_ids/context_attention_mask/doc_scores.")
        retrieved = model.rag.retrieve_contexts(input_ids, attention_mask, n_docs=n_docs)
        context_input_ids, context_attention_mask = retrieved.context_input_ids, retrieved.context_attention_mask
        doc_scores = retrieved.doc_scores
    if context_input_ids is None or doc_scores is None:
        raise RagInputError(
            "No retriever is set: pass context_input_ids, context_attention_mask and doc_scores "
            "(or set a retriever with set_retriever(...))."
        )
    context_input_ids, doc_scores = as_tensor(context_input_ids), as_tensor(doc_scores)
    if context_attention_mask is None:
        context_attention_mask = tf.ones_like(context_input_ids)
    if context_input_ids.shape[0] % n_docs != 0:
        raise RagInputError(
            f"The first dimension of context_input_ids ({context_input_ids.shape[0]}) must be a multiple of "
            f"n_docs={n_docs}; pass the n_docs the contexts were retrieved with."
        )
    batch = context_input_ids.shape[0] // n_docs
    if tuple(doc_scores.shape) != (batch, n_docs):
        raise RagInputError(f"doc_scores has shape {tuple(doc_scores.shape)}, expected (batch_size, n_docs) = {(batch, n_docs)}.")
    return TFContexts(context_input_ids, as_tensor(context_attention_mask), doc_scores, n_docs)
