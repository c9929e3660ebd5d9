"""RagTokenForGeneration: a passage per token, p(y|x) = prod_t sum_i p(z_i|x) p(y_t|x,z_i,y_<t).

``generate`` lives in ragmodels.generation (beam search over the per-step marginal).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, EncoderDecoderCache

from .head import RagHeadModel
from ..marginal import rag_token_nll, token_marginal
from .outputs import RetrievAugLMMarginOutput


class RagTokenForGeneration(RagHeadModel):
    """RAG-Token: the loss and (with do_marginalize) the logits marginalize over passages per token."""

    def marginalize(
        self, seq_logits: torch.Tensor, doc_scores: torch.Tensor, n_docs: int | None = None
    ) -> torch.Tensor:
        """Marginal next-token log-probabilities: seq_logits (B*k, T, V), doc_scores (B, k) -> (B, T, V)."""
        return token_marginal(seq_logits, doc_scores, n_docs if n_docs is not None else self.config.n_docs)

    def shift_tokens_right(self, input_ids: torch.Tensor, start_token_id: int | None = None) -> torch.Tensor:
        """Decoder inputs from targets: prepend ``start_token_id`` (default decoder_start_token_id), drop the last."""
        if start_token_id is None:
            start_token_id = self.config.decoder_start_token_id
        shifted = input_ids.new_zeros(input_ids.shape)
        shifted[:, 1:] = input_ids[:, :-1]
        shifted[:, 0] = start_token_id
        return shifted

    @staticmethod
    def _reorder_cache(cache: Cache, beam_idx: torch.Tensor) -> Cache:
        """Reorder a decoder cache for beam search; its rows are (beams*k), reordered per beam with k kept."""

        def reorder(states: torch.Tensor) -> torch.Tensor:
            n_docs = states.shape[0] // beam_idx.shape[0]
            grouped = states.view(-1, n_docs, *states.shape[1:])  # (beams, k, ...)
            return grouped.index_select(0, beam_idx.to(states.device)).view(-1, *states.shape[1:])

        if isinstance(cache, EncoderDecoderCache):
            caches = (cache.self_attention_cache, cache.cross_attention_cache)
        else:
            caches = (cache,)
        layers = tuple(
            tuple(reorder(x) for c in caches for x in (c.layers[i].keys, c.layers[i].values))
            for i in range(len(cache))
        )
        return type(cache)(layers)

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
        do_marginalize: bool | None = None,
        reduce_loss: bool | None = None,
        labels: torch.LongTensor | None = None,
        n_docs: int | None = None,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> RetrievAugLMMarginOutput:
        """Same arguments and outputs as the reference; with ``labels`` the loss is the RAG-Token NLL."""
        n_docs = n_docs if n_docs is not None else self.config.n_docs
        do_marginalize = do_marginalize if do_marginalize is not None else self.config.do_marginalize
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
            loss = rag_token_nll(
                outputs.logits,
                outputs.doc_scores,
                labels,
                pad_token_id=pad_token_id,
                epsilon=self.config.label_smoothing,
                reduce_loss=reduce_loss,
            )
        logits = outputs.logits
        if do_marginalize:
            logits = token_marginal(logits, outputs.doc_scores, n_docs)
        return self._margin_output(loss, logits, outputs)

    @torch.no_grad()
    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """RAG-Token decoding (greedy, sampling, beam search over the per-step passage marginal).

        Same arguments as the reference; see ``ragmodels.generation.token_decoding.rag_token_generate``.
        """
        from ..generation.token_decoding import rag_token_generate

        return rag_token_generate(self, *args, **kwargs)
