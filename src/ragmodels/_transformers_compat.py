"""Every transformers version difference and private transformers API ragmodels relies on, in one place.

ragmodels runs beside transformers 4.56 (the last release with TensorFlow models) up to the newest 5.x.
What differs, decided by looking at the installed transformers (its features; its version only for
the PyTorch models' tested minimum):

- the config base class: ``PreTrainedConfig`` (5.x, a strict dataclass: fields + ``__post_init__``) or
  ``PretrainedConfig`` (4.x, keyword ``__init__``). ``config_class`` defines a RagConfig on either.
- the decoder cache's name in model calls and outputs: ``cache`` (5.24 on) or ``past_key_values``
  (``CACHE_KWARG``, ``cache_kwargs``, ``output_cache``).
- the PyTorch models drive 5.x's generation internals, so ``require_torch_models`` stops them, when built
  or loaded, on an older transformers (importing them still works there).

Private APIs, called only through this module so ``tests/compat/`` can check each one exists and
behaves as we use it: GenerationMixin's ``_prepare_generation_config`` / ``_prepare_special_tokens`` /
``_prepare_generated_length`` / ``_get_logits_processor`` / ``_get_stopping_criteria`` and its loops by
``GENERATION_MODES_MAPPING`` (generation/loop.py drives transformers' own decoding loops), and
``GenerationConfig._eos_token_tensor``. Also relied on (tested there, used in place): the cache layers
(``DynamicLayer.lazy_initialization`` / ``keys`` / ``values``, ``EncoderDecoderCache.is_updated``) and
``PreTrainedModel``'s ``_supports_sdpa`` / ``_supports_flash_attn`` flags.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import transformers
from packaging.version import Version
from transformers.modeling_outputs import Seq2SeqLMOutput

TRANSFORMERS_VERSION: str = transformers.__version__

try:  # transformers 5.x
    from transformers import PreTrainedConfig
except ImportError:  # transformers 4.x
    from transformers import PretrainedConfig as PreTrainedConfig

#: the config base class is a (strict) dataclass: fields are declared, validation runs in __post_init__
DATACLASS_CONFIGS: bool = dataclasses.is_dataclass(PreTrainedConfig)

#: keyword and output field of the decoder cache in PyTorch model calls
CACHE_KWARG: str = "cache" if "cache" in {f.name for f in dataclasses.fields(Seq2SeqLMOutput)} else "past_key_values"


C = TypeVar("C", bound=type)


def config_class(cls: C) -> C:
    """Make a config class from field declarations (``name: type = default``) and a ``__post_init__``.

    5.x: huggingface_hub's ``strict`` dataclass, as transformers' own configs. 4.x: an ``__init__(**kwargs)``
    that hands every field and extra kwarg to ``PretrainedConfig.__init__`` (which stores unknown ones as
    attributes) and then runs ``__post_init__``. Subclasses call ``super().__post_init__(**kwargs)``;
    on 4.x that lands on ``ConfigBase.__post_init__``, which has nothing left to do.
    """
    if DATACLASS_CONFIGS:
        from huggingface_hub.dataclasses import strict

        return strict(cls)
    defaults = {name: getattr(cls, name) for name in cls.__dict__.get("__annotations__", {})}

    def __init__(self, **kwargs: Any) -> None:
        values = {name: kwargs.pop(name, default) for name, default in defaults.items()}
        PreTrainedConfig.__init__(self, **values, **kwargs)
        self.__post_init__()

    cls.__init__ = __init__
    return cls


if DATACLASS_CONFIGS:
    ConfigBase = PreTrainedConfig
else:

    class ConfigBase(PreTrainedConfig):
        """transformers 4.x's config class, with the ``__post_init__`` that 5.x's has."""

        def __post_init__(self, **kwargs: Any) -> None:
            pass


def cache_kwargs(cache: Any) -> dict[str, Any]:
    """The decoder cache as a keyword of a transformers model call: ``model(..., **cache_kwargs(cache))``."""
    return {CACHE_KWARG: cache}


def output_cache(output: Any) -> Any:
    """The decoder cache of a transformers model output (``Seq2SeqLMOutput`` and the like)."""
    return getattr(output, CACHE_KWARG)


#: the oldest transformers our PyTorch models are tested on (tests/compat, the range in the README)
TORCH_MODELS_MIN_VERSION = "5.10.0"


def torch_models_supported() -> bool:
    """Whether the installed transformers is one our PyTorch models run on (5.x, from the tested minimum)."""
    return Version(TRANSFORMERS_VERSION) >= Version(TORCH_MODELS_MIN_VERSION)


def require_torch_models(what: str) -> None:
    """Raise a clear error where our PyTorch models cannot run with the installed transformers."""
    if not torch_models_supported():
        raise ImportError(
            f"{what} needs transformers>={TORCH_MODELS_MIN_VERSION} (it drives transformers 5.x's generation and "
            f"model API); this environment has transformers {TRANSFORMERS_VERSION}. RagConfig, RagTokenizer, "
            "RagRetriever and the TF classes work with it; for the PyTorch models run "
            f"`pip install 'transformers>={TORCH_MODELS_MIN_VERSION}'`."
        )


# --- GenerationMixin's private steps, as generation/loop.py drives them (PyTorch; imported lazily) ----------
def prepare_generation_config(model: Any, generation_config: Any, kwargs: dict[str, Any]) -> tuple[Any, dict]:
    """(the effective GenerationConfig: model's, updated by generation_config and kwargs; kwargs left over)."""
    return model._prepare_generation_config(generation_config, **kwargs)


def prepare_special_tokens(model: Any, generation_config: Any) -> None:
    """Fill generation_config's special-token tensors (``eos_token_tensor`` and the like) in place."""
    model._prepare_special_tokens(generation_config, False)


def prepare_generated_length(model: Any, generation_config: Any, has_default_max_length: bool,
                             has_default_min_length: bool) -> None:
    """Turn max/min_new_tokens into max/min_length of a decoder that starts from one token, in place."""
    model._prepare_generated_length(
        generation_config,
        has_default_max_length=has_default_max_length,
        has_default_min_length=has_default_min_length,
        model_input_name="input_ids",
        input_ids_length=1,
        inputs_tensor=None,
    )


def logits_processors(model: Any, generation_config: Any, input_ids_seq_length: int, encoder_input_ids: Any,
                      prefix_allowed_tokens_fn: Any, logits_processor: Any, device: Any) -> Any:
    """The LogitsProcessorList generate() would build for generation_config, plus the given ones."""
    return model._get_logits_processor(
        generation_config=generation_config,
        input_ids_seq_length=input_ids_seq_length,
        encoder_input_ids=encoder_input_ids,
        prefix_allowed_tokens_fn=prefix_allowed_tokens_fn,
        logits_processor=logits_processor,
        device=device,
    )


def stopping_criteria(model: Any, generation_config: Any, criteria: Any) -> Any:
    """The StoppingCriteriaList generate() would build for generation_config, plus the given ones."""
    return model._get_stopping_criteria(generation_config=generation_config, stopping_criteria=criteria)


def decoding_loop(mode: Any) -> Any:
    """GenerationMixin's loop method (greedy/sample or beam search) of a GenerationMode."""
    from transformers import GenerationMixin
    from transformers.generation.utils import GENERATION_MODES_MAPPING

    return getattr(GenerationMixin, GENERATION_MODES_MAPPING[mode])


def eos_token_tensor(generation_config: Any) -> Any:
    """The EOS ids tensor that ``prepare_special_tokens`` set on generation_config (None without EOS)."""
    return generation_config._eos_token_tensor
