"""Ours vs the reference (transformers.models.rag) with identical weights: logits, doc_scores, loss."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import transformers

from conftest import N_DOCS
from ragmodels import RetrievAugLMMarginOutput, RetrievAugLMOutput

from .conftest import answer_labels

ATOL = 1e-5


def assert_close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=1e-5)


def run_both(pair, **inputs):
    with torch.no_grad():
        return pair.ours(**inputs), pair.ref(**inputs)


# (head, generator, forward kwargs, config settings, decoder-start column on labels)
CASES = [
    ("token", "bart", {"labels": True}, {}, False),
    ("token", "bart", {}, {}, False),
    ("token", "bart", {"labels": True}, {"label_smoothing": 0.1}, False),
    ("token", "bart", {"labels": True, "reduce_loss": True}, {"label_smoothing": 0.1}, False),
    ("token", "bart", {"labels": True, "n_docs": 2}, {}, False),
    ("token", "bart", {"labels": True, "do_marginalize": True}, {}, False),
    ("token", "bart", {"decoder_input_ids": True, "do_marginalize": True, "n_docs": 4}, {}, False),
    ("token", "t5", {"labels": True}, {"label_smoothing": 0.1}, True),
    ("token", "t5", {"labels": True, "do_marginalize": True, "n_docs": 2}, {}, True),
    ("sequence", "bart", {"labels": True}, {}, False),
    ("sequence", "bart", {}, {}, False),
    ("sequence", "bart", {"labels": True}, {"label_smoothing": 0.1}, False),
    ("sequence", "bart", {"labels": True, "reduce_loss": True}, {"label_smoothing": 0.2}, False),
    ("sequence", "bart", {"labels": True, "exclude_bos_score": True}, {}, True),
    ("sequence", "bart", {"labels": True, "exclude_bos_score": True}, {"label_smoothing": 0.1}, True),
    ("sequence", "bart", {"labels": True, "n_docs": 2}, {"label_smoothing": 0.1}, False),
    ("model", "bart", {"decoder_input_ids": True}, {}, False),
    ("model", "bart", {"decoder_input_ids": True, "n_docs": 2}, {}, False),
]


@pytest.mark.parametrize("head,generator,kwargs,settings,with_start", CASES)
def test_matches_reference(rag_pair, questions, head, generator, kwargs, settings, with_start):
    pair = rag_pair(head, generator)
    start = pair.ours.config.generator.decoder_start_token_id if with_start else None
    labels = answer_labels(pair.generator_tokenizer, start)
    inputs = {**questions, **kwargs}
    for name in ("labels", "decoder_input_ids"):
        if inputs.get(name) is True:
            inputs[name] = labels
    with pair.configured(**settings):
        ours, ref = run_both(pair, **inputs)
    assert_close(ours.logits, ref.logits)
    assert_close(ours.doc_scores, ref.doc_scores)
    assert ours.doc_scores.shape == (3, kwargs.get("n_docs", N_DOCS))
    if "labels" in kwargs:
        assert ours.loss.shape == ref.loss.shape == (() if kwargs.get("reduce_loss") else (3,))
        assert torch.isfinite(ours.loss).all()
        assert_close(ours.loss, ref.loss)


@pytest.mark.parametrize(
    "head,kwargs,settings,with_start",
    [
        ("token", {}, {"label_smoothing": 0.1}, False),
        ("sequence", {}, {"label_smoothing": 0.1}, False),
        ("sequence", {"exclude_bos_score": True}, {}, True),
    ],
)
def test_options_change_the_loss(rag_pair, questions, head, kwargs, settings, with_start):
    """Each option case above really exercises a different computation than the plain loss."""
    pair = rag_pair(head)
    start = pair.ours.config.generator.decoder_start_token_id if with_start else None
    labels = answer_labels(pair.generator_tokenizer, start)
    with torch.no_grad():
        plain = pair.ours(**questions, labels=labels).loss
        with pair.configured(**settings):
            varied = pair.ours(**questions, labels=labels, **kwargs).loss
    assert (plain - varied).abs().max() > 1e-4


def brute_force_nll(pair, questions, labels, head: str) -> torch.Tensor:
    """Per-question NLL by looping over passages with plain log_softmax (no label smoothing)."""
    model = pair.ours
    pad = model.config.generator.pad_token_id
    contexts = model.rag.retrieve_contexts(questions["input_ids"], questions["attention_mask"])
    doc_lp = torch.log_softmax(contexts.doc_scores, dim=1)  # (B, k)
    losses = []
    for b in range(labels.shape[0]):
        target = torch.cat([labels[b, 1:], labels.new_tensor([pad])])  # (T,)
        keep = target.ne(pad)
        token_lp = []
        for i in range(N_DOCS):
            row = b * N_DOCS + i
            logits = model.generator(
                input_ids=contexts.context_input_ids[row : row + 1],
                attention_mask=contexts.context_attention_mask[row : row + 1],
                decoder_input_ids=labels[b : b + 1],
            ).logits[0]  # (T, V)
            token_lp.append(torch.log_softmax(logits, -1).gather(-1, target[:, None])[:, 0] * keep)  # (T,)
        token_lp = torch.stack(token_lp)  # (k, T)
        if head == "sequence":
            losses.append(-(doc_lp[b] + token_lp.sum(1)).logsumexp(0))
        else:
            losses.append(-((doc_lp[b][:, None] + token_lp).logsumexp(0) * keep).sum())
    return torch.stack(losses)


@pytest.mark.parametrize("head", ["token", "sequence"])
@pytest.mark.parametrize("generator", ["bart", "t5"])
def test_loss_matches_brute_force(rag_pair, questions, head, generator):
    """Also covers RAG-Sequence with T5, where the reference raises (T5Config has no bos_token_id)."""
    pair = rag_pair(head, generator)
    labels = answer_labels(pair.generator_tokenizer, pair.ours.config.generator.decoder_start_token_id)
    with torch.no_grad():
        loss = pair.ours(**questions, labels=labels).loss
        expected = brute_force_nll(pair, questions, labels, head)
    assert_close(loss, expected)


def test_reference_sequence_head_fails_with_t5_but_ours_runs(rag_pair, questions):
    pair = rag_pair("sequence", "t5")
    labels = answer_labels(pair.generator_tokenizer, pair.ours.config.generator.decoder_start_token_id)
    with torch.no_grad(), pytest.raises(AttributeError):
        pair.ref(**questions, labels=labels)
    with torch.no_grad():
        assert torch.isfinite(pair.ours(**questions, labels=labels, exclude_bos_score=True).loss).all()


@pytest.mark.parametrize("head", ["token", "sequence"])
def test_without_retriever_given_contexts(rag_pair, questions, head):
    pair = rag_pair(head)
    labels = answer_labels(pair.generator_tokenizer)
    contexts = pair.ours.rag.retrieve_contexts(questions["input_ids"], questions["attention_mask"])
    assert not contexts.context_attention_mask.all(), "passages differ in length, so contexts are padded"
    inputs = {
        "context_input_ids": contexts.context_input_ids,
        "context_attention_mask": contexts.context_attention_mask,
        "doc_scores": contexts.doc_scores,
        "labels": labels,
    }
    for model in (pair.ours, pair.ref):
        model.set_retriever(None)
    try:
        ours, ref = run_both(pair, **inputs)
    finally:
        for model in (pair.ours, pair.ref):
            model.set_retriever(pair.retriever)
    assert_close(ours.loss, ref.loss)
    assert_close(ours.logits, ref.logits)
    with torch.no_grad():
        retrieved = pair.ours(**questions, labels=labels)
    assert_close(ours.loss, retrieved.loss)


@pytest.mark.parametrize("head", ["token", "sequence"])
def test_gradients_reach_question_encoder(rag_pair, questions, head):
    pair = rag_pair(head)
    labels = answer_labels(pair.generator_tokenizer)
    grads = []
    for model in (pair.ours, pair.ref):
        model.zero_grad()
        model(**questions, labels=labels, reduce_loss=True).loss.backward()
        params = model.rag.question_encoder.named_parameters()
        grads.append({n: p.grad.clone() for n, p in params if p.grad is not None})
        model.zero_grad()
    ours, ref = grads
    assert ours.keys() == ref.keys() and ours
    assert sum(g.abs().sum() for g in ours.values()) > 0
    for name in ours:  # float32 sums in a different order: gradients agree to 1e-4
        torch.testing.assert_close(ours[name], ref[name], atol=1e-4, rtol=1e-4)


def test_output_fields_match_reference():
    for ours, ref in (
        (RetrievAugLMOutput, transformers.models.rag.modeling_rag.RetrievAugLMOutput),
        (RetrievAugLMMarginOutput, transformers.models.rag.modeling_rag.RetrievAugLMMarginOutput),
    ):
        assert [f.name for f in dataclasses.fields(ours)] == [f.name for f in dataclasses.fields(ref)]


@pytest.mark.parametrize("head", ["model", "token", "sequence"])
def test_output_retrieved(rag_pair, questions, head):
    pair = rag_pair(head)
    labels = answer_labels(pair.generator_tokenizer)
    kwargs = {"decoder_input_ids": labels} if head == "model" else {"labels": labels}
    ours, ref = run_both(pair, **questions, output_retrieved=True, **kwargs)
    for name in ("context_input_ids", "context_attention_mask", "retrieved_doc_ids"):
        assert torch.equal(getattr(ours, name), getattr(ref, name))
    assert_close(ours.retrieved_doc_embeds, ref.retrieved_doc_embeds)
    assert_close(ours.question_encoder_last_hidden_state, ref.question_encoder_last_hidden_state)
    assert ours.retrieved_doc_embeds.shape == (3, N_DOCS, pair.ours.config.retrieval_vector_size)
    hidden = pair.ours(**questions, output_retrieved=False, **kwargs)
    assert hidden.context_input_ids is None and hidden.retrieved_doc_ids is None


def test_hidden_states_are_returned(rag_pair, questions):
    """output_hidden_states reaches both sub-models (the reference drops it)."""
    pair = rag_pair("token")
    labels = answer_labels(pair.generator_tokenizer)
    with torch.no_grad():
        out = pair.ours(**questions, labels=labels, output_hidden_states=True)
    layers = pair.ours.config.generator.decoder_layers
    assert len(out.generator_dec_hidden_states) == len(out.generator_enc_hidden_states) == layers + 1
    assert len(out.question_enc_hidden_states) == pair.ours.config.question_encoder.num_hidden_layers + 1


@pytest.mark.parametrize("cache_name", ["cache", "past_key_values"])
def test_decoder_cache_under_either_name(rag_pair, questions, cache_name):
    """Decoding the last token from a cache gives the logits of a full forward pass."""
    pair = rag_pair("token")
    labels = answer_labels(pair.generator_tokenizer)
    contexts = pair.ours.rag.retrieve_contexts(questions["input_ids"], questions["attention_mask"])
    given = {
        "context_input_ids": contexts.context_input_ids,
        "context_attention_mask": contexts.context_attention_mask,
        "doc_scores": contexts.doc_scores,
    }
    with torch.no_grad():
        full = pair.ours(**given, decoder_input_ids=labels[:, :3], use_cache=False).logits
        first = pair.ours(**given, decoder_input_ids=labels[:, :2], use_cache=True)
        step = pair.ours(**given, decoder_input_ids=labels[:, 2:3], use_cache=True, **{cache_name: first.cache})
    assert_close(step.logits[:, 0], full[:, 2])


def test_reorder_cache_matches_reference(rag_pair, questions):
    pair = rag_pair("token")
    labels = answer_labels(pair.generator_tokenizer)
    with torch.no_grad():
        cache = pair.ours(**questions, decoder_input_ids=labels[:, :2], use_cache=True).cache
    beam_idx = torch.tensor([2, 0, 0])
    ours = pair.ours._reorder_cache(cache, beam_idx)
    ref = transformers.RagTokenForGeneration._reorder_cache(cache, beam_idx)
    layer = cache.self_attention_cache.layers[0].keys  # (B*k, heads, T, d)
    moved = ours.self_attention_cache.layers[0].keys
    assert torch.equal(moved[:N_DOCS], layer[2 * N_DOCS : 3 * N_DOCS])
    for i in range(len(cache)):
        for part in ("self_attention_cache", "cross_attention_cache"):
            a, b = getattr(ours, part).layers[i], getattr(ref, part).layers[i]
            assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
