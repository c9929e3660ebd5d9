"""RagConfig: the one configuration object shared by tokenizer, retriever, models (PyTorch and TF).

It reads and writes the same ``config.json`` as ``transformers.RagConfig`` (``model_type: "rag"``),
with the nested ``question_encoder`` and ``generator`` configs. One field is ours:
``question_encoder_pooling`` says how a plain transformers encoder (BERT, MiniLM, ...) turns its
token states into the question vector. It is ignored by the reference and defaults to the
reference's behaviour for DPR encoders. Another, ``copy_from_context`` (default False: the reference's
model), makes each passage's next-token distribution a softmax over the tokens that continue a copy from it
(``ragmodels.generation.context_copy``): the PyTorch heads' loss and generation follow it.
"""

from __future__ import annotations

from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from ._transformers_compat import ConfigBase, PreTrainedConfig, config_class

QUESTION_ENCODER_POOLINGS = ("pooler", "cls", "mean")


@config_class
class RagConfig(ConfigBase):
    """Configuration of a RAG model; every field of the reference, same names, same defaults.

    question_encoder_pooling: "pooler" (the model's own pooled output, as DPR), "cls" (first token
    state) or "mean" (attention-masked mean of token states). ``None`` means "pooler" for models that
    return a pooled output of the retrieval size (DPR), else "cls".
    """

    model_type = "rag"

    question_encoder: PreTrainedConfig | dict | None = None
    generator: PreTrainedConfig | dict | None = None
    vocab_size: int | None = None
    is_encoder_decoder: bool = True
    prefix: str | None = None
    bos_token_id: int | None = None
    pad_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    decoder_start_token_id: int | None = None
    title_sep: str = " / "
    doc_sep: str = " // "
    n_docs: int = 5
    max_combined_length: int = 300
    retrieval_vector_size: int = 768
    retrieval_batch_size: int = 8
    dataset: str = "wiki_dpr"
    dataset_split: str = "train"
    index_name: str = "compressed"
    index_path: str | None = None
    passages_path: str | None = None
    use_dummy_dataset: bool = False
    reduce_loss: bool = False
    label_smoothing: float = 0.0
    do_deduplication: bool = True
    exclude_bos_score: bool = False
    do_marginalize: bool = False
    output_retrieved: bool = False
    use_cache: bool = True
    dataset_revision: str | None = None
    question_encoder_pooling: str | None = None
    copy_from_context: bool = False

    def __post_init__(self, **kwargs):
        self.question_encoder = _sub_config(self.question_encoder, default_type="dpr")
        self.generator = _sub_config(self.generator, default_type="bart")
        if self.question_encoder_pooling not in (None, *QUESTION_ENCODER_POOLINGS):
            raise ValueError(
                f"question_encoder_pooling={self.question_encoder_pooling!r} is not supported; "
                f"use one of {QUESTION_ENCODER_POOLINGS} (or None for the encoder's default)."
            )
        if self.n_docs < 1:
            raise ValueError(f"n_docs must be a positive number of passages, got {self.n_docs}.")
        super().__post_init__(**kwargs)

    @classmethod
    def from_question_encoder_generator_configs(
        cls, question_encoder_config: PreTrainedConfig, generator_config: PreTrainedConfig, **kwargs
    ) -> "RagConfig":
        """Build a RagConfig from the configs of a question encoder and a generator."""
        return cls(question_encoder=question_encoder_config.to_dict(), generator=generator_config.to_dict(), **kwargs)


def _sub_config(value: PreTrainedConfig | dict | None, default_type: str) -> PreTrainedConfig:
    """Turn a nested config given as dict (as in config.json) into its transformers config class."""
    if value is None:
        return CONFIG_MAPPING[default_type]()
    if isinstance(value, dict):
        model_type = value.get("model_type", default_type)
        if model_type not in CONFIG_MAPPING:
            raise ValueError(
                f"Unknown sub-model type {model_type!r} in the RAG config; it must be a transformers model_type "
                "such as 'dpr', 'bert', 'bart' or 't5'."
            )
        return CONFIG_MAPPING[model_type](**{**value, "model_type": model_type})
    return value
