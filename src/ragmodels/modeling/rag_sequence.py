"""RagSequenceForGeneration: one passage per answer, p(y|x) = sum_i p(z_i|x) prod_t p(y_t|x,z_i,y_<t).

``generate`` lives in ragmodels.generation (RAG-Sequence thorough / fast decoding).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache

from .head import RagHeadModel
from ..marginal import rag_sequence_nll
from .outputs import RetrievAugLMMarginOutput


class RagSequenceForGeneration(RagHeadModel):
    """RAG-Sequence: the loss marginalizes whole-answer likelihoods over the retrieved passages."""

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_outputs: tuple[tuple[torch.Tensor]] | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.BoolTensor | None = None,
        cache: Cache | None = None,
        context_input_ids: torch.LongTensor | None = None,
        context_attention_mask: torch.LongTensor | None = None,
        doc_scores: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        output_retrieved: bool | None = None,
        exclude_bos_score: bool | None = None,
        reduce_loss: bool | None = None,
        labels: torch.LongTensor | None = None,
        n_docs: int | None = None,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> RetrievAugLMMarginOutput:
        """Same arguments and outputs as the reference; with ``labels`` the loss is the RAG-Sequence NLL.

        As in the reference, the loss scores ``decoder_input_ids`` (which default to ``labels``).
        """
        n_docs = n_docs if n_docs is not None else self.config.n_docs
        exclude_bos_score = exclude_bos_score if exclude_bos_score is not None else self.config.exclude_bos_score
        reduce_loss = reduce_loss if reduce_loss is not None else self.config.reduce_loss
        outputs, decoder_input_ids, pad_token_id = self._run_rag(
            labels,
            decoder_input_ids,
            use_cache,
            cache,
            past_key_values,
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_outputs=encoder_outputs,
            decoder_attention_mask=decoder_attention_mask,
            context_input_ids=context_input_ids,
            context_attention_mask=context_attention_mask,
            doc_scores=doc_scores,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            output_retrieved=output_retrieved,
            n_docs=n_docs,
        )
        loss = None
        if labels is not None:
            loss = rag_sequence_nll(
                outputs.logits,
                outputs.doc_scores,
                decoder_input_ids,
                pad_token_id=pad_token_id,
                bos_token_id=self.config.bos_token_id or getattr(self.config.generator, "bos_token_id", None),
                epsilon=self.config.label_smoothing,
                exclude_bos_score=exclude_bos_score,
                reduce_loss=reduce_loss,
            )
        return self._margin_output(loss, outputs.logits, outputs)

    @torch.no_grad()
    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """RAG-Sequence decoding: ``decoding="thorough"`` (default, as the reference) or ``"fast"``.

        Same arguments as the reference plus ``decoding``; see
        ``ragmodels.generation.sequence_decoding.rag_sequence_generate``.
        """
        from ..generation.sequence_decoding import rag_sequence_generate

        return rag_sequence_generate(self, *args, **kwargs)
