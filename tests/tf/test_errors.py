"""TF heads: where the reference asserts on its inputs, the error is a RagInputError (ValueError and AssertionError)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")
import ragmodels
from ragmodels.errors import RagInputError


@pytest.fixture(scope="module")
def contexts(rag_config, retriever, questions):
    """Contexts of n_docs passages for the three test questions, and random doc_scores (3, n_docs)."""
    q = np.random.default_rng(1).standard_normal((3, 32)).astype(np.float32)
    ctx = retriever(questions["input_ids"], q, n_docs=rag_config.n_docs, return_tensors="np")
    doc_scores = np.random.default_rng(2).standard_normal((3, rag_config.n_docs)).astype(np.float32)
    return {"context_input_ids": ctx["context_input_ids"], "context_attention_mask": ctx["context_attention_mask"],
            "doc_scores": doc_scores}


@pytest.mark.parametrize("head", ["TFRagTokenForGeneration", "TFRagSequenceForGeneration"])
def test_a_wrong_n_docs_is_an_assertion_error_with_a_clear_message(head, rag_config, contexts, answers):
    model = getattr(ragmodels, head)(rag_config)
    wrong = rag_config.n_docs + 1  # rag_config.n_docs passages per question were retrieved
    with pytest.raises(AssertionError, match=f"do not fit n_docs={wrong}") as error:
        model(**contexts, labels=answers, n_docs=wrong)
    assert type(error.value) is RagInputError and isinstance(error.value, ValueError)


def test_no_retriever_and_no_contexts_is_an_assertion_error_too(rag_config, questions, answers):
    model = ragmodels.TFRagTokenForGeneration(rag_config)
    with pytest.raises(AssertionError, match="No retriever is set"):
        model(input_ids=questions["input_ids"], labels=answers)
