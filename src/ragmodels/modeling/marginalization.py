"""All of RAG's marginalization math, once: passage posteriors, RAG-Token marginals, both NLL losses.

Notation (see docs): B questions, k = n_docs passages per question, T target tokens, V vocabulary.
  log p(z_i | x)           = log_softmax(doc_scores)_i
  RAG-Sequence: log p(y|x) = logsumexp_i [ log p(z_i|x) + sum_t log p(y_t | x, z_i, y_<t) ]
  RAG-Token:    log p(y|x) = sum_t logsumexp_i [ log p(z_i|x) + log p(y_t | x, z_i, y_<t) ]
Loss = (1 - eps) * NLL + (eps / V) * smoothing term, where the smoothing term is minus the sum over
the vocabulary of the (marginal) log-probabilities — exactly the reference's ``get_nll``.

Memory: the generator's logits (B*k, T, V) are the only vocabulary-sized tensor we keep. A
log-probability at the target is ``logit[y] - logsumexp(logits)`` and a sum of log-probabilities over
the vocabulary is ``sum(logits) - V * logsumexp(logits)``, so neither needs a log_softmax copy.
Only RAG-Token's smoothing term and its ``do_marginalize`` output need the full marginal; the loss
recomputes it in the backward pass (activation checkpointing) instead of storing it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def shift_left(target: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """Targets y_1..y_T for decoder inputs y_0..y_{T-1}: drop the first token, append a pad. (B, T)."""
    return F.pad(target[:, 1:], (0, 1), value=pad_token_id)


def doc_log_probs(doc_scores: torch.Tensor) -> torch.Tensor:
    """log p(z_i | x): (B, k) -> (B, k)."""
    return torch.log_softmax(doc_scores, dim=1)


def _per_token_log_probs(
    seq_logits: torch.Tensor, target: torch.Tensor, n_docs: int, with_vocab_sums: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per passage and position: log p(y_t), logsumexp over the vocabulary, and sum_v log p(v).

    seq_logits (B*k, T, V), target (B, T) -> three (B, k, T) tensors (the last is None unless asked).
    """
    vocab = seq_logits.size(-1)
    lse = seq_logits.logsumexp(dim=-1)  # (B*k, T)
    per_doc_target = target.repeat_interleave(n_docs, dim=0).unsqueeze(-1)  # (B*k, T, 1)
    target_log_probs = seq_logits.gather(-1, per_doc_target).squeeze(-1) - lse  # (B*k, T)
    vocab_sums = seq_logits.sum(dim=-1) - vocab * lse if with_vocab_sums else None  # (B*k, T)

    def per_doc(x: torch.Tensor) -> torch.Tensor:
        return x.view(-1, n_docs, x.size(-1))  # (B*k, T) -> (B, k, T)

    return per_doc(target_log_probs), per_doc(lse), per_doc(vocab_sums) if with_vocab_sums else None


def _token_marginal(seq_logits: torch.Tensor, lse: torch.Tensor, doc_lp: torch.Tensor) -> torch.Tensor:
    """logsumexp_i [ log p(z_i|x) + log p(v | x, z_i, y_<t) ] for every v: -> (B, T, V).

    seq_logits (B*k, T, V), lse (B, k, T), doc_lp (B, k).
    """
    batch, n_docs, length = lse.shape
    logits = seq_logits.view(batch, n_docs, length, -1)  # (B, k, T, V)
    joint = logits - lse.unsqueeze(-1) + doc_lp[:, :, None, None]  # (B, k, T, V): log p(z_i|x) p(v|x,z_i)
    return joint.logsumexp(dim=1)  # (B, T, V)


def token_marginal_log_probs(seq_logits: torch.Tensor, doc_scores: torch.Tensor, n_docs: int) -> torch.Tensor:
    """RAG-Token next-token log-probabilities marginalized over passages: (B*k, T, V) -> (B, T, V).

    The reference's ``RagTokenForGeneration.marginalize``; generation uses it once per step (T = 1).
    """
    lse = seq_logits.logsumexp(dim=-1).view(-1, n_docs, seq_logits.size(1))  # (B, k, T)
    return _token_marginal(seq_logits, lse, doc_log_probs(doc_scores))


def _combine(
    ll: torch.Tensor, smooth: torch.Tensor | None, epsilon: float, vocab: int, reduce_loss: bool
) -> torch.Tensor:
    """loss = (1 - eps) * (-ll) + eps / V * (-smooth); ll, smooth: (B,) summed over the batch if reduce_loss."""
    nll = -ll
    if reduce_loss:
        nll = nll.sum()
    if smooth is None:  # epsilon == 0: the smoothing term would be multiplied by zero
        return nll
    smooth_loss = -smooth.sum() if reduce_loss else -smooth
    return (1.0 - epsilon) * nll + (epsilon / vocab) * smooth_loss


def rag_sequence_nll(
    seq_logits: torch.Tensor,
    doc_scores: torch.Tensor,
    target: torch.Tensor,
    pad_token_id: int,
    bos_token_id: int | None = None,
    epsilon: float = 0.0,
    exclude_bos_score: bool = False,
    reduce_loss: bool = False,
) -> torch.Tensor:
    """RAG-Sequence negative marginal log-likelihood, (B,) or scalar, as the reference's get_nll.

    seq_logits (B*k, T, V) for decoder inputs ``target`` (B, T); doc_scores (B, k). As in the reference
    (and fairseq's original), log p(z|x) is added at the second target position, the first one being BOS
    for BART, and pads (targets equal to pad_token_id) score zero.
    """
    batch, n_docs = doc_scores.shape
    vocab = seq_logits.size(-1)
    target = shift_left(target, pad_token_id)  # (B, T)
    with_smoothing = epsilon != 0.0
    tok_ll, _, tok_smooth = _per_token_log_probs(seq_logits, target, n_docs, with_smoothing)  # (B, k, T)

    length = target.size(1)
    at_second = doc_scores.new_zeros(length)  # (T,) one-hot at position 1 (all zeros if T == 1)
    at_second[1:2] = 1.0
    doc_term = doc_log_probs(doc_scores).unsqueeze(-1) * at_second  # (B, k, T)
    pad_mask = target.eq(pad_token_id).unsqueeze(1)  # (B, 1, T)

    tok_ll = (tok_ll + doc_term).masked_fill(pad_mask, 0.0)  # (B, k, T)
    use_bos = bos_token_id is not None and bool(target[:, 0].eq(bos_token_id).all())
    first = 1 if exclude_bos_score and use_bos else 0
    ll = tok_ll[:, :, first:].sum(dim=2).logsumexp(dim=1)  # (B,): logsumexp over passages

    smooth = None
    if with_smoothing:
        tok_smooth = (tok_smooth + vocab * doc_term).masked_fill(pad_mask, 0.0)  # (B, k, T)
        smooth = tok_smooth.sum(dim=2).logsumexp(dim=1)  # (B,)
    return _combine(ll, smooth, epsilon, vocab, reduce_loss)


def rag_token_nll(
    seq_logits: torch.Tensor,
    doc_scores: torch.Tensor,
    target: torch.Tensor,
    pad_token_id: int,
    epsilon: float = 0.0,
    reduce_loss: bool = False,
) -> torch.Tensor:
    """RAG-Token negative marginal log-likelihood, (B,) or scalar, as the reference's get_nll.

    seq_logits (B*k, T, V) for decoder inputs ``target`` (B, T); doc_scores (B, k). Pads score zero.
    """
    n_docs = doc_scores.size(1)
    vocab = seq_logits.size(-1)
    target = shift_left(target, pad_token_id)  # (B, T)
    tok_ll, lse, _ = _per_token_log_probs(seq_logits, target, n_docs, with_vocab_sums=False)  # (B, k, T)
    doc_lp = doc_log_probs(doc_scores)  # (B, k)
    pad_mask = target.eq(pad_token_id)  # (B, T)

    marginal_ll = (tok_ll + doc_lp.unsqueeze(-1)).logsumexp(dim=1)  # (B, T): log p(y_t | x, y_<t)
    ll = marginal_ll.masked_fill(pad_mask, 0.0).sum(dim=1)  # (B,)

    smooth = None
    if epsilon != 0.0:
        # sum_v of the marginal log-probabilities; (B, k, T, V) recomputed in backward, not stored.
        vocab_sums = checkpoint(
            lambda logits, l, d: _token_marginal(logits, l, d).sum(dim=-1), seq_logits, lse, doc_lp,
            use_reentrant=False,
        )  # (B, T)
        smooth = vocab_sums.masked_fill(pad_mask, 0.0).sum(dim=1)  # (B,)
    return _combine(ll, smooth, epsilon, vocab, reduce_loss)
