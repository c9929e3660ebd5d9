"""TFRagTokenForGeneration: TF twin of ragmodels.modeling.rag_token (decoding in token_decoding)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from .head import TFRagHeadModel
from .marginalization import rag_token_nll, token_marginal_log_probs
from .outputs import TFRetrievAugLMMarginOutput
from .rag_model import as_tensor
from .seq2seq import Cache, shift_tokens_right


class TFRagTokenForGeneration(TFRagHeadModel):
    """RAG-Token: the loss and (with do_marginalize) the logits marginalize over passages per token."""

    def marginalize(self, seq_logits: tf.Tensor, doc_scores: tf.Tensor, n_docs: int | None = None) -> tf.Tensor:
        """Marginal next-token log-probabilities: seq_logits (B*k, T, V), doc_scores (B, k) -> (B, T, V)."""
        return token_marginal_log_probs(seq_logits, doc_scores, n_docs if n_docs is not None else self.config.n_docs)

    def shift_tokens_right(self, input_ids: Any, start_token_id: int | None = None) -> tf.Tensor:
        """Decoder inputs from targets: prepend ``start_token_id`` (default decoder_start_token_id), drop the last."""
        start = start_token_id if start_token_id is not None else self.config.decoder_start_token_id
        return shift_tokens_right(as_tensor(input_ids), self.config.generator.pad_token_id, start)

    def call(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        encoder_outputs: Any = None,
        decoder_input_ids: Any = None,
        decoder_attention_mask: Any = None,
        cache: Cache | None = None,
        context_input_ids: Any = None,
        context_attention_mask: Any = None,
        doc_scores: Any = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        output_retrieved: bool | None = None,
        do_marginalize: bool | None = None,
        reduce_loss: bool | None = None,
        labels: Any = None,
        n_docs: int | None = None,
        training: bool = False,
        **kwargs: Any,
    ) -> TFRetrievAugLMMarginOutput:
        """Same arguments and outputs as RagTokenForGeneration.forward; with ``labels`` the RAG-Token NLL."""
        n_docs = n_docs if n_docs is not None else self.config.n_docs
        do_marginalize = do_marginalize if do_marginalize is not None else self.config.do_marginalize
        reduce_loss = reduce_loss if reduce_loss is not None else self.config.reduce_loss
        if labels is not None:
            pad_token_id = self._pad_token_id_for_loss()
            labels = as_tensor(labels)
            if decoder_input_ids is None:
                decoder_input_ids = labels
            use_cache = False
        outputs = self.rag(
            input_ids=input_ids, attention_mask=attention_mask, encoder_outputs=encoder_outputs,
            decoder_input_ids=decoder_input_ids, decoder_attention_mask=decoder_attention_mask,
            context_input_ids=context_input_ids, context_attention_mask=context_attention_mask, doc_scores=doc_scores,
            cache=cache, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, output_retrieved=output_retrieved, n_docs=n_docs,
            training=training,
        )
        loss = None
        if labels is not None:
            loss = rag_token_nll(
                outputs.logits, outputs.doc_scores, labels, pad_token_id=pad_token_id,
                epsilon=self.config.label_smoothing, reduce_loss=reduce_loss,
            )
        logits = outputs.logits
        if do_marginalize:
            logits = token_marginal_log_probs(logits, outputs.doc_scores, n_docs)
        return self._margin_output(loss, logits, outputs)

    def generate(self, *args: Any, **kwargs: Any) -> tf.Tensor:
        """RAG-Token greedy / beam search over the per-step marginal; arguments as RagTokenForGeneration.generate."""
        from .token_decoding import rag_token_generate

        return rag_token_generate(self, *args, **kwargs)
