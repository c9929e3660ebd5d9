"""What the TF RAG-Sequence and RAG-Token heads share: a TFRagModel under ``rag`` and the output plumbing."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import tensorflow as tf

from .._transformers_compat import PreTrainedConfig
from .outputs import TFRetrievAugLMMarginOutput, TFRetrievAugLMOutput
from .rag_model import TFRagModel, TFRagPreTrainedModel
from .seq2seq import TFSeq2SeqLM


class TFRagHeadModel(TFRagPreTrainedModel):
    """A TFRagModel (``self.rag``) plus the accessors of the PyTorch heads."""

    key_prefix = "rag."

    def __init__(
        self,
        config: PreTrainedConfig | None = None,
        question_encoder: tf.Module | None = None,
        generator: TFSeq2SeqLM | None = None,
        retriever: Any = None,
        **kwargs: Any,
    ):
        super().__init__()
        self.rag = TFRagModel(config, question_encoder, generator, retriever, **kwargs)
        self.config = self.rag.config
        if getattr(self.config, "copy_from_context", False):
            raise NotImplementedError(
                "This RAG model is copy-restricted (config.copy_from_context, e.g. the embedded default): its loss "
                "and decoding exist in PyTorch only. Use the PyTorch classes (RagTokenForGeneration / "
                "RagSequenceForGeneration)."
            )

    @property
    def _rag(self) -> TFRagModel:
        return self.rag

    @property
    def retriever(self) -> Any:
        return self.rag.retriever

    @property
    def generator(self) -> TFSeq2SeqLM:
        return self.rag.generator

    @property
    def question_encoder(self) -> tf.Module:
        return self.rag.question_encoder

    def set_retriever(self, retriever: Any) -> None:
        """Attach a retriever (anything with RagRetriever's ``__call__``)."""
        self.rag.retriever = retriever

    def _pad_token_id_for_loss(self) -> int:
        pad_token_id = self.config.generator.pad_token_id
        if pad_token_id is None:
            raise ValueError(
                "Computing the loss from labels needs config.generator.pad_token_id; set it (e.g. to the "
                "generator tokenizer's pad_token_id)."
            )
        return pad_token_id

    @staticmethod
    def _margin_output(loss: tf.Tensor | None, logits: tf.Tensor, outputs: TFRetrievAugLMOutput) -> TFRetrievAugLMMarginOutput:
        rest = {f.name: getattr(outputs, f.name) for f in fields(outputs) if f.name != "logits"}
        return TFRetrievAugLMMarginOutput(loss=loss, logits=logits, **rest)
