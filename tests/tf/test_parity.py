"""With identical weights, the TF heads agree with ragmodels' PyTorch heads: loss, logits, doc_scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("tensorflow")
from .conftest import assert_close, make_pair

from conftest import tiny_rag_config

SHARED = {"labels": {}, "n_docs=2": {"n_docs": 2}, "reduce+smoothing": {"reduce_loss": True}}
CASES = [(head, name, kwargs) for head in ("sequence", "token") for name, kwargs in SHARED.items()] + [
    ("sequence", "exclude_bos", {"exclude_bos_score": True}),
    ("token", "marginalize", {"do_marginalize": True}),
]


@pytest.mark.parametrize(("head", "case", "kwargs"), CASES, ids=[f"{h}-{c}" for h, c, _ in CASES])
def test_forward_with_retriever_matches_pytorch(head, case, kwargs, rag_config, retriever, questions, answers):
    config = rag_config
    if case == "reduce+smoothing":
        config = rag_config.__class__.from_dict({**rag_config.to_dict(), "label_smoothing": 0.1})
    torch_model, tf_model = make_pair(head, config, retriever)
    assert (answers == config.generator.pad_token_id).any()  # padded labels are part of the check
    with torch.no_grad():
        expected = torch_model(
            input_ids=torch.as_tensor(questions["input_ids"]), attention_mask=torch.as_tensor(questions["attention_mask"]),
            labels=torch.as_tensor(answers), output_retrieved=True, **kwargs,
        )
    got = tf_model(
        input_ids=questions["input_ids"], attention_mask=questions["attention_mask"], labels=answers,
        output_retrieved=True, **kwargs,
    )
    for name in ("loss", "logits", "doc_scores", "question_encoder_last_hidden_state", "retrieved_doc_embeds"):
        assert_close(getattr(got, name), getattr(expected, name))
    np.testing.assert_array_equal(got.context_input_ids.numpy(), expected.context_input_ids.numpy())
    assert got.doc_scores.shape == (3, kwargs.get("n_docs", config.n_docs))


@pytest.mark.parametrize("head", ["sequence", "token"])
def test_forward_with_given_contexts_matches_pytorch(head, rag_config, retriever, questions, answers):
    torch_model, tf_model = make_pair(head, rag_config)
    ctx = retriever(questions["input_ids"], np.random.default_rng(1).standard_normal((3, 32)).astype(np.float32),
                    n_docs=rag_config.n_docs, return_tensors="np")
    doc_scores = np.random.default_rng(2).standard_normal((3, rag_config.n_docs)).astype(np.float32)
    inputs = {"context_input_ids": ctx["context_input_ids"], "context_attention_mask": ctx["context_attention_mask"],
              "doc_scores": doc_scores, "labels": answers}
    with torch.no_grad():
        expected = torch_model(**{k: torch.as_tensor(v) for k, v in inputs.items()})
    got = tf_model(**inputs)
    assert_close(got.loss, expected.loss)
    assert_close(got.logits, expected.logits)
    assert got.question_encoder_last_hidden_state is None


def test_bert_question_encoder_with_mean_pooling(bart_tokenizer, make_retriever, questions, answers):
    config = tiny_rag_config(bart_tokenizer, question_encoder="bert", question_encoder_pooling="mean")
    torch_model, tf_model = make_pair("token", config, make_retriever(config, bart_tokenizer))
    with torch.no_grad():
        expected = torch_model(input_ids=torch.as_tensor(questions["input_ids"]),
                               attention_mask=torch.as_tensor(questions["attention_mask"]), labels=torch.as_tensor(answers))
    got = tf_model(input_ids=questions["input_ids"], attention_mask=questions["attention_mask"], labels=answers)
    assert_close(got.doc_scores, expected.doc_scores)
    assert_close(got.loss, expected.loss)
