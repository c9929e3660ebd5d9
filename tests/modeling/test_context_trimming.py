"""``RagModel.trim_context_padding``: context columns that are padding in every row never reach the generator,
and the loss, logits and gradients stay the reference's (which runs them all). Off by default."""

from __future__ import annotations

import pytest
import torch

from ragmodels.modeling.rag_model import _without_trailing_padding

from .conftest import answer_labels
from .test_parity import assert_close

EXTRA = 23  # trailing all-padding columns added to the retrieved contexts


def padded_inputs(pair, questions, labels):
    contexts = pair.ours.rag.retrieve_contexts(questions["input_ids"], questions["attention_mask"])
    ids, mask = contexts.context_input_ids, contexts.context_attention_mask
    pad = pair.ours.config.generator.pad_token_id
    return {
        "context_input_ids": torch.cat([ids, ids.new_full((ids.size(0), EXTRA), pad)], dim=1),
        "context_attention_mask": torch.cat([mask, mask.new_zeros(mask.size(0), EXTRA)], dim=1),
        "doc_scores": contexts.doc_scores.detach(),
        "labels": labels,
    }, int(mask.ne(0).any(0).nonzero().max()) + 1


@pytest.mark.parametrize(
    "head,settings,trim",
    [("token", {}, True), ("token", {"label_smoothing": 0.1}, True), ("sequence", {}, True), ("token", {}, False)],
)
def test_padded_contexts_match_the_reference(rag_pair, questions, head, settings, trim):
    pair = rag_pair(head)
    assert pair.ours.rag.trim_context_padding is False  # the default
    pair.ours.rag.trim_context_padding = trim
    labels = answer_labels(pair.generator_tokenizer)
    inputs, used = padded_inputs(pair, questions, labels)
    seen = []
    hook = pair.ours.generator.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    for model in (pair.ours, pair.ref):
        model.set_retriever(None)
    try:
        with pair.configured(**settings):
            results = {}
            for name, model in (("ours", pair.ours), ("ref", pair.ref)):
                inputs["doc_scores"] = inputs["doc_scores"].detach().requires_grad_()
                out = model(**inputs)
                out.loss.sum().backward()
                results[name] = (out, inputs["doc_scores"].grad)
    finally:
        pair.ours.rag.trim_context_padding = False
        hook.remove()
        for model in (pair.ours, pair.ref):
            model.set_retriever(pair.retriever)
            model.zero_grad(set_to_none=True)
    (ours, ours_grad), (ref, ref_grad) = results["ours"], results["ref"]
    full = inputs["context_input_ids"].shape[1]
    assert seen == ([used] if trim else [full]) and used <= full - EXTRA
    assert_close(ours.loss, ref.loss)
    assert_close(ours.logits, ref.logits)
    assert_close(ours_grad, ref_grad)
    assert ours.generator_enc_last_hidden_state.shape == ref.generator_enc_last_hidden_state.shape


def test_without_trailing_padding():
    ids = torch.arange(12).view(3, 4)
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]])
    trimmed_ids, trimmed_mask = _without_trailing_padding(ids, mask)
    assert torch.equal(trimmed_ids, ids[:, :3]) and torch.equal(trimmed_mask, mask[:, :3])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]])  # left padding: nothing trailing
    assert _without_trailing_padding(ids, left)[1] is left
    assert _without_trailing_padding(ids, torch.zeros_like(mask))[0].shape == (3, 1)
