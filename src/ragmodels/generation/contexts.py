"""Inputs of generation: the retrieved contexts and their scores, retrieving them when not given."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import RagInputError


@dataclass
class Contexts:
    """B questions with k = n_docs passages each.

    input_ids / attention_mask: (B*k, L) generator inputs, passage i of question b in row b*k + i.
    doc_scores: (B, k) retrieval scores <q, d_i>.
    """

    input_ids: torch.LongTensor
    attention_mask: torch.LongTensor
    doc_scores: torch.Tensor
    n_docs: int

    @property
    def batch_size(self) -> int:
        return self.input_ids.shape[0] // self.n_docs


def resolve_contexts(
    model,
    input_ids: torch.LongTensor | None,
    attention_mask: torch.Tensor | None,
    context_input_ids: torch.LongTensor | None,
    context_attention_mask: torch.Tensor | None,
    doc_scores: torch.Tensor | None,
    n_docs: int | None,
) -> Contexts:
    """Use the given contexts, or encode the questions and retrieve them (once per question).

    ``model`` is a RAG head (``model.rag`` a RagModel). Without a retriever (or with contexts given) the
    caller passes context_input_ids, context_attention_mask and doc_scores.
    """
    n_docs = n_docs if n_docs is not None else model.config.n_docs
    rag = model.rag
    if context_input_ids is None and rag.retriever is not None:
        if input_ids is None:
            raise RagInputError("Give input_ids (the questions) or context_input_ids/context_attention_mask/doc_scores.")
        if hasattr(rag, "retrieve_contexts"):
            retrieved = rag.retrieve_contexts(input_ids, attention_mask, n_docs=n_docs)
            context_input_ids = retrieved.context_input_ids
            context_attention_mask = retrieved.context_attention_mask
            doc_scores = retrieved.doc_scores
        else:  # a transformers RAG model (same retriever API): the reference's retrieval steps
            q = model.question_encoder(input_ids, attention_mask=attention_mask)[0]  # (B, d)
            out = rag.retriever(
                input_ids,
                q.detach().to(device="cpu", dtype=torch.float32).numpy(),
                prefix=getattr(model.generator.config, "prefix", None),
                n_docs=n_docs,
                return_tensors="pt",
            )
            context_input_ids = out["context_input_ids"].to(input_ids)
            context_attention_mask = out["context_attention_mask"].to(input_ids)
            embeds = out["retrieved_doc_embeds"].to(q)  # (B, k, d)
            doc_scores = torch.bmm(q.unsqueeze(1), embeds.transpose(1, 2)).squeeze(1)  # (B, k)
    if context_input_ids is None or doc_scores is None:
        raise RagInputError(
            "No retriever is set: pass context_input_ids, context_attention_mask and doc_scores "
            "(or set a retriever with set_retriever(...))."
        )
    if context_attention_mask is None:
        context_attention_mask = torch.ones_like(context_input_ids)
    if context_input_ids.shape[0] % n_docs != 0:
        raise RagInputError(
            f"The first dimension of context_input_ids ({context_input_ids.shape[0]}) must be a multiple of "
            f"n_docs={n_docs}; pass the n_docs the contexts were retrieved with."
        )
    batch = context_input_ids.shape[0] // n_docs
    if tuple(doc_scores.shape) != (batch, n_docs):
        raise RagInputError(f"doc_scores has shape {tuple(doc_scores.shape)}, expected (batch_size, n_docs) = {(batch, n_docs)}.")
    return Contexts(context_input_ids, context_attention_mask, doc_scores, n_docs)
