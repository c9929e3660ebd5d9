"""What the RAG-Sequence and RAG-Token heads share: a RagModel under ``rag``, its parts, and the
plumbing from RagModel's output to a RetrievAugLMMarginOutput. Each head adds only its loss."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch
from transformers import PreTrainedModel

from .._transformers_compat import PreTrainedConfig
from ..generation.constraints import loss_restriction
from .outputs import RetrievAugLMMarginOutput, RetrievAugLMOutput
from .rag_model import RagModel, RagPreTrainedModel, _as_rag_config, merge_cache_kwargs


class RagHeadModel(RagPreTrainedModel):
    """A RagModel (``self.rag``) plus the accessors the reference heads expose."""

    def __init__(
        self,
        config: PreTrainedConfig | None = None,
        question_encoder: PreTrainedModel | None = None,
        generator: PreTrainedModel | None = None,
        retriever: Any = None,
        **kwargs: Any,
    ):
        config = _as_rag_config(config, question_encoder, generator, **kwargs)
        super().__init__(config)
        self.rag = RagModel(config=config, question_encoder=question_encoder, generator=generator, retriever=retriever)
        self.post_init()

    @property
    def retriever(self) -> Any:
        return self.rag.retriever

    @property
    def generator(self) -> PreTrainedModel:
        return self.rag.generator

    @property
    def question_encoder(self) -> PreTrainedModel:
        return self.rag.question_encoder

    def set_retriever(self, retriever: Any) -> None:
        """Attach a retriever (anything with RagRetriever's ``__call__``)."""
        self.rag.retriever = retriever

    def set_context_encoder_for_training(self, ctx_encoder: PreTrainedModel) -> None:
        """Re-embed retrieved passages with ``ctx_encoder`` in the forward pass, so it is trained too."""
        self.rag.context_encoder_training = True
        self.rag.ctx_encoder = ctx_encoder

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.rag.generator.get_input_embeddings()

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.rag.generator.get_output_embeddings()

    def set_output_embeddings(self, new_embeddings: torch.nn.Module) -> None:
        self.rag.generator.set_output_embeddings(new_embeddings)

    def _pad_token_id_for_loss(self) -> int:
        """The generator's pad id, which the losses use to shift and mask targets."""
        pad_token_id = self.config.generator.pad_token_id
        if pad_token_id is None:
            raise ValueError(
                "Computing the loss from labels needs the generator's pad_token_id, but config.generator."
                "pad_token_id is None; set it (e.g. to the generator tokenizer's pad_token_id)."
            )
        return pad_token_id

    def _run_rag(
        self,
        labels: torch.LongTensor | None,
        decoder_input_ids: torch.LongTensor | None,
        use_cache: bool | None,
        cache: Any,
        past_key_values: Any,
        **rag_kwargs: Any,
    ) -> tuple[RetrievAugLMOutput, torch.LongTensor | None, int | None]:
        """Run RagModel as both heads do: with labels, decoder inputs default to them and the cache is off.

        Returns RagModel's output, the decoder inputs used, and the pad id the loss needs (None without labels).
        """
        pad_token_id = None
        if labels is not None:
            pad_token_id = self._pad_token_id_for_loss()
            if decoder_input_ids is None:
                decoder_input_ids = labels
            use_cache = False
        restrict = loss_restriction(self.config) if labels is not None else None  # e.g. copy from context
        if restrict is not None and rag_kwargs.get("context_input_ids") is None:
            rag_kwargs["output_retrieved"] = True  # the restriction needs the contexts
        outputs = self.rag(
            decoder_input_ids=decoder_input_ids,
            cache=merge_cache_kwargs(cache, past_key_values),
            use_cache=use_cache,
            **rag_kwargs,
        )
        if restrict is not None:
            contexts = rag_kwargs.get("context_input_ids"), rag_kwargs.get("context_attention_mask")
            if contexts[0] is None:
                contexts = outputs.context_input_ids, outputs.context_attention_mask
            outputs.logits = restrict(outputs.logits, decoder_input_ids, pad_token_id, *contexts)
        return outputs, decoder_input_ids, pad_token_id

    @staticmethod
    def _margin_output(
        loss: torch.Tensor | None, logits: torch.Tensor, outputs: RetrievAugLMOutput
    ) -> RetrievAugLMMarginOutput:
        """RagModel's output with the head's loss and logits."""
        rest = {f.name: getattr(outputs, f.name) for f in fields(outputs) if f.name != "logits"}
        return RetrievAugLMMarginOutput(loss=loss, logits=logits, **rest)
