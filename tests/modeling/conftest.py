"""Modeling fixtures: our models next to the reference's (transformers.models.rag, a test-only oracle)
with identical weights and one shared retriever, built once per session and per combination."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import transformers

from conftest import ANSWERS, QUESTIONS, tiny_rag_config
from ragmodels import RagModel, RagSequenceForGeneration, RagTokenForGeneration

CLASSES = {
    "model": (RagModel, transformers.RagModel),
    "token": (RagTokenForGeneration, transformers.RagTokenForGeneration),
    "sequence": (RagSequenceForGeneration, transformers.RagSequenceForGeneration),
}


@dataclass
class Pair:
    ours: Any
    ref: Any
    generator_tokenizer: Any
    retriever: Any

    @contextmanager
    def configured(self, **settings: Any):
        """Temporarily set RagConfig fields on both models (e.g. label_smoothing)."""
        saved = {key: getattr(self.ours.config, key) for key in settings}
        for model in (self.ours, self.ref):
            for key, value in settings.items():
                setattr(model.config, key, value)
        try:
            yield self
        finally:
            for model in (self.ours, self.ref):
                for key, value in saved.items():
                    setattr(model.config, key, value)


def reference_copy(ours: Any, reference_class: type) -> Any:
    """The reference model with our weights (strict: every state-dict key must match)."""
    ref = reference_class(transformers.RagConfig(**ours.config.to_dict()))
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ref.eval()


@pytest.fixture(scope="session")
def rag_pair(bart_tokenizer, t5_tokenizer, make_retriever):
    """Factory (head, generator, question_encoder) -> Pair, cached: tests must restore what they change."""
    cache: dict[tuple, Pair] = {}

    def build(head: str = "token", generator: str = "bart", question_encoder: str = "dpr", **overrides: Any) -> Pair:
        key = (head, generator, question_encoder, tuple(sorted(overrides.items())))
        if key not in cache:
            tokenizer = {"bart": bart_tokenizer, "t5": t5_tokenizer}[generator]
            config = tiny_rag_config(tokenizer, generator, question_encoder, **overrides)
            ours_class, ref_class = CLASSES[head]
            torch.manual_seed(0)
            ours = ours_class(config).eval()
            ref = reference_copy(ours, ref_class)
            retriever = make_retriever(config, tokenizer)
            for model in (ours, ref):
                (model if head == "model" else model.rag).retriever = retriever
            cache[key] = Pair(ours, ref, tokenizer, retriever)
        return cache[key]

    return build


@pytest.fixture(scope="session")
def questions(question_tokenizer) -> dict[str, torch.Tensor]:
    """The test questions, padded (they differ in length): input_ids and attention_mask (3, L)."""
    encoding = question_tokenizer(QUESTIONS, padding=True, return_tensors="pt")
    assert not encoding["attention_mask"].all(), "the questions should need padding"
    return {"input_ids": encoding["input_ids"], "attention_mask": encoding["attention_mask"]}


def answer_labels(tokenizer: Any, start_token_id: int | None = None) -> torch.Tensor:
    """The answers as padded generator ids (3, T); ``start_token_id`` prepends a decoder-start column."""
    labels = tokenizer(ANSWERS, padding=True, return_tensors="pt")["input_ids"]
    if start_token_id is not None:
        labels = torch.cat([torch.full_like(labels[:, :1], start_token_id), labels], dim=1)
    return labels
