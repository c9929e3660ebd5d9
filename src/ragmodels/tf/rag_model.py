"""TFRagPreTrainedModel and TFRagModel: the TF twin of ragmodels.modeling.rag_model.

Same checkpoints as PyTorch: ``question_encoder.*`` / ``generator.*`` keys (``rag.``-prefixed in the heads),
read from safetensors or PyTorch weights and written as safetensors + config.json.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
from transformers import AutoConfig

from .._io import save_staged
from .._transformers_compat import PreTrainedConfig
from ..config import RagConfig
from ..encoding import resolve_pooling
from ..errors import RagInputError
from .bert import TFEncoderOutput
from .checkpoint import assign, read_state_dict, write_safetensors
from .outputs import TFRetrievAugLMOutput
from .pooling import pool
from .seq2seq import Cache, TFSeq2SeqLM
from .sub_models import build_generator, build_question_encoder


@dataclass
class TFRetrievedContexts:
    """context_input_ids / context_attention_mask (B*k, L); doc_scores (B, k) differentiable w.r.t. the
    question encoder; retrieved_doc_embeds (B, k, d); doc_ids (B, k); question_hidden (B, d)."""

    context_input_ids: tf.Tensor
    context_attention_mask: tf.Tensor
    doc_scores: tf.Tensor
    retrieved_doc_embeds: tf.Tensor
    doc_ids: tf.Tensor
    question_hidden: tf.Tensor


def as_tensor(x: Any) -> tf.Tensor | None:
    """NumPy arrays / lists -> tf.Tensor (tensors and None pass through)."""
    if x is None or isinstance(x, tf.Tensor):
        return x
    return tf.convert_to_tensor(np.asarray(x))


class TFRagPreTrainedModel(tf.Module):
    """Base class: config, checkpoint loading/saving by state-dict key, ``__call__`` = ``call``."""

    base_model_prefix = "rag"
    key_prefix = ""  # "rag." for the heads, whose PyTorch twins hold a RagModel under ``rag``

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.call(*args, **kwargs)

    @property
    def _rag(self) -> "TFRagModel":
        raise NotImplementedError

    def state_variables(self) -> dict[str, tf.Variable]:
        """Every variable under its PyTorch state-dict key."""
        rag = self._rag
        return {
            f"{self.key_prefix}{part}.{name}": var
            for part, module in (("question_encoder", rag.question_encoder), ("generator", rag.generator))
            for name, var in module.store.params.items()
        }

    def _tied_keys(self) -> tuple[str, ...]:
        return tuple(f"{self.key_prefix}generator.{k}" for k in self._rag.generator.tied_keys)

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Assign a PyTorch state dict (NumPy values), with or without the ``rag.`` prefix."""
        state = {k.removeprefix("rag."): v for k, v in state.items()}
        assign(self.state_variables(), {f"{self.key_prefix}{k}": v for k, v in state.items()}, self._tied_keys())

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, retriever: Any = None, config: RagConfig | None = None,
        **kwargs: Any,
    ) -> "TFRagPreTrainedModel":
        """Load a RAG checkpoint (folder or Hub id) written by transformers, ragmodels PyTorch or TF."""
        if config is None:
            config = RagConfig.from_pretrained(pretrained_model_name_or_path, **kwargs)
        model = cls(config=config, retriever=retriever)
        model.load_state_dict(read_state_dict(pretrained_model_name_or_path))
        return model

    @classmethod
    def from_pretrained_question_encoder_generator(
        cls,
        question_encoder_pretrained_model_name_or_path: str | os.PathLike,
        generator_pretrained_model_name_or_path: str | os.PathLike,
        retriever: Any = None,
        **kwargs: Any,
    ) -> "TFRagPreTrainedModel":
        """Build from a pretrained question encoder and generator (Hugging Face checkpoints); kwargs update the
        RagConfig."""
        paths = {"question_encoder": question_encoder_pretrained_model_name_or_path,
                 "generator": generator_pretrained_model_name_or_path}
        configs = {part: AutoConfig.from_pretrained(path) for part, path in paths.items()}
        config = kwargs.pop("config", None) or RagConfig.from_question_encoder_generator_configs(
            configs["question_encoder"], configs["generator"], **kwargs
        )
        model = cls(config=config, retriever=retriever)
        model.load_state_dict(
            {f"{part}.{k}": v for part, path in paths.items() for k, v in read_state_dict(path).items()}
        )
        return model

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write config.json and model.safetensors, loadable by the PyTorch classes; atomic per file."""

        def write(tmp) -> None:
            self.config.save_pretrained(tmp)
            write_safetensors(tmp, self.state_variables())

        save_staged(save_directory, write)


class TFRagModel(TFRagPreTrainedModel):
    """Encode the question, retrieve k passages, run the generator on each (passage + question)."""

    def __init__(
        self,
        config: PreTrainedConfig | None = None,
        question_encoder: tf.Module | None = None,
        generator: TFSeq2SeqLM | None = None,
        retriever: Any = None,
        **kwargs: Any,
    ):
        super().__init__()
        if config is None:
            if question_encoder is None or generator is None:
                raise RagInputError("Give either a RagConfig or both a question_encoder and a generator.")
            config = RagConfig.from_question_encoder_generator_configs(question_encoder.config, generator.config, **kwargs)
        self.config = config
        self.question_encoder = question_encoder if question_encoder is not None else build_question_encoder(config.question_encoder)
        self.generator = generator if generator is not None else build_generator(config.generator)
        self.retriever = retriever

    @property
    def _rag(self) -> "TFRagModel":
        return self

    def _encode(self, input_ids, attention_mask, output_attentions=False, output_hidden_states=False,
                training=False) -> tuple[tf.Tensor, TFEncoderOutput]:
        """Pooled question vectors (B, d) and the encoder output."""
        outputs = self.question_encoder(
            input_ids, attention_mask, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, training=training,
        )
        pooling = resolve_pooling(self.config.question_encoder_pooling, self.config.question_encoder.model_type)
        return pool(outputs, attention_mask, pooling), outputs

    def encode_question(self, input_ids: Any, attention_mask: Any = None) -> tf.Tensor:
        """The question vectors q: (B, L) token ids -> (B, d)."""
        return self._encode(as_tensor(input_ids), as_tensor(attention_mask))[0]

    def retrieve_contexts(self, input_ids: Any, attention_mask: Any = None, n_docs: int | None = None,
                          prefix: str | None = None) -> TFRetrievedContexts:
        """Encode the questions and retrieve ``n_docs`` passages each (generator inputs and doc_scores)."""
        input_ids = as_tensor(input_ids)
        question_hidden = self.encode_question(input_ids, attention_mask)
        return self._retrieve(input_ids, question_hidden, n_docs or self.config.n_docs, prefix)

    def _retrieve(self, input_ids: tf.Tensor, question_hidden: tf.Tensor, n_docs: int,
                  prefix: str | None) -> TFRetrievedContexts:
        """Call the (NumPy) retriever with q (B, d) and score its passages."""
        if self.retriever is None:
            raise RagInputError(
                "No retriever is set: call set_retriever(retriever), or pass context_input_ids, "
                "context_attention_mask and doc_scores yourself."
            )
        if prefix is None:
            prefix = getattr(self.config.generator, "prefix", None)
        out = self.retriever(
            input_ids.numpy(), question_hidden.numpy().astype(np.float32), prefix=prefix, n_docs=n_docs,
            return_tensors="np",
        )
        doc_embeds = tf.cast(as_tensor(out["retrieved_doc_embeds"]), question_hidden.dtype)  # (B, k, d)
        if doc_embeds.shape[-1] != question_hidden.shape[-1]:
            raise ValueError(
                f"The retrieved passage embeddings have dimension {doc_embeds.shape[-1]} but the question vector "
                f"has {question_hidden.shape[-1]}; use an index built for this question encoder."
            )
        doc_scores = tf.einsum("bd,bkd->bk", question_hidden, doc_embeds)  # (B, k)
        return TFRetrievedContexts(
            as_tensor(out["context_input_ids"]), as_tensor(out["context_attention_mask"]), doc_scores, doc_embeds,
            as_tensor(out["doc_ids"]), question_hidden,
        )

    def call(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        encoder_outputs: Any = None,
        decoder_input_ids: Any = None,
        decoder_attention_mask: Any = None,
        cache: Cache | None = None,
        doc_scores: Any = None,
        context_input_ids: Any = None,
        context_attention_mask: Any = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        output_retrieved: bool | None = None,
        n_docs: int | None = None,
        training: bool = False,
        **kwargs: Any,
    ) -> TFRetrievAugLMOutput:
        """Same arguments and outputs as RagModel.forward (plus Keras' ``training``)."""
        c = self.config
        n_docs = n_docs if n_docs is not None else c.n_docs
        use_cache = use_cache if use_cache is not None else c.use_cache
        output_attentions = output_attentions if output_attentions is not None else c.output_attentions
        output_hidden_states = output_hidden_states if output_hidden_states is not None else c.output_hidden_states
        output_retrieved = output_retrieved if output_retrieved is not None else c.output_retrieved
        input_ids, attention_mask, doc_scores = as_tensor(input_ids), as_tensor(attention_mask), as_tensor(doc_scores)
        context_input_ids, context_attention_mask = as_tensor(context_input_ids), as_tensor(context_attention_mask)

        contexts_given = context_input_ids is not None and context_attention_mask is not None and doc_scores is not None
        has_to_retrieve = self.retriever is not None and not contexts_given and encoder_outputs is None
        question_outputs = retrieved = None
        if has_to_retrieve:
            question_hidden, question_outputs = self._encode(
                input_ids, attention_mask, output_attentions, output_hidden_states, training
            )
            retrieved = self._retrieve(input_ids, question_hidden, n_docs, prefix=None)
            context_input_ids, context_attention_mask = retrieved.context_input_ids, retrieved.context_attention_mask
            doc_scores = retrieved.doc_scores
        elif encoder_outputs is None and not contexts_given:
            raise RagInputError(
                "No retriever is set, so context_input_ids, context_attention_mask and doc_scores must be passed; "
                "or set one with set_retriever(...)."
            )
        if doc_scores is None:
            raise RagInputError("doc_scores (batch_size, n_docs) must be passed together with encoder_outputs.")
        rows = context_input_ids.shape[0] if context_input_ids is not None else encoder_outputs[0].shape[0]
        if rows % n_docs != 0 or tuple(doc_scores.shape) != (rows // n_docs, n_docs):
            raise RagInputError(
                f"{rows} context rows and doc_scores {tuple(doc_scores.shape)} do not fit n_docs={n_docs}: contexts "
                "must be (batch_size * n_docs, L) and doc_scores (batch_size, n_docs)."
            )

        if decoder_input_ids is not None:  # one copy of the target per passage: (B, T) -> (B*k, T)
            decoder_input_ids = tf.repeat(as_tensor(decoder_input_ids), n_docs, axis=0)
        if decoder_attention_mask is not None:
            decoder_attention_mask = tf.repeat(as_tensor(decoder_attention_mask), n_docs, axis=0)

        gen = self.generator(
            input_ids=context_input_ids, attention_mask=context_attention_mask, encoder_outputs=encoder_outputs,
            decoder_input_ids=decoder_input_ids, decoder_attention_mask=decoder_attention_mask, cache=cache,
            use_cache=use_cache, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            training=training,
        )
        show = retrieved is not None and output_retrieved
        return TFRetrievAugLMOutput(
            logits=gen.logits,
            doc_scores=doc_scores,
            cache=gen.cache,
            retrieved_doc_embeds=retrieved.retrieved_doc_embeds if show else None,
            retrieved_doc_ids=retrieved.doc_ids if show else None,
            context_input_ids=context_input_ids if show else None,
            context_attention_mask=context_attention_mask if show else None,
            question_encoder_last_hidden_state=retrieved.question_hidden if retrieved is not None else None,
            question_enc_hidden_states=question_outputs.hidden_states if question_outputs is not None else None,
            question_enc_attentions=question_outputs.attentions if question_outputs is not None else None,
            generator_enc_last_hidden_state=gen.encoder_last_hidden_state,
            generator_enc_hidden_states=gen.encoder_hidden_states,
            generator_enc_attentions=gen.encoder_attentions,
            generator_dec_hidden_states=gen.decoder_hidden_states,
            generator_dec_attentions=gen.decoder_attentions,
            generator_cross_attentions=gen.cross_attentions,
        )
