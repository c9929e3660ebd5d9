"""RAG-Token generation: parity with the reference, brute force, processors, sampling, T5, caching."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from .conftest import N_DOCS


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("num_beams,num_return_sequences", [(1, 1), (3, 1), (3, 2)])
def test_ids_equal_reference(models, batch, num_beams, num_return_sequences):
    m = models("token")
    ctx = m.contexts(batch, padded=False)
    kw = dict(num_beams=num_beams, num_return_sequences=num_return_sequences, max_length=12, **ctx)
    ours, ref = m.ours.generate(**kw), m.ref.generate(**kw)
    assert ours.shape == (batch * num_return_sequences, 12)
    assert torch.equal(ours, ref)


def test_padded_contexts_and_retriever_path_equal_reference(models, make_retriever, question_tokenizer):
    """The reference masks contexts in RAG-Token too, so padded contexts (and retrieval) agree."""
    m = models("token")
    ctx = m.contexts(3, padded=True)
    assert torch.equal(m.ours.generate(num_beams=2, max_length=10, **ctx), m.ref.generate(num_beams=2, max_length=10, **ctx))
    retriever = make_retriever(m.ours.config, m.tokenizer)
    q = question_tokenizer(["capital of Peru", "Who discovered oxygen?"], padding=True, return_tensors="pt")
    try:
        for model in (m.ours, m.ref):
            model.rag.retriever = retriever
        ours = m.ours.generate(input_ids=q.input_ids, attention_mask=q.attention_mask, num_beams=2, max_length=10)
        ref = m.ref.generate(input_ids=q.input_ids, attention_mask=q.attention_mask, num_beams=2, max_length=10)
    finally:
        for model in (m.ours, m.ref):
            model.rag.retriever = None
    assert torch.equal(ours, ref)


def _marginal_log_probs(model, ctx, seqs):
    """Brute force: log p(y_t | x, y_<t) marginalized per token, from the model's full forward. (S, T-1)."""
    out = model(context_input_ids=ctx["context_input_ids"], context_attention_mask=ctx["context_attention_mask"],
                doc_scores=ctx["doc_scores"], decoder_input_ids=seqs[:, :-1], n_docs=ctx["n_docs"], use_cache=False)
    seq_lp = torch.log_softmax(out.logits.float(), -1)  # (S*k, T-1, V)
    k = ctx["n_docs"]
    seq_lp = seq_lp.view(-1, k, *seq_lp.shape[1:])
    doc_lp = torch.log_softmax(ctx["doc_scores"], 1)[:, :, None, None]
    return torch.logsumexp(seq_lp + doc_lp, dim=1)  # (S, T-1, V)


@pytest.mark.parametrize("generator", ["bart", "t5"])
def test_greedy_and_scores_equal_brute_force_with_padding(models, generator):
    """Padded contexts: greedy = argmax of the brute-force marginal at every step; beam scores = its sum / len^lp."""
    m = models("token", generator)
    ctx = m.contexts(2, padded=True)
    seqs = m.ours.generate(max_length=9, **ctx)  # (2, 9)
    lp = _marginal_log_probs(m.ours, ctx, seqs)
    assert torch.equal(lp.argmax(-1), seqs[:, 1:])
    out = m.ours.generate(max_length=9, num_beams=3, length_penalty=1.0, return_dict_in_generate=True, output_scores=True,
                          min_length=9, **ctx)
    seqs = out.sequences
    lp = _marginal_log_probs(m.ours, ctx, seqs).gather(-1, seqs[:, 1:, None]).squeeze(-1).sum(-1)
    torch.testing.assert_close(out.sequences_scores, lp / (seqs.shape[1] - 1), rtol=1e-4, atol=1e-4)


def test_generation_config_lengths_and_n_docs(models):
    m = models("token")
    ctx = m.contexts(2, padded=True, n_docs=2)  # n_docs override (config says 3)
    eos = m.ours.config.eos_token_id
    cfg = GenerationConfig(num_beams=2, max_new_tokens=6, min_new_tokens=6,
                           decoder_start_token_id=m.ours.config.decoder_start_token_id, eos_token_id=eos,
                           pad_token_id=m.ours.config.pad_token_id, bos_token_id=m.ours.config.bos_token_id)
    out = m.ours.generate(generation_config=cfg, **ctx)
    assert out.shape == (2, 7)
    assert not out[:, 1:-1].eq(eos).any()
    # the reference ignores max_new_tokens / min_new_tokens; the same lengths given as max/min_length agree
    ref_cfg = GenerationConfig(**{**cfg.to_diff_dict(), "max_new_tokens": None, "min_new_tokens": None,
                                  "max_length": 7, "min_length": 7})
    assert torch.equal(out, m.ref.generate(generation_config=ref_cfg, **ctx))


def test_processors_honored(models):
    m = models("token")
    ctx = m.contexts(2, padded=True)
    base = m.ours.generate(max_length=12, **ctx)
    common = base[:, 1:].flatten().mode().values.item()  # a token greedy decoding uses
    out = m.ours.generate(max_length=12, bad_words_ids=[[common]], **ctx)
    assert not out.eq(common).any()
    out = m.ours.generate(max_length=12, no_repeat_ngram_size=2, num_beams=2, **ctx)
    for row in out.tolist():
        grams = list(zip(row[1:], row[2:]))
        assert len(grams) == len(set(grams))
    out = m.ours.generate(max_length=8, forced_bos_token_id=7, forced_eos_token_id=5, **ctx)
    assert out[:, 1].eq(7).all() and out[:, -1].eq(5).all()
    allowed = [4, 9, 11]
    out = m.ours.generate(max_length=8, num_beams=2, prefix_allowed_tokens_fn=lambda b, ids: allowed, **ctx)
    assert set(out[:, 1:].flatten().tolist()) <= set(allowed)

    class Forbid(LogitsProcessor):
        def __call__(self, input_ids, scores):
            scores[:, common] = -float("inf")
            return scores

    class StopAt(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), input_ids.shape[1] >= 5, dtype=torch.bool)

    out = m.ours.generate(max_length=12, logits_processor=LogitsProcessorList([Forbid()]),
                          stopping_criteria=StoppingCriteriaList([StopAt()]), **ctx)
    assert out.shape[1] == 5 and not out.eq(common).any()


def test_sampling_reproducible(models):
    m = models("token")
    ctx = m.contexts(2, padded=True)
    kw = dict(do_sample=True, top_k=20, top_p=0.95, temperature=1.5, max_length=12, num_return_sequences=2, **ctx)
    torch.manual_seed(3)
    a = m.ours.generate(**kw)
    torch.manual_seed(3)
    b = m.ours.generate(**kw)
    torch.manual_seed(4)
    c = m.ours.generate(**kw)
    assert a.shape == (4, 12) and torch.equal(a, b) and not torch.equal(a, c)
    greedy = m.ours.generate(max_length=12, **ctx)
    assert torch.equal(m.ours.generate(do_sample=True, top_k=1, max_length=12, **ctx), greedy)


def test_encoder_runs_once_and_cache_is_used(models):
    m = models("token")
    ctx = m.contexts(2, padded=True)
    encoder = m.ours.generator.get_encoder()
    calls, decoder_lengths = [], []
    h1 = encoder.register_forward_hook(lambda mod, args, kwargs, out: calls.append(kwargs["input_ids"].shape), with_kwargs=True)
    decoder = m.ours.generator.get_decoder()
    h2 = decoder.register_forward_hook(lambda mod, args, kwargs, out: decoder_lengths.append(kwargs["input_ids"].shape), with_kwargs=True)
    try:
        m.ours.generate(num_beams=3, max_length=10, min_length=10, **ctx)
    finally:
        h1.remove(), h2.remove()
    assert calls == [ctx["context_input_ids"].shape]  # once, one row per (question, passage)
    assert decoder_lengths[0] == (2 * N_DOCS, 1)  # first step: one row per passage
    assert all(s == (2 * 3 * N_DOCS, 1) for s in decoder_lengths[1:]) and len(decoder_lengths) == 9
