"""TF twin of ragmodels.generation.sequence_decoding ("thorough"): beam search per passage, then every
distinct candidate scored under every passage and ranked by its marginal likelihood.

  log p(y|x) = logsumexp_i [ log p(z_i|x) + log p(y|x,z_i) ]
Shapes: B questions, k passages each (P = B*k), R candidates per passage (num_beams), C = k*R candidates
per question, T candidate length (decoder start token included), V vocabulary.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from transformers import GenerationConfig

from .contexts import resolve_contexts
from .loop import TFPassageDecodingStep, eos_ids, resolve_generation_config, search
from .marginalization import sequence_marginal


def rag_sequence_generate(
    model,
    input_ids: Any = None,
    attention_mask: Any = None,
    context_input_ids: Any = None,
    context_attention_mask: Any = None,
    doc_scores: Any = None,
    do_deduplication: bool | None = None,
    num_return_sequences: int | None = None,
    num_beams: int | None = None,
    n_docs: int | None = None,
    generation_config: GenerationConfig | None = None,
    **kwargs: Any,
) -> tf.Tensor:
    """``TFRagSequenceForGeneration.generate``: returns (B * num_return_sequences, T) token ids."""
    config = model.config
    do_deduplication = do_deduplication if do_deduplication is not None else config.do_deduplication
    num_return_sequences = num_return_sequences or getattr(config, "num_return_sequences", 1) or 1
    num_beams = num_beams or getattr(config, "num_beams", 1) or 1
    contexts = resolve_contexts(model, input_ids, attention_mask, context_input_ids, context_attention_mask, doc_scores, n_docs)
    k, batch = contexts.n_docs, contexts.batch_size

    # 1. candidates: R per passage; each passage is its own group (k = 1)
    kwargs.update(num_beams=num_beams, num_return_sequences=num_beams)
    gen_config = resolve_generation_config(GenerationConfig.from_model_config(config.generator), generation_config, kwargs)
    step = TFPassageDecodingStep(model.generator, contexts.input_ids, contexts.attention_mask, 1, None, num_beams if num_beams > 1 else 1)
    sequences = search(step, gen_config)  # (P*R, T)
    cands = sequences.reshape(batch, -1, sequences.shape[-1])  # (B, C, T)
    num_cands = cands.shape[1]

    bos_id = config.bos_token_id if config.bos_token_id is not None else config.generator.bos_token_id
    target_mask = _target_mask(cands[:, :, 1:], eos_ids(gen_config), bos_id)  # (B, C, T-1)
    same = (cands[:, :, None, :] == cands[:, None, :, :]).all(-1)  # (B, C, C) candidate c equals c'
    first = same.argmax(-1)  # (B, C) first index of c's value
    is_rep = first == np.arange(num_cands)  # (B, C) first occurrence

    # 2. log p(y_c | x, z_j) for every distinct candidate c and passage j: (B, C, k)
    b_idx, c_idx = np.nonzero(is_rep)  # the N distinct candidates
    passage_rows = (b_idx[:, None] * k + np.arange(k)).reshape(-1)  # (N*k,)
    ids = np.repeat(cands[b_idx, c_idx], k, axis=0)  # (N*k, T)
    mask = np.repeat(target_mask[b_idx, c_idx], k, axis=0)  # (N*k, T-1)
    scores = sequence_log_likelihood(step, ids, passage_rows, mask).numpy().reshape(-1, k)  # (N, k)
    ll = np.zeros((batch, num_cands, k), np.float32)
    ll[b_idx, c_idx] = scores
    ll = np.take_along_axis(ll, first[:, :, None], axis=1)  # duplicates share their first copy's scores

    # 3. marginalize over passages, rank, pick
    doc_lp = tf.nn.log_softmax(contexts.doc_scores, axis=1).numpy()  # (B, k)
    marginal = sequence_marginal(ll, doc_lp).numpy()  # (B, C)
    if do_deduplication:
        marginal = np.where(is_rep, marginal, -np.inf)
    n_out = min(num_return_sequences, num_cands)
    top = np.argsort(-marginal, axis=1, kind="stable")[:, :n_out]  # (B, n)
    chosen = np.take_along_axis(cands, top[:, :, None], axis=1)  # (B, n, T)
    pad = config.generator.pad_token_id
    chosen[np.isinf(np.take_along_axis(marginal, top, axis=1))] = pad if pad is not None else 0
    return tf.constant(chosen.reshape(batch * n_out, -1))


def _target_mask(targets: np.ndarray, eos: np.ndarray, bos_token_id: int | None) -> np.ndarray:
    """Which generated tokens count in log p(y|x,z): those up to and including the first EOS; a first token
    equal to BOS in every candidate of a question is left out. targets (B, C, T) -> bool (B, C, T)."""
    is_eos = np.isin(targets, eos)
    mask = (np.cumsum(is_eos, -1) - is_eos) == 0  # nothing before t was EOS
    if bos_token_id is not None:
        mask[..., 0] &= ~(targets[..., 0] == bos_token_id).all(-1, keepdims=True)
    return mask


def sequence_log_likelihood(step: TFPassageDecodingStep, ids: np.ndarray, passage_rows: np.ndarray,
                            target_mask: np.ndarray) -> tf.Tensor:
    """Teacher-forced sum_t log p(y_t | x, z, y_<t) of ids (R, T) under passages ``passage_rows`` (R,). -> (R,)"""
    hidden = tf.gather(step.hidden, passage_rows)  # (R, L, d)
    mask = tf.gather(step.mask_of_passages, passage_rows)  # (R, L)
    logits = step.generator.decode(tf.constant(ids[:, :-1]), hidden, mask).logits  # (R, T-1, V)
    token_lp = tf.gather(tf.nn.log_softmax(logits, -1), ids[:, 1:], batch_dims=2)  # (R, T-1)
    return tf.reduce_sum(tf.where(target_mask, token_lp, 0.0), axis=1)
