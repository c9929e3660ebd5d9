"""Retrieval fixtures: RAG configs for the tiny sub-models, question batches, and reference retrievers.

The reference (``transformers.RagRetriever``) is only a test oracle. It calls ``set_format`` on the
dataset it is given, so it always gets its own copy of the shared passage dataset.
"""

from __future__ import annotations

import numpy as np
import pytest
from transformers import RagRetriever as ReferenceRetriever

from ragmodels.config import RagConfig
from conftest import DIM, QUESTIONS, tiny_bart_config, tiny_dpr_config, tiny_t5_config


def rag_config(generator_tokenizer, generator: str = "bart", **overrides) -> RagConfig:
    """A RagConfig for the tiny DPR question encoder and a tiny BART or T5 generator."""
    generator_config = (tiny_bart_config if generator == "bart" else tiny_t5_config)(generator_tokenizer)
    defaults = dict(index_name="custom", retrieval_vector_size=DIM, n_docs=4, max_combined_length=48)
    return RagConfig.from_question_encoder_generator_configs(
        tiny_dpr_config(), generator_config, **{**defaults, **overrides}
    )


def kb_leftovers(kb_path) -> list[str]:
    """Names beside a knowledge-base folder that a build or update left behind (its two lock files excepted)."""
    locks = {f".{kb_path.name}.lock", f".{kb_path.name}.publish-lock"}
    return sorted(p.name for p in kb_path.parent.iterdir() if p.name.startswith(f".{kb_path.name}.") and p.name not in locks)


def reference_copy(dataset):
    """A copy of an indexed dataset (with a copy of its FAISS index) that the reference may re-format."""
    return dataset.with_format(None)


def query_vectors(n: int = len(QUESTIONS), seed: int = 1) -> np.ndarray:
    """Deterministic question vectors, float32 (n, DIM)."""
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


@pytest.fixture(scope="session")
def question_ids(question_tokenizer):
    """The shared questions tokenized by the question encoder's tokenizer, padded: list of lists (bs, L)."""
    return question_tokenizer(QUESTIONS, padding=True)["input_ids"]


@pytest.fixture(params=["bart", "t5"])
def generator(request, bart_tokenizer, t5_tokenizer):
    """(generator kind, its tokenizer)."""
    return request.param, {"bart": bart_tokenizer, "t5": t5_tokenizer}[request.param]


@pytest.fixture
def reference_retriever():
    """Build the reference retriever over a dataset: f(config, qtok, gtok, dataset)."""

    def make(config, question_tokenizer, generator_tokenizer, dataset):
        from transformers.models.rag.retrieval_rag import CustomHFIndex

        index = CustomHFIndex(config.retrieval_vector_size, reference_copy(dataset))
        return ReferenceRetriever(config, question_tokenizer, generator_tokenizer, index=index)

    return make
