"""Question encoders: DPR (its own pooler) and plain BERT with mean or CLS pooling."""

from __future__ import annotations

import pytest
import torch
import transformers

from ragmodels.encoding import pool

from .conftest import answer_labels


def test_dpr_question_vector_is_its_pooler_output(rag_pair, questions):
    pair = rag_pair("token")
    with torch.no_grad():
        vector = pair.ours.rag.encode_question(**questions)
        expected = pair.ours.question_encoder(**questions).pooler_output
    assert vector.shape == (3, pair.ours.config.retrieval_vector_size)
    torch.testing.assert_close(vector, expected)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_bert_question_encoder_pooling(rag_pair, questions, pooling):
    """doc_scores = <pooled q, d_i>; given those contexts, the loss equals the reference's."""
    pair = rag_pair("token", question_encoder="bert", question_encoder_pooling=pooling)
    assert isinstance(pair.ours.question_encoder, transformers.BertModel)
    with torch.no_grad():
        contexts = pair.ours.rag.retrieve_contexts(**questions)
        hidden = pair.ours.question_encoder(**questions)
    q = pool(hidden, questions["attention_mask"], pooling)  # (B, d)
    torch.testing.assert_close(contexts.question_hidden, q)
    expected_scores = torch.einsum("bd,bkd->bk", q, contexts.retrieved_doc_embeds)
    torch.testing.assert_close(contexts.doc_scores, expected_scores, atol=1e-5, rtol=1e-5)
    labels = answer_labels(pair.generator_tokenizer)
    given = {
        "context_input_ids": contexts.context_input_ids,
        "context_attention_mask": contexts.context_attention_mask,
        "doc_scores": contexts.doc_scores,
    }
    with torch.no_grad():
        ours, ref = pair.ours(**questions, labels=labels), pair.ref(**given, labels=labels)
    torch.testing.assert_close(ours.loss, ref.loss, atol=1e-5, rtol=1e-5)


def test_mean_and_cls_pooling_differ(rag_pair, questions):
    vectors = [
        rag_pair("token", question_encoder="bert", question_encoder_pooling=p).ours.rag.encode_question(**questions)
        for p in ("mean", "cls")
    ]
    assert (vectors[0] - vectors[1]).abs().max() > 1e-3


def test_context_encoder_training_matches_reference(rag_pair, questions, make_retriever, question_tokenizer):
    """With a trainable context encoder, passages are re-embedded and both encoders get gradients."""
    from conftest import tiny_dpr_config

    pair = rag_pair("token")
    retriever = make_retriever(pair.ours.config, pair.generator_tokenizer)
    retriever.set_ctx_encoder_tokenizer(question_tokenizer)
    torch.manual_seed(1)
    ctx_encoder = transformers.DPRContextEncoder(tiny_dpr_config())
    ours = type(pair.ours)(pair.ours.config)
    ref = type(pair.ref)(pair.ref.config)
    losses = []
    for model in (ours, ref):
        model.load_state_dict(pair.ours.state_dict())
        model.set_retriever(retriever)
        model.eval()
        model.set_context_encoder_for_training(ctx_encoder)
        ctx_encoder.zero_grad()
        loss = model(**questions, labels=answer_labels(pair.generator_tokenizer), reduce_loss=True).loss
        loss.backward()
        losses.append(loss.detach())
        grad = ctx_encoder.ctx_encoder.bert_model.embeddings.word_embeddings.weight.grad
        assert grad is not None and grad.abs().sum() > 0
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=1e-5)
