"""The marginal module's formulas against brute force: the step marginal is the per-position marginal, the
RAG-Sequence marginal is the sum of joint probabilities, the doc posterior is Bayes' rule, all in float64
(rounding ~1e-15 relative; 1e-12 leaves margin and catches any formula error, which would be O(1))."""

from __future__ import annotations

import pytest
import torch

from ragmodels import marginal as M

TOL = dict(rtol=1e-12, atol=1e-12)


def _inputs(batch=2, n_docs=3, length=4, vocab=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch * n_docs, length, vocab, generator=g, dtype=torch.float64) * 2
    doc_scores = torch.randn(batch, n_docs, generator=g, dtype=torch.float64)
    return logits, doc_scores


def test_step_marginal_is_the_token_marginal_at_each_position():
    logits, doc_scores = _inputs()
    batch, n_docs = doc_scores.shape
    every = M.token_marginal(logits, doc_scores, n_docs)  # (B, T, V)
    doc_lp = M.doc_log_prior(doc_scores)
    for t in range(logits.shape[1]):
        # step_marginal computes in float32, as decoding does: float32 rounding (~1e-7 relative) bounds it
        torch.testing.assert_close(M.step_marginal(logits[:, t], doc_lp).double(), every[:, t], rtol=1e-5, atol=1e-5)
    # brute force: log sum_i p(z_i|x) p(v|z_i)
    probs = torch.softmax(logits, -1).view(batch, n_docs, -1, logits.shape[-1])
    prior = torch.softmax(doc_scores, 1)[:, :, None, None]
    torch.testing.assert_close(every, (prior * probs).sum(1).log(), **TOL)


def test_sequence_marginal_and_token_log_probs_are_brute_force():
    logits, doc_scores = _inputs()
    target = torch.randint(0, logits.shape[-1], logits.shape[:2], generator=torch.Generator().manual_seed(1))
    tok = M.token_log_probs(logits, target)  # (B*k, T)
    expected = torch.softmax(logits, -1).gather(-1, target[..., None]).squeeze(-1).log()
    torch.testing.assert_close(tok, expected, **TOL)
    batch, n_docs = doc_scores.shape
    seq_ll = tok.sum(-1).view(batch, 1, n_docs)  # (B, C=1, k)
    joint = (torch.softmax(doc_scores, 1) * tok.sum(-1).view(batch, n_docs).exp()).sum(1).log()  # (B,)
    torch.testing.assert_close(M.sequence_marginal(seq_ll, M.doc_log_prior(doc_scores))[:, 0], joint, **TOL)


@pytest.mark.parametrize("kind", ["sequence", "token"])
def test_doc_posterior_is_bayes_rule(kind):
    logits, doc_scores = _inputs()
    batch, n_docs = doc_scores.shape
    target = torch.randint(0, logits.shape[-1], logits.shape[:2], generator=torch.Generator().manual_seed(2))
    tok = M.token_log_probs(logits, target).view(batch, n_docs, -1)  # (B, k, T)
    posterior = M.doc_posterior(M.doc_log_prior(doc_scores), tok, kind)
    prior = torch.softmax(doc_scores, 1)
    if kind == "sequence":
        joint = prior * tok.sum(-1).exp()  # (B, k): p(z|x) p(y|x,z)
        torch.testing.assert_close(posterior, joint / joint.sum(1, keepdim=True), **TOL)
    else:
        joint = prior[:, :, None] * tok.exp()  # (B, k, T)
        torch.testing.assert_close(posterior, joint / joint.sum(1, keepdim=True), **TOL)
    torch.testing.assert_close(posterior.sum(1), torch.ones_like(posterior.sum(1)), **TOL)


def test_doc_posterior_names_a_wrong_kind():
    with pytest.raises(ValueError, match="'sequence' or 'token'"):
        M.doc_posterior(torch.zeros(1, 2), torch.zeros(1, 2, 3), "tokens")


def test_counted_targets_stops_after_eos_and_drops_a_forced_bos():
    bos, eos = 0, 2
    targets = torch.tensor([[[bos, 5, eos, 7], [bos, eos, 1, 1]]])  # (B=1, C=2, T=4): every candidate opens with BOS
    mask = M.counted_targets(targets, torch.tensor([eos]), bos)
    assert mask.tolist() == [[[False, True, True, False], [False, True, False, False]]]
    mixed = torch.tensor([[[bos, eos], [5, eos]]])  # not every candidate opens with BOS: the first token counts
    assert M.counted_targets(mixed, torch.tensor([eos]), bos)[..., 0].all()
