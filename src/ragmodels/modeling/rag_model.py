"""RagPreTrainedModel and RagModel: question encoder + retriever + generator, without a loss.

Checkpoints are transformers checkpoints (safetensors, Hub ids) with the reference's state-dict keys:
``question_encoder.*`` and ``generator.*`` (``rag.``-prefixed in the heads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, PreTrainedModel
from transformers.cache_utils import Cache

from .._transformers_compat import PreTrainedConfig, cache_kwargs, output_cache, require_torch_models
from ..config import RagConfig
from ..errors import RagInputError
from ..encoding import pool, resolve_pooling
from ..loading import check_loading_info, load_pretrained
from . import question_encoder as qe
from .outputs import RetrievAugLMOutput


@dataclass
class RetrievedContexts:
    """What retrieval produced for a batch of B questions with k passages each.

    context_input_ids / context_attention_mask: (B*k, L) generator inputs (passage + question).
    doc_scores: (B, k) <q, d_i>, differentiable w.r.t. the question encoder.
    retrieved_doc_embeds: (B, k, d). doc_ids: (B, k) passage ids. question_hidden: (B, d) the vector q.
    """

    context_input_ids: torch.LongTensor
    context_attention_mask: torch.LongTensor
    doc_scores: torch.Tensor
    retrieved_doc_embeds: torch.Tensor
    doc_ids: torch.LongTensor
    question_hidden: torch.Tensor


class RagPreTrainedModel(PreTrainedModel):
    """Base class: RagConfig, the ``rag`` prefix, and building a RAG model from two pretrained models."""

    config_class = RagConfig
    base_model_prefix = "rag"
    _supports_flash_attn = True
    _supports_sdpa = True

    def __init__(self, config: PreTrainedConfig, *args: Any, **kwargs: Any):
        require_torch_models(type(self).__name__)
        super().__init__(config, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *model_args: Any, strict: bool = True,
                        **kwargs: Any) -> Any:
        """transformers' ``from_pretrained``, except that a weight missing from the checkpoint, unexpected in
        it or of another shape is a ``WeightLoadError`` naming the keys (``ragmodels.loading``), never a silent
        random initialisation. ``strict=False`` gives transformers' behaviour (random init and a report).
        First checks that the installed transformers can run the model."""
        require_torch_models(cls.__name__)
        if not strict:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args,
                                              output_loading_info=True, **kwargs)
        check_loading_info(info, pretrained_model_name_or_path, f"{cls.__name__} (RAG)")
        return (model, info) if wants_info else model

    @classmethod
    def from_pretrained_question_encoder_generator(
        cls,
        question_encoder_pretrained_model_name_or_path: str | None = None,
        generator_pretrained_model_name_or_path: str | None = None,
        retriever: Any = None,
        **kwargs: Any,
    ) -> "RagPreTrainedModel":
        """Build a RAG model from a pretrained question encoder and a pretrained seq2seq generator.

        ``question_encoder_*`` / ``generator_*`` kwargs go to the matching ``from_pretrained`` (``*_model``
        passes a ready model); other kwargs update the RagConfig (or ``config=`` gives it whole). A sub-model
        checkpoint without a weight the model needs is a ``WeightLoadError`` (``question_encoder_strict=False`` /
        ``generator_strict=False`` to allow it); weights it has beyond the model's (task heads) are ignored.
        """
        require_torch_models(cls.__name__)
        sub_kwargs = {"question_encoder": {}, "generator": {}}
        for key in list(kwargs):
            for part in sub_kwargs:
                if key.startswith(part + "_"):
                    sub_kwargs[part][key[len(part) + 1 :]] = kwargs.pop(key)
        sources = {
            "question_encoder": (question_encoder_pretrained_model_name_or_path, AutoModel),
            "generator": (generator_pretrained_model_name_or_path, AutoModelForSeq2SeqLM),
        }
        models = {}
        for part, (path, auto_class) in sources.items():
            part_kwargs = sub_kwargs[part]
            model = part_kwargs.pop("model", None)
            if model is None:
                if path is None:
                    raise RagInputError(
                        f"Give {part}_pretrained_model_name_or_path, or a ready model as {part}_model=..."
                    )
                if "config" not in part_kwargs:
                    sub_config, part_kwargs = AutoConfig.from_pretrained(
                        path, **part_kwargs, return_unused_kwargs=True
                    )
                    part_kwargs["config"] = sub_config
                model = load_pretrained(auto_class, path, part.replace("_", " "), allow_unexpected=True,
                                        strict=part_kwargs.pop("strict", True), **part_kwargs)
            models[part] = model
        config = kwargs.pop("config", None)
        if config is None:
            config = RagConfig.from_question_encoder_generator_configs(
                models["question_encoder"].config, models["generator"].config, **kwargs
            )
        return cls(config=config, retriever=retriever, **models)


def _as_rag_config(config: PreTrainedConfig | None, question_encoder, generator, **kwargs: Any) -> RagConfig:
    """Our RagConfig from a given config (ours or the reference's) or from the two sub-models."""
    if config is None:
        if question_encoder is None or generator is None:
            raise RagInputError("Give either a RagConfig or both a question_encoder and a generator.")
        return RagConfig.from_question_encoder_generator_configs(question_encoder.config, generator.config, **kwargs)
    if isinstance(config, RagConfig):
        return config
    if getattr(config, "model_type", None) == "rag":
        return RagConfig.from_dict(config.to_dict())
    raise RagInputError(f"config must be a RagConfig, got {type(config).__name__}.")


def merge_cache_kwargs(cache: Cache | None, past_key_values: Cache | None) -> Cache | None:
    """The decoder cache under either name: ``cache`` (transformers 5.x) or ``past_key_values`` (older)."""
    if cache is not None and past_key_values is not None:
        raise ValueError("Pass the decoder cache as `cache` or as `past_key_values`, not both.")
    return cache if cache is not None else past_key_values


class RagModel(RagPreTrainedModel):
    """Encode the question, retrieve k passages, run the generator on each (passage + question).

    Returns per-passage generator logits and doc_scores; the heads turn them into a marginal likelihood.
    ``trim_context_padding`` (attribute, default False): without a decoder cache (training, the heads'
    loss), do not run the generator over context columns that are padding in every row (retrievers pad
    to max_combined_length; see ``_without_trailing_padding``). The logits are the same up to float
    rounding, which then depends on the longest context of the batch (so two batchings of the same
    examples no longer agree bit for bit); that is why it is off by default.
    """

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
        if question_encoder is None:
            question_encoder = AutoModel.from_config(config.question_encoder)
        if generator is None:
            generator = AutoModelForSeq2SeqLM.from_config(config.generator)
        self.question_encoder = question_encoder
        self.generator = generator
        self.retriever = retriever
        self.ctx_encoder = None
        self.context_encoder_training = False
        self.trim_context_padding = False
        self.post_init()

    def encode_question(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The question vectors q: (B, L) token ids -> (B, d), pooled per config.question_encoder_pooling."""
        return qe.encode(self.question_encoder, input_ids, attention_mask, self.config.question_encoder_pooling)[0]

    def retrieve_contexts(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        n_docs: int | None = None,
        prefix: str | None = None,
    ) -> RetrievedContexts:
        """Encode the questions and retrieve ``n_docs`` passages each (generator inputs and doc_scores).

        ``prefix`` defaults to the generator config's ``prefix`` (as the reference, e.g. T5 task prefixes).
        """
        question_hidden = self.encode_question(input_ids, attention_mask)
        return self._retrieve(input_ids, question_hidden, n_docs if n_docs is not None else self.config.n_docs, prefix)

    def _retrieve(
        self, input_ids: torch.LongTensor, question_hidden: torch.Tensor, n_docs: int, prefix: str | None
    ) -> RetrievedContexts:
        """Call the retriever with q and score its passages; q (B, d)."""
        if self.retriever is None:
            raise RagInputError(
                "No retriever is set: call set_retriever(retriever) (or pass retriever= when loading), or pass "
                "context_input_ids, context_attention_mask and doc_scores yourself."
            )
        index = getattr(self.retriever, "index", None)  # ours has .dimension, the reference's .vector_size
        index_size = getattr(index, "dimension", None) or getattr(index, "vector_size", None)
        if index_size is not None:
            _check_vector_size(index_size, question_hidden.shape[-1])
        if prefix is None:
            prefix = getattr(self.generator.config, "prefix", None)
        out = self.retriever(
            input_ids,
            question_hidden.detach().to(device="cpu", dtype=torch.float32).numpy(),
            prefix=prefix,
            n_docs=n_docs,
            return_tensors="pt",
        )
        if self.context_encoder_training:
            doc_embeds = self._encode_retrieved_docs(out, n_docs, input_ids.device)  # (B, k, d)
        else:
            doc_embeds = torch.as_tensor(out["retrieved_doc_embeds"])
        doc_embeds = doc_embeds.to(question_hidden)  # (B, k, d)
        _check_vector_size(doc_embeds.shape[-1], question_hidden.shape[-1])
        doc_scores = torch.bmm(question_hidden.unsqueeze(1), doc_embeds.transpose(1, 2)).squeeze(1)  # (B, k)
        return RetrievedContexts(
            context_input_ids=torch.as_tensor(out["context_input_ids"]).to(input_ids),
            context_attention_mask=torch.as_tensor(out["context_attention_mask"]).to(input_ids),
            doc_scores=doc_scores,
            retrieved_doc_embeds=doc_embeds,
            doc_ids=torch.as_tensor(out["doc_ids"]),
            question_hidden=question_hidden,
        )

    def _encode_retrieved_docs(self, retriever_out: Any, n_docs: int, device: torch.device) -> torch.Tensor:
        """Re-embed the retrieved passages with the trainable context encoder: -> (B, k, d)."""
        if "tokenized_doc_ids" not in retriever_out:
            raise ValueError(
                "Context-encoder training needs the retriever to return the tokenized passages "
                "(tokenized_doc_ids, tokenized_doc_attention_mask); give the retriever the context-encoder "
                "tokenizer (retriever.set_ctx_encoder_tokenizer(...))."
            )
        ids = torch.as_tensor(retriever_out["tokenized_doc_ids"]).to(device)
        mask = torch.as_tensor(retriever_out["tokenized_doc_attention_mask"]).to(device)
        outputs = self.ctx_encoder(ids, attention_mask=mask, return_dict=True)
        pooling = resolve_pooling(self.config.question_encoder_pooling, self.ctx_encoder.config.model_type)
        embeds = pool(outputs, mask, pooling)  # (B*k, d)
        return embeds.view(-1, n_docs, embeds.shape[-1])

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_outputs: tuple[tuple[torch.Tensor]] | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.BoolTensor | None = None,
        cache: Cache | None = None,
        doc_scores: torch.Tensor | None = None,
        context_input_ids: torch.LongTensor | None = None,
        context_attention_mask: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        output_retrieved: bool | None = None,
        n_docs: int | None = None,
        past_key_values: Cache | None = None,
        **kwargs: Any,
    ) -> RetrievAugLMOutput:
        """Same arguments and outputs as the reference RagModel.forward.

        Without a retriever, pass context_input_ids, context_attention_mask (B*k, L) and doc_scores (B, k);
        with ``encoder_outputs`` (generation), doc_scores only.
        """
        cache = merge_cache_kwargs(cache, past_key_values)
        n_docs = n_docs if n_docs is not None else self.config.n_docs
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        output_retrieved = output_retrieved if output_retrieved is not None else self.config.output_retrieved

        contexts_given = context_input_ids is not None and context_attention_mask is not None and doc_scores is not None
        has_to_retrieve = self.retriever is not None and not contexts_given and encoder_outputs is None
        question_outputs = retrieved = None
        if has_to_retrieve:
            question_hidden, question_outputs = qe.encode(
                self.question_encoder, input_ids, attention_mask, self.config.question_encoder_pooling,
                output_attentions, output_hidden_states,
            )
            retrieved = self._retrieve(input_ids, question_hidden, n_docs, prefix=None)
            context_input_ids = retrieved.context_input_ids
            context_attention_mask = retrieved.context_attention_mask
            doc_scores = retrieved.doc_scores
        elif encoder_outputs is None and not contexts_given:
            missing = [
                name
                for name, value in (
                    ("context_input_ids", context_input_ids),
                    ("context_attention_mask", context_attention_mask),
                    ("doc_scores", doc_scores),
                )
                if value is None
            ]
            raise RagInputError(
                f"No retriever is set, so {', '.join(missing)} must be passed; or set one with set_retriever(...)."
            )
        if doc_scores is None:
            raise RagInputError("doc_scores (batch_size, n_docs) must be passed together with encoder_outputs.")
        _check_context_shapes(context_input_ids, context_attention_mask, encoder_outputs, doc_scores, n_docs)

        if decoder_input_ids is not None:  # one copy of the target per passage: (B, T) -> (B*k, T)
            decoder_input_ids = decoder_input_ids.repeat_interleave(n_docs, dim=0)
        if decoder_attention_mask is not None:
            decoder_attention_mask = decoder_attention_mask.repeat_interleave(n_docs, dim=0)

        generator_ids, generator_mask = context_input_ids, context_attention_mask
        if self.trim_context_padding and encoder_outputs is None and not use_cache and not (
            output_attentions or output_hidden_states
        ):
            generator_ids, generator_mask = _without_trailing_padding(context_input_ids, context_attention_mask)
        gen_outputs = self.generator(
            input_ids=generator_ids,
            attention_mask=generator_mask,
            encoder_outputs=encoder_outputs,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            **cache_kwargs(cache),
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )

        show_retrieved = retrieved is not None and output_retrieved
        return RetrievAugLMOutput(
            logits=gen_outputs.logits,
            doc_scores=doc_scores,
            **cache_kwargs(output_cache(gen_outputs)),
            retrieved_doc_embeds=retrieved.retrieved_doc_embeds if show_retrieved else None,
            retrieved_doc_ids=retrieved.doc_ids if show_retrieved else None,
            context_input_ids=context_input_ids if show_retrieved else None,
            context_attention_mask=context_attention_mask if show_retrieved else None,
            question_encoder_last_hidden_state=retrieved.question_hidden if retrieved is not None else None,
            question_enc_hidden_states=question_outputs.hidden_states if question_outputs is not None else None,
            question_enc_attentions=question_outputs.attentions if question_outputs is not None else None,
            generator_enc_last_hidden_state=_padded_to(gen_outputs.encoder_last_hidden_state, context_input_ids),
            generator_enc_hidden_states=gen_outputs.encoder_hidden_states,
            generator_enc_attentions=gen_outputs.encoder_attentions,
            generator_dec_hidden_states=gen_outputs.decoder_hidden_states,
            generator_dec_attentions=gen_outputs.decoder_attentions,
            generator_cross_attentions=gen_outputs.cross_attentions,
        )


def _without_trailing_padding(
    input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the trailing columns that are padding (mask 0) in every row: (B*k, L) -> (B*k, L' <= L).

    Retrievers pad every context to max_combined_length; a masked key adds exactly nothing to attention,
    and a padded query's output is never used (the decoder's cross-attention masks it too), so the
    generator's logits are the same without those columns (up to float rounding) at a fraction of the
    encoder's cost. Left padding is left alone (its padding is not trailing).
    """
    if attention_mask is None or attention_mask.size(1) == 0:
        return input_ids, attention_mask
    used = attention_mask.ne(0).any(dim=0)  # (L,)
    if bool(used[-1]):
        return input_ids, attention_mask
    length = int(used.nonzero().max()) + 1 if bool(used.any()) else 1
    return input_ids[:, :length], attention_mask[:, :length]


def _padded_to(hidden: torch.Tensor | None, input_ids: torch.Tensor | None) -> torch.Tensor | None:
    """The encoder's last hidden state (B*k, L', d) zero-padded back to the contexts' length L."""
    if hidden is None or input_ids is None or hidden.size(1) >= input_ids.size(1):
        return hidden
    return torch.nn.functional.pad(hidden, (0, 0, 0, input_ids.size(1) - hidden.size(1)))


def _check_context_shapes(
    context_input_ids: torch.Tensor | None,
    context_attention_mask: torch.Tensor | None,
    encoder_outputs: Any,
    doc_scores: torch.Tensor,
    n_docs: int,
) -> None:
    """Contexts are (B*k, L) with k = n_docs and doc_scores (B, k); say which one is off, and how to fix it."""
    if context_input_ids is not None:
        rows, source = context_input_ids.shape[0], "context_input_ids"
    else:
        rows, source = encoder_outputs[0].shape[0], "encoder_outputs"
    if rows % n_docs != 0:
        raise RagInputError(
            f"The first dimension of {source} ({rows}) must be a multiple of n_docs={n_docs} "
            "(batch_size * n_docs rows, the passages of each question in a row); pass the n_docs the contexts "
            "were retrieved with."
        )
    if context_attention_mask is not None and context_input_ids is not None:
        if context_attention_mask.shape != context_input_ids.shape:
            raise RagInputError(
                f"context_attention_mask has shape {tuple(context_attention_mask.shape)} but context_input_ids "
                f"has {tuple(context_input_ids.shape)}; they must match."
            )
    expected = (rows // n_docs, n_docs)
    if doc_scores.dim() != 2 or tuple(doc_scores.shape) != expected:
        raise RagInputError(
            f"doc_scores has shape {tuple(doc_scores.shape)} but must be (batch_size, n_docs) = {expected} for "
            f"{rows} context rows and n_docs={n_docs}."
        )


def _check_vector_size(passage_size: int, question_size: int) -> None:
    """Passage embeddings and question vectors must have one size, to be compared by inner product."""
    if passage_size != question_size:
        raise ValueError(
            f"The retrieval_vector_size of the index ({passage_size}) does not match the question vector size "
            f"({question_size}). Use an index built with a context encoder of the question encoder's size, or a "
            "question encoder (and pooling) that produces vectors of the index's size."
        )
