"""Bad input gives a ValueError that names the problem and the fix, not a deep torch stack trace.

Where transformers' RAG asserts instead, the ValueError is a ``RagInputError``, also an AssertionError.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import pytest
import torch

import ragmodels
from ragmodels import RagTokenForGeneration
from ragmodels.errors import RagInputError

from .conftest import answer_labels


@pytest.fixture()
def given(rag_pair, questions):
    """Contexts and doc_scores retrieved for the test questions (B=3, k=3)."""
    contexts = rag_pair("token").ours.rag.retrieve_contexts(**questions)
    return {
        "context_input_ids": contexts.context_input_ids,
        "context_attention_mask": contexts.context_attention_mask,
        "doc_scores": contexts.doc_scores.detach(),
    }


@contextmanager
def no_retriever(model):
    retriever = model.retriever
    model.set_retriever(None)
    try:
        yield model
    finally:
        model.set_retriever(retriever)


def without_retriever(call):
    """The same call on a model that has no retriever (restored afterwards)."""

    def run(model, *args):
        with no_retriever(model):
            return call(model, *args)

    return run


CASES = {
    "contexts_not_multiple_of_n_docs": (
        lambda m, q, g, lab: m(**{**g, "context_input_ids": g["context_input_ids"][:-1],
                                  "context_attention_mask": g["context_attention_mask"][:-1]}, labels=lab),
        r"first dimension of context_input_ids \(8\) must be a multiple of n_docs=3",
    ),
    "doc_scores_shape": (
        lambda m, q, g, lab: m(**{**g, "doc_scores": g["doc_scores"][:, :2]}, labels=lab),
        r"doc_scores has shape \(3, 2\) but must be \(batch_size, n_docs\) = \(3, 3\)",
    ),
    "mask_shape": (
        lambda m, q, g, lab: m(**{**g, "context_attention_mask": g["context_attention_mask"][:, :-1]}, labels=lab),
        r"context_attention_mask has shape .* must match",
    ),
    "empty_input_ids": (
        lambda m, q, g, lab: m(input_ids=q["input_ids"][:, :0], attention_mask=q["attention_mask"][:, :0], labels=lab),
        r"input_ids must be a non-empty",
    ),
    "no_retriever_no_contexts": (
        without_retriever(lambda m, q, g, lab: m(**q, labels=lab)),
        r"No retriever is set, so context_input_ids, context_attention_mask, doc_scores must be passed",
    ),
    "no_retriever_partial_contexts": (
        without_retriever(lambda m, q, g, lab: m(context_input_ids=g["context_input_ids"], labels=lab)),
        r"No retriever is set, so context_attention_mask, doc_scores must be passed",
    ),
    "retrieve_without_retriever": (
        without_retriever(lambda m, q, g, lab: m.rag.retrieve_contexts(**q)),
        r"No retriever is set: call set_retriever",
    ),
    "cache_twice": (
        lambda m, q, g, lab: m(**g, labels=lab, cache=object(), past_key_values=object()),
        r"`cache` or as `past_key_values`, not both",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_clear_value_error(rag_pair, questions, given, case):
    pair = rag_pair("token")
    call, message = CASES[case]
    with pytest.raises(ValueError, match=message):
        call(pair.ours, questions, given, answer_labels(pair.generator_tokenizer))


def test_labels_need_a_generator_pad_token(rag_pair, given):
    pair = rag_pair("token")
    config = copy.deepcopy(pair.ours.config)
    config.generator.pad_token_id = None
    model = RagTokenForGeneration(config)
    with pytest.raises(ValueError, match=r"pad_token_id is None"):
        model(**given, labels=answer_labels(pair.generator_tokenizer))


def test_retrieval_vector_size_mismatch(rag_pair, questions, make_retriever, bart_tokenizer):
    """An index of 32-d passages with a 16-d question encoder."""
    from conftest import tiny_rag_config

    config = tiny_rag_config(bart_tokenizer)
    config.question_encoder.hidden_size = 16
    retriever = make_retriever(tiny_rag_config(bart_tokenizer), bart_tokenizer)
    model = RagTokenForGeneration(config, retriever=retriever)
    with pytest.raises(ValueError, match=r"retrieval_vector_size .* does not match"):
        model.rag.retrieve_contexts(**questions)


def test_question_vector_dim_reaches_index_unchanged(rag_pair, questions):
    """Sanity for the case above: the matching 32-d setup retrieves fine."""
    contexts = rag_pair("token").ours.rag.retrieve_contexts(**questions)
    assert contexts.doc_scores.shape == (3, 3) and torch.isfinite(contexts.doc_scores).all()


class ShortEmbeddingRetriever:
    """A duck-typed retriever (no index attribute) whose passage embeddings are 16-d."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, question_input_ids, question_hidden_states, prefix=None, n_docs=None, return_tensors=None):
        out = self.inner(question_input_ids, question_hidden_states, prefix=prefix, n_docs=n_docs, return_tensors="pt")
        out["retrieved_doc_embeds"] = out["retrieved_doc_embeds"][..., :16]
        return out


def test_retrieved_embedding_size_mismatch_without_index_info(rag_pair, questions):
    pair = rag_pair("token")
    with no_retriever(pair.ours):
        pair.ours.set_retriever(ShortEmbeddingRetriever(pair.retriever))
        with pytest.raises(ValueError, match=r"retrieval_vector_size of the index \(16\) does not match"):
            pair.ours(**questions, labels=answer_labels(pair.generator_tokenizer))


# Cases where transformers' RAG asserts: code written for it catches AssertionError, ours a ValueError.
REFERENCE_ASSERTS = ["contexts_not_multiple_of_n_docs", "doc_scores_shape", "no_retriever_no_contexts",
                     "no_retriever_partial_contexts", "retrieve_without_retriever"]


@pytest.mark.parametrize("case", REFERENCE_ASSERTS)
def test_where_the_reference_asserts_the_error_is_also_an_assertion_error(rag_pair, questions, given, case):
    pair = rag_pair("token")
    call, message = CASES[case]
    with pytest.raises(AssertionError, match=message) as error:
        call(pair.ours, questions, given, answer_labels(pair.generator_tokenizer))
    assert isinstance(error.value, ValueError) and type(error.value) is RagInputError


@pytest.mark.parametrize("head", ["token", "sequence"])
def test_generate_with_a_wrong_n_docs_is_an_assertion_error_too(rag_pair, given, head):
    """Contexts of 3 passages per question given with n_docs=2: the reference's generate asserts."""
    with pytest.raises(AssertionError, match="must be a multiple of n_docs=2"):
        rag_pair(head).ours.generate(**given, n_docs=2, num_beams=1, max_new_tokens=2)


def test_the_error_class_is_both_kinds():
    assert issubclass(RagInputError, ValueError) and issubclass(RagInputError, AssertionError)
    assert ragmodels.RagInputError is RagInputError
