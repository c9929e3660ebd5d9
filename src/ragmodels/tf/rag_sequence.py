"""TFRagSequenceForGeneration: TF twin of ragmodels.modeling.rag_sequence (decoding in sequence_decoding)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from .head import TFRagHeadModel
from .marginalization import rag_sequence_nll
from .outputs import TFRetrievAugLMMarginOutput
from .rag_model import as_tensor
from .seq2seq import Cache


class TFRagSequenceForGeneration(TFRagHeadModel):
    """RAG-Sequence: the loss marginalizes whole-answer likelihoods over the retrieved passages."""

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
        exclude_bos_score: bool | None = None,
        reduce_loss: bool | None = None,
        labels: Any = None,
        n_docs: int | None = None,
        training: bool = False,
        **kwargs: Any,
    ) -> TFRetrievAugLMMarginOutput:
        """Same arguments and outputs as RagSequenceForGeneration.forward; the loss scores decoder_input_ids."""
        n_docs = n_docs if n_docs is not None else self.config.n_docs
        exclude_bos_score = exclude_bos_score if exclude_bos_score is not None else self.config.exclude_bos_score
        reduce_loss = reduce_loss if reduce_loss is not None else self.config.reduce_loss
        if labels is not None:
            pad_token_id = self._pad_token_id_for_loss()
            if decoder_input_ids is None:
                decoder_input_ids = as_tensor(labels)
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
            loss = rag_sequence_nll(
                outputs.logits,
                outputs.doc_scores,
                as_tensor(decoder_input_ids),
                pad_token_id=pad_token_id,
                bos_token_id=self.config.bos_token_id or getattr(self.config.generator, "bos_token_id", None),
                epsilon=self.config.label_smoothing,
                exclude_bos_score=exclude_bos_score,
                reduce_loss=reduce_loss,
            )
        return self._margin_output(loss, outputs.logits, outputs)

    def generate(self, *args: Any, **kwargs: Any) -> tf.Tensor:
        """RAG-Sequence "thorough" decoding; arguments as RagSequenceForGeneration.generate."""
        from .sequence_decoding import rag_sequence_generate

        return rag_sequence_generate(self, *args, **kwargs)
