"""RagTokenizer: a question-encoder tokenizer for questions and a generator tokenizer for answers.

Saved and loaded in the reference's layout: ``question_encoder_tokenizer/`` and
``generator_tokenizer/`` sub-folders of one checkpoint folder (local or on the Hub).
"""

from __future__ import annotations

import os
from typing import Any

from transformers import AutoTokenizer, BatchEncoding, PreTrainedTokenizerBase

from ._io import save_staged
from .config import RagConfig

QUESTION_ENCODER_SUBFOLDER = "question_encoder_tokenizer"
GENERATOR_SUBFOLDER = "generator_tokenizer"


class RagTokenizer:
    """Pair of tokenizers; ``__call__`` tokenizes questions, ``text_target`` answers (as ``labels``)."""

    def __init__(self, question_encoder: PreTrainedTokenizerBase, generator: PreTrainedTokenizerBase):
        self.question_encoder = question_encoder
        self.generator = generator
        self.current_tokenizer = self.question_encoder

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write both tokenizers into their sub-folders; an interrupted save leaves old files intact."""

        def write(tmp) -> None:
            self.question_encoder.save_pretrained(os.path.join(tmp, QUESTION_ENCODER_SUBFOLDER))
            self.generator.save_pretrained(os.path.join(tmp, GENERATOR_SUBFOLDER))

        save_staged(save_directory, write)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> "RagTokenizer":
        """Load from a folder or Hub id holding the two tokenizer sub-folders."""
        config = kwargs.pop("config", None)
        if config is None:
            config = RagConfig.from_pretrained(pretrained_model_name_or_path, **_hub_kwargs(kwargs))
        question_encoder = AutoTokenizer.from_pretrained(
            pretrained_model_name_or_path,
            config=config.question_encoder,
            subfolder=QUESTION_ENCODER_SUBFOLDER,
            **kwargs,
        )
        generator = AutoTokenizer.from_pretrained(
            pretrained_model_name_or_path, config=config.generator, subfolder=GENERATOR_SUBFOLDER, **kwargs
        )
        return cls(question_encoder=question_encoder, generator=generator)

    def __call__(self, text: Any = None, *args: Any, text_target: Any = None, **kwargs: Any) -> BatchEncoding:
        """Tokenize questions with the current tokenizer and, if given, answers as ``labels``.

        ``text_target`` always goes through the generator tokenizer, whose ids the model predicts.
        """
        if text is None and text_target is None:
            raise ValueError("Give the questions (text=...) and/or the answers (text_target=...) to tokenize.")
        if text is None:
            return self.generator(*args, text=text_target, **kwargs)
        encoding = self.current_tokenizer(text, *args, **kwargs)
        if text_target is not None:
            encoding["labels"] = self.generator(text=text_target, **kwargs)["input_ids"]
        return encoding

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.generator.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.generator.decode(*args, **kwargs)

    def _switch_to_input_mode(self) -> None:
        self.current_tokenizer = self.question_encoder

    def _switch_to_target_mode(self) -> None:
        self.current_tokenizer = self.generator


def _hub_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    keys = ("cache_dir", "force_download", "local_files_only", "token", "revision")
    return {k: kwargs[k] for k in keys if k in kwargs}
