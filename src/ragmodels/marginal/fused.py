"""The fused fast path of RAG's losses: the vocabulary-sized part of both NLLs in one autograd Function.

``ragmodels.marginal`` is the math; this file computes its per-passage token log-probabilities and
label-smoothing sums without a log_softmax copy, and is tested equal to the plain formulas there
(tests/modeling/test_marginal_grad.py).

A log-probability at the target is ``logit[y] - logsumexp(logits)`` and a sum of log-probabilities over the
vocabulary is ``sum(logits) - V * logsumexp(logits)``; RAG-Token's smoothing term (the sum over the
vocabulary of the marginal) is computed a few rows at a time. ``_VocabStats`` writes the gradient with
respect to the logits in one buffer and one pass (softmax times a per-row factor, plus the target's
one-hot), so neither pass allocates a vocabulary-sized temporary beyond that gradient: the generator's
logits (B*k, T, V) are the only vocabulary-sized tensor the losses keep.

Low-precision logits (bfloat16 or float16, e.g. under ``torch.autocast``) are read a chunk at a time in
float32: every log-probability and sum is float32, and only the gradient is written in the logits' dtype.
"""

from __future__ import annotations

import torch

_CHUNK_ELEMENTS = 1 << 21
"""Elements of the logits handled at once on a CPU (8 MB in float32, cache-sized): every temporary is this
size, not (B*k, T, V). On an accelerator _ACCELERATOR_CHUNK_ELEMENTS, so few kernels are launched."""
_ACCELERATOR_CHUNK_ELEMENTS = 1 << 25

PLAIN, VOCAB_SUMS, TOKEN_MARGINAL = 0, 1, 2
"""What ``_VocabStats`` computes besides log p(y_t): nothing, sum_v log p(v) per passage (RAG-Sequence's
smoothing term), or sum_v log sum_i p(z_i|x) p(v|z_i) per question (RAG-Token's smoothing term)."""


def _accumulation_dtype(logits: torch.Tensor) -> torch.dtype:
    """float32 for low-precision logits (float64 stays float64)."""
    return torch.promote_types(logits.dtype, torch.float32)


def _compute_into(dest: torch.Tensor, dtype: torch.dtype) -> torch.Tensor | None:
    """``out=`` for a result of ``dtype`` bound for ``dest``: ``dest`` itself when it has that dtype (no
    temporary), else None (a float32 temporary that ``_store`` then writes into low-precision ``dest``)."""
    return dest if dest.dtype == dtype else None


def _store(dest: torch.Tensor, result: torch.Tensor) -> None:
    """Write ``result`` into ``dest`` unless it was computed there (``_compute_into``)."""
    if result is not dest:
        dest.copy_(result)


def _row_chunks(rows: int, row_size: int, device: torch.device) -> list[slice]:
    """Consecutive row ranges of about _CHUNK_ELEMENTS (CPU) elements each."""
    elements = _CHUNK_ELEMENTS if device.type == "cpu" else _ACCELERATOR_CHUNK_ELEMENTS
    step = max(1, elements // max(row_size, 1))
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


class _VocabStats(torch.autograd.Function):
    """The vocabulary-sized part of both losses, with a backward that writes d loss / d logits in one buffer.

    forward(logits (N, T, V) with N = B*k, target (N, T), doc_lp (B, k), mode) -> (tok_lp, extra, lse):
      tok_lp (N, T) = log p(y_t | z) = logits[y_t] - logsumexp_v(logits);
      extra: None (PLAIN), (N, T) sum_v log p(v | z) (VOCAB_SUMS), or (B, T)
             sum_v log sum_i p(z_i|x) p(v | z_i) (TOKEN_MARGINAL);
      lse (N, T) logsumexp_v(logits) (no gradient flows through it).
    Everything is computed a few rows at a time, so neither pass materializes log_softmax, softmax or the
    (B, k, T, V) joint; only the logits (which the output holds anyway), lse and the target are saved. With
    p = softmax(logits), g = d loss / d tok_lp, h = d loss / d extra:
      PLAIN / VOCAB_SUMS:  d/d logits[v] = g * (1[v = y] - p[v]) + h * (1 - V p[v])
      TOKEN_MARGINAL:       d/d logits_i[v] = g_i (1[v = y] - p_i[v]) + h (q_i[v] - p_i[v] Q_i),
                             d/d doc_lp_i = sum_t h Q_i,
    where q_i[v] = p(z_i | x, v) (the passage posterior of token v) and Q_i = sum_v q_i[v].
    """

    @staticmethod
    def forward(ctx, logits, target, doc_lp, mode):
        n_rows, length, vocab = logits.shape
        flat = logits.reshape(n_rows * length, vocab)
        flat_target = target.reshape(-1, 1)
        acc = _accumulation_dtype(logits)
        lse = logits.new_empty(n_rows * length, dtype=acc)
        tok_lp = logits.new_empty(n_rows * length, dtype=acc)
        vocab_sums = logits.new_empty(n_rows * length, dtype=acc) if mode == VOCAB_SUMS else None
        for rows in _row_chunks(flat.size(0), vocab, logits.device):
            x = flat[rows].to(acc)  # (rows, V); a float32 copy of the chunk only for low-precision logits
            torch.logsumexp(x, dim=-1, out=lse[rows])
            torch.sub(x.gather(-1, flat_target[rows]).squeeze(-1), lse[rows], out=tok_lp[rows])
            if vocab_sums is not None:
                torch.sub(x.sum(dim=-1), lse[rows], alpha=vocab, out=vocab_sums[rows])
        lse, tok_lp = lse.view(n_rows, length), tok_lp.view(n_rows, length)
        extra = vocab_sums.view(n_rows, length) if vocab_sums is not None else None
        if mode == TOKEN_MARGINAL:
            extra = _token_marginal_sums(logits, lse, doc_lp)
        ctx.mode = mode
        ctx.save_for_backward(logits, target, lse, doc_lp if mode == TOKEN_MARGINAL else None)
        ctx.mark_non_differentiable(lse)
        return tok_lp, extra, lse

    @staticmethod
    def backward(ctx, grad_tok, grad_extra, _grad_lse):
        logits, target, lse, doc_lp = ctx.saved_tensors
        n_rows, length, vocab = logits.shape
        if grad_tok is None:
            grad_tok = lse.new_zeros(n_rows, length)
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
        grad_doc_lp = None
        if ctx.mode == TOKEN_MARGINAL and grad_extra is not None:
            grad_doc_lp = _token_marginal_backward(logits, lse, doc_lp, grad_tok, grad_extra, grad)
        else:
            has_sums = ctx.mode == VOCAB_SUMS and grad_extra is not None
            flat, out = logits.reshape(-1, vocab), grad.view(-1, vocab)
            flat_lse, flat_g = lse.reshape(-1, 1), grad_tok.reshape(-1, 1)
            flat_h = grad_extra.reshape(-1, 1) if has_sums else None
            acc = flat_lse.dtype
            for rows in _row_chunks(flat.size(0), vocab, logits.device):
                dest = out[rows]
                g = torch.sub(flat[rows], flat_lse[rows], out=_compute_into(dest, acc)).exp_()  # p
                if has_sums:  # -(g + V h) p + h
                    g.mul_(-(flat_g[rows] + vocab * flat_h[rows])).add_(flat_h[rows])
                else:
                    g.mul_(-flat_g[rows])
                _store(dest, g)
        flat_grad = grad.view(-1, vocab)
        flat_grad.scatter_add_(-1, target.reshape(-1, 1), grad_tok.reshape(-1, 1).to(grad.dtype))
        return grad, None, grad_doc_lp, None


def _token_marginal_sums(logits: torch.Tensor, lse: torch.Tensor, doc_lp: torch.Tensor) -> torch.Tensor:
    """sum_v logsumexp_i [ log p(z_i|x) + log p(v | x, z_i) ]: logits (B*k, T, V), lse (B*k, T) -> (B, T)."""
    batch, n_docs = doc_lp.shape
    length, vocab = logits.shape[1:]
    grouped = logits.view(batch, n_docs, length, vocab)
    shift = (doc_lp.unsqueeze(-1) - lse.view(batch, n_docs, length)).unsqueeze(-1)  # (B, k, T, 1)
    sums = lse.new_empty(batch, length)
    for b in range(batch):
        for span in _row_chunks(length, n_docs * vocab, logits.device):
            joint = grouped[b, :, span] + shift[b, :, span]  # (k, tc, V)
            torch.sum(joint.logsumexp(dim=0), dim=-1, out=sums[b, span])
    return sums


def _token_marginal_backward(
    logits: torch.Tensor, lse: torch.Tensor, doc_lp: torch.Tensor, grad_tok: torch.Tensor,
    grad_sums: torch.Tensor, grad: torch.Tensor,
) -> torch.Tensor:
    """Fill ``grad`` (B*k, T, V) = g_i (-p_i) + h (q_i - p_i Q_i) (the one-hot part is added by the caller);
    return d loss / d doc_lp (B, k) = sum_t h Q_i."""
    batch, n_docs = doc_lp.shape
    length, vocab = logits.shape[1:]
    grouped = logits.view(batch, n_docs, length, vocab)
    out = grad.view(batch, n_docs, length, vocab)
    lse = lse.view(batch, n_docs, length, 1)
    g = grad_tok.view(batch, n_docs, length, 1)
    h = grad_sums.view(batch, 1, length, 1)
    doc = doc_lp.view(batch, n_docs, 1, 1)
    grad_doc_lp = doc_lp.new_zeros(batch, n_docs)
    for b in range(batch):
        for span in _row_chunks(length, n_docs * vocab, logits.device):
            logp = grouped[b, :, span] - lse[b, :, span]  # (k, tc, V)
            joint = logp + doc[b]
            q = (joint - joint.logsumexp(dim=0, keepdim=True)).exp_()  # (k, tc, V) passage posteriors per token
            q_sums = q.sum(dim=-1, keepdim=True)  # (k, tc, 1)
            hb = h[b, :, span]  # (1, tc, 1)
            grad_doc_lp[b] += (hb * q_sums).sum(dim=(1, 2))
            p = logp.exp_()
            # g (-p) + h (q - p Q) = h q - p (g + h Q), in float32 and then stored for low-precision logits
            dest = out[b, :, span]
            _store(dest, torch.mul(q, hb, out=_compute_into(dest, q.dtype)).sub_(p.mul_(g[b, :, span] + hb * q_sums)))
    return grad_doc_lp


def per_token_log_probs(
    seq_logits: torch.Tensor, target: torch.Tensor, doc_lp: torch.Tensor, smoothing: int = PLAIN
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(y_t | x, z_i, y_<t) per passage and position, and the smoothing statistic ``smoothing`` asks for.

    seq_logits (B*k, T, V), target (B, T), doc_lp (B, k) -> (B, k, T) and None, (B, k, T) sum_v log p(v)
    (VOCAB_SUMS) or (B, T) sum_v of the RAG-Token marginal log-probabilities (TOKEN_MARGINAL).
    """
    batch, n_docs = doc_lp.shape
    per_doc_target = target.repeat_interleave(n_docs, dim=0)  # (B*k, T)
    tok_lp, extra, _ = _VocabStats.apply(seq_logits, per_doc_target, doc_lp, smoothing)
    if smoothing == VOCAB_SUMS:
        extra = extra.view(batch, n_docs, -1)
    return tok_lp.view(batch, n_docs, -1), extra
