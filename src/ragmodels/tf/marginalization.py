"""TF twin of ragmodels.marginal: the same math, names and shapes, in TensorFlow (the only TF file calling logsumexp).

B questions, k = n_docs passages per question, T target tokens, V vocabulary.
  log p(z_i | x)           = log_softmax(doc_scores)_i
  RAG-Sequence: log p(y|x) = logsumexp_i [ log p(z_i|x) + sum_t log p(y_t | x, z_i, y_<t) ]
  RAG-Token:    log p(y|x) = sum_t logsumexp_i [ log p(z_i|x) + log p(y_t | x, z_i, y_<t) ]
Loss = (1 - eps) * NLL + (eps / V) * smoothing term (minus the vocabulary sum of log-probabilities).
As in PyTorch, log-probabilities at the target are ``logit[y] - logsumexp(logits)``; no log_softmax copy.
"""

from __future__ import annotations

import tensorflow as tf


def shift_left(target: tf.Tensor, pad_token_id: int) -> tf.Tensor:
    """Targets y_1..y_T for decoder inputs y_0..y_{T-1}: drop the first token, append a pad. (B, T)."""
    pad = tf.fill((tf.shape(target)[0], 1), tf.constant(pad_token_id, target.dtype))
    return tf.concat([target[:, 1:], pad], axis=1)


def doc_log_probs(doc_scores: tf.Tensor) -> tf.Tensor:
    """log p(z_i | x): (B, k) -> (B, k)."""
    return tf.nn.log_softmax(doc_scores, axis=1)


def step_marginal(logits: tf.Tensor, doc_lp) -> tf.Tensor:
    """Next-token log-probs of R decoding rows from their k passages' logits (R*k, V), doc_lp (R, k) -> (R, V);
    doc_lp None: one passage per row, just the log_softmax (the twin of ``ragmodels.marginal.step_marginal``)."""
    log_probs = tf.nn.log_softmax(logits, axis=-1)  # (R*k, V)
    if doc_lp is None:
        return log_probs
    log_probs = tf.reshape(log_probs, (-1, doc_lp.shape[-1], log_probs.shape[-1]))  # (R, k, V)
    return tf.reduce_logsumexp(log_probs + doc_lp[..., None], axis=1)  # (R, V)


def sequence_marginal(seq_ll, doc_lp) -> tf.Tensor:
    """log p(y_c | x) of C candidates from seq_ll (B, C, k) = log p(y_c | x, z_i) and doc_lp (B, k) -> (B, C)."""
    return tf.reduce_logsumexp(seq_ll + doc_lp[:, None, :], axis=-1)


def _per_token_log_probs(
    seq_logits: tf.Tensor, target: tf.Tensor, n_docs: int, with_vocab_sums: bool
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
    """Per passage and position: log p(y_t), logsumexp over the vocabulary, and sum_v log p(v).

    seq_logits (B*k, T, V), target (B, T) -> three (B, k, T) tensors (the last is None unless asked).
    """
    vocab = tf.cast(tf.shape(seq_logits)[-1], seq_logits.dtype)
    lse = tf.reduce_logsumexp(seq_logits, axis=-1)  # (B*k, T)
    per_doc_target = tf.repeat(target, n_docs, axis=0)  # (B*k, T)
    target_log_probs = tf.gather(seq_logits, per_doc_target, batch_dims=2) - lse  # (B*k, T)
    vocab_sums = tf.reduce_sum(seq_logits, axis=-1) - vocab * lse if with_vocab_sums else None  # (B*k, T)

    def per_doc(x: tf.Tensor) -> tf.Tensor:
        return tf.reshape(x, (-1, n_docs, tf.shape(x)[-1]))  # (B*k, T) -> (B, k, T)

    return per_doc(target_log_probs), per_doc(lse), per_doc(vocab_sums) if with_vocab_sums else None


def _token_marginal(seq_logits: tf.Tensor, lse: tf.Tensor, doc_lp: tf.Tensor) -> tf.Tensor:
    """logsumexp_i [ log p(z_i|x) + log p(v | x, z_i, y_<t) ] for every v: -> (B, T, V).

    seq_logits (B*k, T, V), lse (B, k, T), doc_lp (B, k).
    """
    batch, n_docs, length = tf.unstack(tf.shape(lse))
    logits = tf.reshape(seq_logits, (batch, n_docs, length, -1))  # (B, k, T, V)
    joint = logits - lse[..., None] + doc_lp[:, :, None, None]  # (B, k, T, V): log p(z_i|x) p(v|x,z_i)
    return tf.reduce_logsumexp(joint, axis=1)  # (B, T, V)


def token_marginal_log_probs(seq_logits: tf.Tensor, doc_scores: tf.Tensor, n_docs: int) -> tf.Tensor:
    """RAG-Token next-token log-probabilities marginalized over passages: (B*k, T, V) -> (B, T, V)."""
    lse = tf.reshape(tf.reduce_logsumexp(seq_logits, axis=-1), (-1, n_docs, tf.shape(seq_logits)[1]))  # (B, k, T)
    return _token_marginal(seq_logits, lse, doc_log_probs(doc_scores))


def _masked_fill(x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """torch's ``x.masked_fill(mask, 0.0)``; mask broadcasts against x."""
    return tf.where(mask, tf.zeros_like(x), x)


def _combine(ll: tf.Tensor, smooth: tf.Tensor | None, epsilon: float, vocab: int, reduce_loss: bool) -> tf.Tensor:
    """loss = (1 - eps) * (-ll) + eps / V * (-smooth); ll, smooth: (B,) summed over the batch if reduce_loss."""
    nll = -ll
    if reduce_loss:
        nll = tf.reduce_sum(nll)
    if smooth is None:  # epsilon == 0: the smoothing term would be multiplied by zero
        return nll
    smooth_loss = -tf.reduce_sum(smooth) if reduce_loss else -smooth
    return (1.0 - epsilon) * nll + (epsilon / vocab) * smooth_loss


def rag_sequence_nll(
    seq_logits: tf.Tensor,
    doc_scores: tf.Tensor,
    target: tf.Tensor,
    pad_token_id: int,
    bos_token_id: int | None = None,
    epsilon: float = 0.0,
    exclude_bos_score: bool = False,
    reduce_loss: bool = False,
) -> tf.Tensor:
    """RAG-Sequence negative marginal log-likelihood, (B,) or scalar, as the reference's get_nll.

    seq_logits (B*k, T, V) for decoder inputs ``target`` (B, T); doc_scores (B, k). log p(z|x) is added at the
    second target position (the first being BOS for BART); pads (targets equal to pad_token_id) score zero.
    """
    n_docs = doc_scores.shape[1]
    vocab = seq_logits.shape[-1]
    target = shift_left(target, pad_token_id)  # (B, T)
    with_smoothing = epsilon != 0.0
    tok_ll, _, tok_smooth = _per_token_log_probs(seq_logits, target, n_docs, with_smoothing)  # (B, k, T)

    at_second = tf.one_hot(1, tf.shape(target)[1], dtype=seq_logits.dtype)  # (T,) one-hot at position 1
    doc_term = doc_log_probs(doc_scores)[..., None] * at_second  # (B, k, T)
    pad_mask = tf.equal(target, pad_token_id)[:, None, :]  # (B, 1, T)

    tok_ll = _masked_fill(tok_ll + doc_term, pad_mask)  # (B, k, T)
    use_bos = bos_token_id is not None and bool(tf.reduce_all(tf.equal(target[:, 0], bos_token_id)))
    first = 1 if exclude_bos_score and use_bos else 0
    ll = tf.reduce_logsumexp(tf.reduce_sum(tok_ll[:, :, first:], axis=2), axis=1)  # (B,): logsumexp over passages

    smooth = None
    if with_smoothing:
        tok_smooth = _masked_fill(tok_smooth + vocab * doc_term, pad_mask)  # (B, k, T)
        smooth = tf.reduce_logsumexp(tf.reduce_sum(tok_smooth, axis=2), axis=1)  # (B,)
    return _combine(ll, smooth, epsilon, vocab, reduce_loss)


def rag_token_nll(
    seq_logits: tf.Tensor,
    doc_scores: tf.Tensor,
    target: tf.Tensor,
    pad_token_id: int,
    epsilon: float = 0.0,
    reduce_loss: bool = False,
) -> tf.Tensor:
    """RAG-Token negative marginal log-likelihood, (B,) or scalar, as the reference's get_nll.

    seq_logits (B*k, T, V) for decoder inputs ``target`` (B, T); doc_scores (B, k). Pads score zero.
    """
    n_docs = doc_scores.shape[1]
    vocab = seq_logits.shape[-1]
    target = shift_left(target, pad_token_id)  # (B, T)
    tok_ll, lse, _ = _per_token_log_probs(seq_logits, target, n_docs, with_vocab_sums=False)  # (B, k, T)
    doc_lp = doc_log_probs(doc_scores)  # (B, k)
    pad_mask = tf.equal(target, pad_token_id)  # (B, T)

    marginal_ll = tf.reduce_logsumexp(tok_ll + doc_lp[..., None], axis=1)  # (B, T): log p(y_t | x, y_<t)
    ll = tf.reduce_sum(_masked_fill(marginal_ll, pad_mask), axis=1)  # (B,)

    smooth = None
    if epsilon != 0.0:
        # sum_v of the marginal log-probabilities; (B, k, T, V) recomputed in backward, not stored.
        vocab_sums = tf.recompute_grad(lambda logits, l, d: tf.reduce_sum(_token_marginal(logits, l, d), axis=-1))(
            seq_logits, lse, doc_lp
        )  # (B, T)
        smooth = tf.reduce_sum(_masked_fill(vocab_sums, pad_mask), axis=1)  # (B,)
    return _combine(ll, smooth, epsilon, vocab, reduce_loss)
