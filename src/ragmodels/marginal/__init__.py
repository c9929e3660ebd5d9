"""RAG's marginal over retrieved passages, once: what the losses, both decoders, candidate scoring and the
pipeline compute (the only PyTorch code outside ``tf/`` that calls logsumexp; ``fused`` is its fast path).

B questions, k = n_docs passages each, T target tokens, V vocabulary, R decoding rows, C candidates.
  log p(z_i | x)            = log_softmax(doc_scores)_i                             doc_log_prior
  RAG-Token, one step:      log p(v | x, y_<t) = logsumexp_i [ log p(z_i|x) + log p(v | x, z_i, y_<t) ]
  RAG-Sequence:             log p(y | x) = logsumexp_i [ log p(z_i|x) + sum_t log p(y_t | x, z_i, y_<t) ]
  RAG-Token:                log p(y | x) = sum_t (the one-step marginal at y_t)
  doc posterior:            p(z_i | x, y) proportional to p(z_i|x) p(y|x,z_i) (per token for RAG-Token)
  loss (reference get_nll): (1 - eps) * NLL + eps / V * (minus the vocabulary sum of the log-probabilities)
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from .fused import PLAIN, TOKEN_MARGINAL, VOCAB_SUMS, per_token_log_probs as fused_per_token_log_probs


def doc_log_prior(doc_scores: torch.Tensor) -> torch.Tensor:
    """log p(z_i | x): (B, k) -> (B, k)."""
    return torch.log_softmax(doc_scores, dim=1)


def shift_left(target: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """Targets y_1..y_T for decoder inputs y_0..y_{T-1}: drop the first token, append a pad. (B, T)."""
    return F.pad(target[:, 1:], (0, 1), value=pad_token_id)


def token_log_probs(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """log p(y_t | z, y_<t) = logit[y_t] - logsumexp_v(logits): logits (R, T, V), target (R, T) -> (R, T)."""
    return logits.gather(-1, target.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


def step_marginal(logits: torch.Tensor, doc_lp: torch.Tensor | None) -> torch.Tensor:
    """Next-token log-probs of R decoding rows from their k passages' logits (R*k, V), doc_lp (R, k) -> (R, V).

    doc_lp None: one passage per row (RAG-Sequence's per-passage beams), just the log_softmax.
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (R*k, V)
    if doc_lp is None:
        return log_probs
    log_probs = log_probs.view(doc_lp.shape[0], -1, log_probs.shape[-1])  # (R, k, V)
    return torch.logsumexp(log_probs + doc_lp.float().unsqueeze(-1), dim=1)  # (R, V)


def token_marginal(seq_logits: torch.Tensor, doc_scores: torch.Tensor, n_docs: int) -> torch.Tensor:
    """The one-step marginal at every position (the reference's ``marginalize``): (B*k, T, V) -> (B, T, V)."""
    batch_k, length, vocab = seq_logits.shape
    lse = seq_logits.logsumexp(dim=-1).view(-1, n_docs, length)  # (B, k, T)
    logits = seq_logits.view(-1, n_docs, length, vocab)  # (B, k, T, V)
    joint = logits - lse.unsqueeze(-1) + doc_log_prior(doc_scores)[:, :, None, None]  # (B, k, T, V)
    return joint.logsumexp(dim=1)  # (B, T, V)


def sequence_marginal(seq_ll: torch.Tensor, doc_lp: torch.Tensor) -> torch.Tensor:
    """log p(y_c | x) of C candidates from seq_ll (B, C, k) = log p(y_c | x, z_i) and doc_lp (B, k) -> (B, C)."""
    return torch.logsumexp(seq_ll + doc_lp[:, None, :], dim=-1)


def doc_posterior(doc_logprior: torch.Tensor, token_logprobs: torch.Tensor,
                  kind: Literal["sequence", "token"]) -> torch.Tensor:
    """p(z_i | x, y): doc_logprior (B, k), token_logprobs (B, k, T) log p(y_t | x, z_i, y_<t) (0 where a token
    does not count) -> "sequence": (B, k) per answer; "token": (B, k, T) per target token. Sums to 1 over k."""
    if kind == "sequence":
        return torch.softmax(doc_logprior + token_logprobs.sum(-1), dim=1)  # (B, k)
    if kind == "token":
        return torch.softmax(doc_logprior.unsqueeze(-1) + token_logprobs, dim=1)  # (B, k, T)
    raise ValueError(f"kind={kind!r}; use 'sequence' or 'token'.")


def counted_targets(targets: torch.Tensor, eos: torch.Tensor | None, bos_token_id: int | None) -> torch.Tensor:
    """Which generated tokens y_1..y_T (..., T) count in log p(y|x,z): those up to and including the first EOS,
    less a first token equal to BOS in every candidate of a question (exclude_bos_score; BART forces it)."""
    if eos is None:
        mask = torch.ones_like(targets, dtype=torch.bool)
    else:
        is_eos = torch.isin(targets, eos.to(targets.device))  # (..., T)
        mask = (is_eos.cumsum(-1) - is_eos.int()) == 0  # nothing before t was EOS
    if bos_token_id is not None:
        forced_bos = targets[..., 0].eq(bos_token_id).all(dim=-1, keepdim=True)  # (B, 1): every candidate
        mask[..., 0] &= ~forced_bos
    return mask


def _per_token(seq_logits, target, doc_lp, smoothing: int, fused: bool):
    """log p(y_t | x, z_i) (B, k, T) and the smoothing sums: (B, k, T) sum_v log p(v|z_i) or (B, T) sum_v of the
    RAG-Token marginal. ``fused``: the fast path (``fused.py``), else the plain formula below (equal, tested)."""
    if fused:
        return fused_per_token_log_probs(seq_logits, target, doc_lp, smoothing)
    batch, n_docs = doc_lp.shape
    seq_lp = seq_logits.log_softmax(-1).view(batch, n_docs, target.shape[1], -1)  # (B, k, T, V)
    tok = seq_lp.gather(-1, target[:, None, :, None].expand(-1, n_docs, -1, 1)).squeeze(-1)  # (B, k, T)
    if smoothing == VOCAB_SUMS:
        return tok, seq_lp.sum(-1)  # (B, k, T)
    if smoothing == TOKEN_MARGINAL:
        return tok, (seq_lp + doc_lp[:, :, None, None]).logsumexp(1).sum(-1)  # (B, T)
    return tok, None


def _smoothed(ll, smooth, epsilon: float, vocab: int, reduce_loss: bool) -> torch.Tensor:
    """Label smoothing: (1 - eps) * (-ll) + eps / V * (-smooth); ll, smooth (B,), summed if reduce_loss."""
    nll = -ll.sum() if reduce_loss else -ll
    if smooth is None:  # epsilon == 0: the smoothing term would be multiplied by zero
        return nll
    smooth_loss = -smooth.sum() if reduce_loss else -smooth
    return (1.0 - epsilon) * nll + (epsilon / vocab) * smooth_loss


def rag_sequence_nll(seq_logits: torch.Tensor, doc_scores: torch.Tensor, target: torch.Tensor, pad_token_id: int,
                     bos_token_id: int | None = None, epsilon: float = 0.0, exclude_bos_score: bool = False,
                     reduce_loss: bool = False, fused: bool = True) -> torch.Tensor:
    """RAG-Sequence NLL, (B,) or scalar: seq_logits (B*k, T, V) for decoder inputs ``target`` (B, T), doc_scores
    (B, k). As the reference (and fairseq), log p(z|x) is added at the second target position (the first is BOS
    for BART) and pads score zero."""
    vocab = seq_logits.size(-1)
    target = shift_left(target, pad_token_id)  # (B, T)
    doc_lp = doc_log_prior(doc_scores)  # (B, k)
    tok_ll, tok_smooth = _per_token(seq_logits, target, doc_lp, VOCAB_SUMS if epsilon else PLAIN, fused)
    at_second = doc_scores.new_zeros(target.size(1))  # (T,) one-hot at position 1 (all zeros if T == 1)
    at_second[1:2] = 1.0
    doc_term = doc_lp.unsqueeze(-1) * at_second  # (B, k, T)
    pad_mask = target.eq(pad_token_id).unsqueeze(1)  # (B, 1, T)
    tok_ll = (tok_ll + doc_term).masked_fill(pad_mask, 0.0)  # (B, k, T)
    use_bos = bos_token_id is not None and bool(target[:, 0].eq(bos_token_id).all())
    first = 1 if exclude_bos_score and use_bos else 0
    ll = tok_ll[:, :, first:].sum(dim=2).logsumexp(dim=1)  # (B,)
    smooth = None
    if epsilon != 0.0:
        smooth = (tok_smooth + vocab * doc_term).masked_fill(pad_mask, 0.0).sum(dim=2).logsumexp(dim=1)  # (B,)
    return _smoothed(ll, smooth, epsilon, vocab, reduce_loss)


def rag_token_nll(seq_logits: torch.Tensor, doc_scores: torch.Tensor, target: torch.Tensor, pad_token_id: int,
                  epsilon: float = 0.0, reduce_loss: bool = False, fused: bool = True) -> torch.Tensor:
    """RAG-Token NLL, (B,) or scalar: seq_logits (B*k, T, V) for decoder inputs ``target`` (B, T), doc_scores
    (B, k). Pads score zero."""
    vocab = seq_logits.size(-1)
    target = shift_left(target, pad_token_id)  # (B, T)
    doc_lp = doc_log_prior(doc_scores)  # (B, k)
    tok_ll, vocab_sums = _per_token(seq_logits, target, doc_lp, TOKEN_MARGINAL if epsilon else PLAIN, fused)
    pad_mask = target.eq(pad_token_id)  # (B, T)
    marginal_ll = (tok_ll + doc_lp.unsqueeze(-1)).logsumexp(dim=1)  # (B, T): log p(y_t | x, y_<t)
    ll = marginal_ll.masked_fill(pad_mask, 0.0).sum(dim=1)  # (B,)
    smooth = vocab_sums.masked_fill(pad_mask, 0.0).sum(dim=1) if epsilon != 0.0 else None  # (B,)
    return _smoothed(ll, smooth, epsilon, vocab, reduce_loss)
