"""The losses' fused fast path (``ragmodels.marginal.fused``): value and gradients equal autograd's of the plain
formula, and equal the plain module's own formulas (``fused=False``).

The plain formula is the reference's ``get_nll`` (transformers.models.rag), written out with full
log_softmax copies; both are evaluated in float64 on random logits, for both heads, with and without label
smoothing, padded targets, exclude_bos_score and reduce_loss, and with chunks small enough that every
pass runs over several of them.
"""

from __future__ import annotations

import pytest
import torch

from ragmodels import marginal as M
from ragmodels.marginal import fused

PAD, BOS = 1, 0


def plain_nll(head, seq_logits, doc_scores, labels, epsilon, exclude_bos_score=False, reduce_loss=False):
    batch, n_docs = doc_scores.shape
    vocab = seq_logits.size(-1)
    target = torch.cat([labels[:, 1:], labels.new_full((batch, 1), PAD)], dim=1)  # shift left, pad
    seq_lp = torch.log_softmax(seq_logits, dim=-1).view(batch, n_docs, -1, vocab)
    doc_lp = torch.log_softmax(doc_scores, dim=1)
    if head == "sequence":
        doc_lp = doc_lp[:, :, None, None]
        rag_lp = torch.cat([seq_lp[:, :, :1], seq_lp[:, :, 1:2] + doc_lp, seq_lp[:, :, 2:]], dim=2)
        index = target[:, None, :, None].expand(-1, n_docs, -1, 1)
        pad = target.eq(PAD)[:, None, :]
    else:
        rag_lp = (seq_lp + doc_lp[:, :, None, None]).logsumexp(dim=1)  # (B, T, V)
        index = target[..., None]
        pad = target.eq(PAD)
    ll = rag_lp.gather(-1, index).squeeze(-1).masked_fill(pad, 0.0)
    smooth = rag_lp.sum(-1).masked_fill(pad, 0.0)
    if head == "sequence":
        first = 1 if exclude_bos_score and bool(target[:, 0].eq(BOS).all()) else 0
        ll, smooth = ll[:, :, first:].sum(2).logsumexp(1), smooth.sum(2).logsumexp(1)
    else:
        ll, smooth = ll.sum(1), smooth.sum(1)
    nll, smooth_loss = -ll, -smooth
    if reduce_loss:
        nll, smooth_loss = nll.sum(), smooth_loss.sum()
    return (1.0 - epsilon) * nll + epsilon / vocab * smooth_loss


def ours_nll(head, seq_logits, doc_scores, labels, epsilon, exclude_bos_score=False, reduce_loss=False, fused=True):
    if head == "sequence":
        return M.rag_sequence_nll(seq_logits, doc_scores, labels, PAD, BOS, epsilon, exclude_bos_score, reduce_loss,
                                  fused=fused)
    return M.rag_token_nll(seq_logits, doc_scores, labels, PAD, epsilon, reduce_loss, fused=fused)


def make_inputs(batch=3, n_docs=4, length=7, vocab=23, seed=0, bos_first=True):
    g = torch.Generator().manual_seed(seed)
    seq_logits = (torch.randn(batch * n_docs, length, vocab, generator=g, dtype=torch.float64) * 3).requires_grad_()
    doc_scores = torch.randn(batch, n_docs, generator=g, dtype=torch.float64).requires_grad_()
    labels = torch.randint(2, vocab, (batch, length), generator=g)
    labels[:, 0] = 2  # decoder start
    if bos_first:
        labels[:, 1] = BOS  # targets start with BOS (exclude_bos_score applies)
    labels[0, -2:] = PAD  # padded answers of different lengths
    labels[1, -1] = PAD
    return seq_logits, doc_scores, labels


@pytest.fixture(params=[None, 50], ids=["one-chunk", "many-chunks"])
def chunk(request, monkeypatch):
    if request.param is not None:  # 50 elements: a couple of rows (or positions) per chunk
        monkeypatch.setattr(fused, "_CHUNK_ELEMENTS", request.param)
    return request.param


CASES = [
    ("token", 0.0, False, False),
    ("token", 0.1, False, False),
    ("token", 0.1, False, True),
    ("sequence", 0.0, False, False),
    ("sequence", 0.2, False, False),
    ("sequence", 0.0, True, False),
    ("sequence", 0.1, True, True),
]


@pytest.mark.parametrize("head,epsilon,exclude_bos_score,reduce_loss", CASES)
def test_value_and_gradients_match_the_plain_formula(chunk, head, epsilon, exclude_bos_score, reduce_loss):
    seq_logits, doc_scores, labels = make_inputs()
    args = (head, seq_logits, doc_scores, labels, epsilon, exclude_bos_score, reduce_loss)
    ours, plain = ours_nll(*args), plain_nll(*args)
    torch.testing.assert_close(ours, plain, rtol=1e-10, atol=1e-10)
    weights = torch.linspace(0.5, 2.0, ours.numel(), dtype=ours.dtype).view(ours.shape)  # any upstream gradient
    ours_grads = torch.autograd.grad((ours * weights).sum(), (seq_logits, doc_scores))
    plain_grads = torch.autograd.grad((plain * weights).sum(), (seq_logits, doc_scores))
    for mine, expected in zip(ours_grads, plain_grads):
        torch.testing.assert_close(mine, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("head,epsilon,exclude_bos_score,reduce_loss", CASES)
def test_fast_path_equals_the_plain_module(chunk, head, epsilon, exclude_bos_score, reduce_loss):
    """fused=True (the default) and fused=False: same value and gradients. float64, so both differ from the
    exact value by rounding of a few hundred terms (~1e-13 relative): 1e-10 leaves margin and catches any
    formula difference (those are O(1))."""
    seq_logits, doc_scores, labels = make_inputs()
    args = (head, seq_logits, doc_scores, labels, epsilon, exclude_bos_score, reduce_loss)
    fast, plain = ours_nll(*args), ours_nll(*args, fused=False)
    torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-10)
    weights = torch.linspace(0.5, 2.0, fast.numel(), dtype=fast.dtype).view(fast.shape)
    fast_grads = torch.autograd.grad((fast * weights).sum(), (seq_logits, doc_scores))
    plain_grads = torch.autograd.grad((plain * weights).sum(), (seq_logits, doc_scores))
    for mine, expected in zip(fast_grads, plain_grads):
        torch.testing.assert_close(mine, expected, rtol=1e-9, atol=1e-12)


def test_exclude_bos_score_changes_the_gradient():
    seq_logits, doc_scores, labels = make_inputs()
    grads = [torch.autograd.grad(ours_nll("sequence", seq_logits, doc_scores, labels, 0.0, flag).sum(), seq_logits)[0]
             for flag in (False, True)]
    assert not torch.allclose(*grads)


@pytest.mark.parametrize("head,epsilon", [("token", 0.0), ("token", 0.1), ("sequence", 0.1)])
def test_gradcheck(chunk, head, epsilon):
    seq_logits, doc_scores, labels = make_inputs(batch=2, n_docs=2, length=4, vocab=5, seed=1)
    assert torch.autograd.gradcheck(
        lambda logits, scores: ours_nll(head, logits, scores, labels, epsilon, True), (seq_logits, doc_scores)
    )


@pytest.mark.parametrize("head,epsilon", [("token", 0.0), ("token", 0.1), ("sequence", 0.0), ("sequence", 0.1)])
def test_float32_matches_float64(head, epsilon):
    seq_logits, doc_scores, labels = make_inputs(batch=2, n_docs=3, length=6, vocab=1000, seed=2)
    single = [t.detach().float().requires_grad_() for t in (seq_logits, doc_scores)]
    ours = ours_nll(head, *single, labels, epsilon)
    plain = plain_nll(head, seq_logits, doc_scores, labels, epsilon)
    torch.testing.assert_close(ours.double(), plain, rtol=1e-5, atol=1e-4)
    for mine, expected in zip(torch.autograd.grad(ours.sum(), single), torch.autograd.grad(plain.sum(), (seq_logits, doc_scores))):
        torch.testing.assert_close(mine.double(), expected, rtol=1e-4, atol=1e-6)


def test_saves_no_vocabulary_sized_tensor_but_the_logits():
    """What autograd keeps for the backward: the logits themselves and (B, k, T)-sized tensors only."""
    seq_logits, doc_scores, labels = make_inputs(batch=2, n_docs=3, length=5, vocab=4000)
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        for head, epsilon in (("token", 0.1), ("sequence", 0.1)):
            ours_nll(head, seq_logits, doc_scores, labels, epsilon)
    big = [t for t in saved if t.numel() >= seq_logits.numel() // 4]
    assert big and all(t.data_ptr() == seq_logits.data_ptr() for t in big)


@pytest.mark.parametrize("head,epsilon", [("token", 0.0), ("token", 0.1), ("sequence", 0.0), ("sequence", 0.1)])
def test_low_precision_logits_are_read_in_float32(chunk, head, epsilon):
    """bfloat16 logits (autocast): the loss is float32 and as exact as the rounded logits allow; the
    gradient is bfloat16, equal to the float64 gradient of the same rounded values up to bfloat16 rounding."""
    seq_logits, doc_scores, labels = make_inputs(batch=2, n_docs=3, length=6, vocab=1000, seed=3)
    low = seq_logits.detach().bfloat16().requires_grad_()
    scores = doc_scores.detach().float().requires_grad_()
    ours = ours_nll(head, low, scores, labels, epsilon)
    assert ours.dtype == torch.float32
    exact = [low.detach().double().requires_grad_(), doc_scores.detach().requires_grad_()]
    plain = plain_nll(head, *exact, labels, epsilon)
    torch.testing.assert_close(ours.double(), plain, rtol=1e-6, atol=1e-4)
    mine = torch.autograd.grad(ours.sum(), (low, scores))
    expected = torch.autograd.grad(plain.sum(), exact)
    assert mine[0].dtype == torch.bfloat16
    torch.testing.assert_close(mine[0].double(), expected[0], rtol=1e-2, atol=1e-4)
    torch.testing.assert_close(mine[1].double(), expected[1], rtol=1e-5, atol=1e-5)
