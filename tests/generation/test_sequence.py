"""RAG-Sequence generation: parity with the reference, thorough/fast against brute force, padding, T5."""

from __future__ import annotations

import pytest
import torch

from .conftest import N_DOCS, passage_log_likelihood


def score_tolerance(m, ctx, max_length: int) -> float:
    """How far two float32 computations of one candidate's score may differ.

    A score sums up to ``max_length`` token log-probs; each comes from logits computed by decoding in padded
    batches on one side and by plain passes on the other (other matmul shapes, other rounding), a few ulp of
    the largest logit apart. The tiny generators here have large weights on purpose (T5's logits reach
    ~200, BART's ~10), so the bound scales with that magnitude: 16 ulp of it per token.
    """
    g = m.ours.generator
    start = torch.full((ctx["context_input_ids"].shape[0], max_length), g.config.decoder_start_token_id)
    with torch.no_grad():
        logits = g(input_ids=ctx["context_input_ids"], attention_mask=ctx["context_attention_mask"],
                   decoder_input_ids=start).logits
    return max_length * 16 * torch.finfo(torch.float32).eps * logits.abs().max().item()


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("num_beams,num_return_sequences", [(1, 1), (3, 1), (3, 2)])
def test_ids_equal_reference(models, batch, num_beams, num_return_sequences):
    m = models("sequence")
    ctx = m.contexts(batch, padded=False)
    kw = dict(num_beams=num_beams, num_return_sequences=num_return_sequences, max_length=10, **ctx)
    ours, ref = m.ours.generate(**kw), m.ref.generate(**kw)
    assert ours.shape[0] == batch * num_return_sequences
    assert torch.equal(ours, ref)


def _per_passage_candidates(m, ctx, num_beams, max_length):
    """Brute-force candidate set: the generator's own beam search on each (masked) passage."""
    g = m.ours.generator
    seqs = g.generate(input_ids=ctx["context_input_ids"], attention_mask=ctx["context_attention_mask"],
                      num_beams=num_beams, num_return_sequences=num_beams, max_length=max_length)
    return seqs.view(-1, N_DOCS * num_beams, seqs.shape[-1])  # (B, k*R, T)


def _strip(seq, pad):
    seq = seq.tolist()
    while seq and seq[-1] == pad:
        seq.pop()
    return tuple(seq)


@pytest.mark.parametrize("generator,padded", [("bart", False), ("bart", True), ("t5", True)])
def test_thorough_is_argmax_of_brute_force_marginal(models, generator, padded):
    m = models("sequence", generator)
    ctx = m.contexts(2, padded=padded)
    cfg = m.ours.config
    pad, eos = cfg.generator.pad_token_id, cfg.eos_token_id
    out = m.ours.generate(num_beams=2, num_return_sequences=N_DOCS * 2, max_length=9, return_dict_in_generate=True, **ctx)
    seqs, scores = out.sequences.view(2, N_DOCS * 2, -1), out.sequences_scores.view(2, -1)
    cands = _per_passage_candidates(m, ctx, 2, 9)
    doc_lp = torch.log_softmax(ctx["doc_scores"], 1)
    tol = score_tolerance(m, ctx, 9)
    for b in range(2):
        unique = {_strip(c, pad): c for c in cands[b]}
        stacked = torch.nn.utils.rnn.pad_sequence([torch.tensor(u) for u in unique], batch_first=True, padding_value=pad)
        rows = slice(b * N_DOCS, (b + 1) * N_DOCS)
        ll = passage_log_likelihood(m.ours.generator, ctx["context_input_ids"][rows], ctx["context_attention_mask"][rows], stacked, eos)
        marginal = torch.logsumexp(ll + doc_lp[b][:, None], 0)  # (S,)
        best = max(range(len(unique)), key=lambda i: marginal[i].item())
        assert _strip(seqs[b, 0], pad) == list(unique)[best]
        valid = torch.isfinite(scores[b])
        ours = {_strip(s, pad): sc.item() for s, sc in zip(seqs[b][valid], scores[b][valid])}
        assert set(ours) == set(unique)  # every distinct candidate, each once
        for i, u in enumerate(unique):
            assert ours[u] == pytest.approx(marginal[i].item(), abs=tol)


def test_reference_differs_on_padded_contexts_ours_is_exact(models):
    """The reference's beam search ignores the context mask: on padded contexts it may rank differently;
    the test above shows ours equals the brute-force marginal there. Here: ours with padding differs from
    ours without the mask, i.e. the mask is actually used."""
    m = models("sequence")
    ctx = m.contexts(3, padded=True)
    masked = m.ours.generate(num_beams=2, max_length=10, return_dict_in_generate=True, **ctx)
    unmasked = m.ours.generate(num_beams=2, max_length=10, return_dict_in_generate=True,
                               **{**ctx, "context_attention_mask": torch.ones_like(ctx["context_attention_mask"])})
    assert not torch.allclose(masked.sequences_scores, unmasked.sequences_scores)


@pytest.mark.parametrize("generator", ["bart", "t5"])
def test_fast_scores_equal_brute_force_over_producing_passages(models, generator):
    m = models("sequence", generator)
    ctx = m.contexts(2, padded=True)
    cfg = m.ours.config
    pad, eos = cfg.generator.pad_token_id, cfg.eos_token_id
    out = m.ours.generate(num_beams=2, num_return_sequences=4, max_length=9, decoding="fast",
                          return_dict_in_generate=True, **ctx)
    seqs, scores = out.sequences.view(2, 4, -1), out.sequences_scores.view(2, 4)
    cands = _per_passage_candidates(m, ctx, 2, 9)  # (B, k*R, T)
    doc_lp = torch.log_softmax(ctx["doc_scores"], 1)
    tol = score_tolerance(m, ctx, 9)
    for b in range(2):
        rows = slice(b * N_DOCS, (b + 1) * N_DOCS)
        ll = passage_log_likelihood(m.ours.generator, ctx["context_input_ids"][rows], ctx["context_attention_mask"][rows], seqs[b], eos)
        for s in range(4):
            producing = [j for j in range(N_DOCS) if any(_strip(c, pad) == _strip(seqs[b, s], pad) for c in cands[b, j * 2 : (j + 1) * 2])]
            assert producing
            expected = torch.logsumexp(torch.stack([doc_lp[b, j] + ll[j, s] for j in producing]), 0)
            assert scores[b, s].item() == pytest.approx(expected.item(), abs=tol)
            full = torch.logsumexp(doc_lp[b] + ll[:, s], 0)
            assert scores[b, s].item() <= full.item() + tol  # a lower bound of the full marginal
        assert (scores[b][:-1] >= scores[b][1:]).all()


def test_deduplication_and_sampling(models):
    m = models("sequence")
    ctx = m.contexts(2, padded=True)
    pad = m.ours.config.generator.pad_token_id
    kw = dict(num_beams=2, num_return_sequences=N_DOCS * 2, max_length=8, **ctx)
    dup = m.ours.generate(do_deduplication=False, **kw).view(2, N_DOCS * 2, -1)
    dedup = m.ours.generate(do_deduplication=True, return_dict_in_generate=True, **kw)
    assert any(len({_strip(s, pad) for s in dup[b]}) < N_DOCS * 2 for b in range(2))  # duplicates exist...
    for b in range(2):  # ...and deduplication returns each once
        rows = dedup.sequences.view(2, N_DOCS * 2, -1)[b][torch.isfinite(dedup.sequences_scores.view(2, -1)[b])]
        assert len({_strip(s, pad) for s in rows}) == len(rows)
    skw = dict(do_sample=True, top_k=30, max_length=8, num_return_sequences=2, **ctx)
    torch.manual_seed(5)
    a = m.ours.generate(**skw)
    torch.manual_seed(5)
    b = m.ours.generate(**skw)
    torch.manual_seed(6)
    c = m.ours.generate(**skw)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_encoder_once_and_batched_scoring(models):
    m = models("sequence")
    ctx = m.contexts(3, padded=True)
    calls = []
    enc = m.ours.generator.get_encoder()
    h = enc.register_forward_hook(lambda mod, a, kw, o: calls.append(kw["input_ids"].shape), with_kwargs=True)
    dec_calls = []
    h2 = m.ours.generator.get_decoder().register_forward_hook(lambda mod, a, kw, o: dec_calls.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        m.ours.generate(num_beams=2, max_length=8, min_length=8, **ctx)
    finally:
        h.remove(), h2.remove()
    assert calls == [ctx["context_input_ids"].shape]
    # 7 beam steps over all 3*k passages at once, then one teacher-forced scoring pass
    assert len(dec_calls) == 8 and dec_calls[-1][1] == 7


def test_prefix_allowed_tokens_gets_question_index(models):
    m = models("sequence")
    ctx = m.contexts(2, padded=True)
    allowed = {0: [4, 9], 1: [11, 13]}
    seen = set()

    def fn(batch_id, ids):
        seen.add(batch_id)
        return allowed[batch_id]

    out = m.ours.generate(num_beams=2, max_length=6, prefix_allowed_tokens_fn=fn, **ctx)
    assert seen == {0, 1}
    assert set(out[0, 1:].tolist()) <= set(allowed[0]) and set(out[1, 1:].tolist()) <= set(allowed[1])
