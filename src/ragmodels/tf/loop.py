"""TF twin of ragmodels.generation.loop: one decoding step over grouped passages, and the two searches.

  loop rows:     G groups x E copies (E = beams), row g*E + e
  decoder rows:  G x E x k, row (g*E + e)*k + j decodes against passage g*k + j
  RAG-Token:     group = question, k = n_docs, log p(v) = logsumexp_j [ log p(z_j|x) + log p_j(v) ]
  RAG-Sequence:  group = (question, passage), k = 1: log p(v) = log p(v | x, z)
The searches reproduce transformers' greedy search and (vectorized) beam search step for step, with the
logits processors min_length, forced_bos_token_id and forced_eos_token_id; bookkeeping is in NumPy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from transformers import GenerationConfig

from .marginalization import step_marginal
from .seq2seq import TFSeq2SeqLM, reorder_cache

UNSUPPORTED = {"do_sample": False, "num_beam_groups": 1, "penalty_alpha": None, "no_repeat_ngram_size": 0,
               "repetition_penalty": 1.0, "bad_words_ids": None, "encoder_no_repeat_ngram_size": 0}
NEG = -1.0e9
DEFAULTS = {"max_length": 20, "min_length": 0, "num_beams": 1, "num_return_sequences": 1, "length_penalty": 1.0,
            "early_stopping": False}  # transformers' values for fields a GenerationConfig leaves None


def resolve_generation_config(base: GenerationConfig, override: GenerationConfig | None, kwargs: dict[str, Any]) -> GenerationConfig:
    """``base`` updated by ``override`` and kwargs; refuses options the TF searches do not implement."""
    config = GenerationConfig.from_dict({**base.to_dict(), **(override.to_diff_dict() if override else {})})
    unused = config.update(**kwargs)
    if unused:
        raise TypeError(f"generate() got unexpected keyword arguments: {sorted(unused)}")
    for name, default in DEFAULTS.items():
        if getattr(config, name, None) is None:
            setattr(config, name, default)
    for name, default in UNSUPPORTED.items():
        if getattr(config, name, default) not in (default, None):
            raise ValueError(f"The TF RAG models support greedy and beam search only; {name} is not supported.")
    if config.decoder_start_token_id is None:
        raise ValueError("Set decoder_start_token_id (in the RAG config or the generation config) to generate.")
    return config


def eos_ids(config: GenerationConfig) -> np.ndarray:
    eos = config.eos_token_id
    return np.array([] if eos is None else np.atleast_1d(eos), dtype=np.int64)


class TFPassageDecodingStep:
    """Decoder steps of ``G*E`` loop rows over passages encoded once; ``__call__`` -> log-probs (G*E, V).

    doc_log_probs (G, k): log p(z_j | x) of each group's passages (None when k == 1).
    """

    def __init__(self, generator: TFSeq2SeqLM, input_ids: tf.Tensor, attention_mask: tf.Tensor, group_size: int,
                 doc_log_probs: tf.Tensor | None, copies: int):
        self.generator, self.k, self.copies = generator, group_size, copies
        self.hidden = generator.encode(input_ids, attention_mask).last_hidden_state  # (P, L, d): the encoder's one run
        self.groups = input_ids.shape[0] // group_size
        passage = np.arange(self.groups * group_size).reshape(self.groups, 1, group_size)
        self.rows = np.broadcast_to(passage, (self.groups, copies, group_size)).reshape(-1)  # (G*E*k,) passage per row
        self.mask_of_passages = attention_mask  # (P, L)
        self.mask = tf.gather(attention_mask, self.rows)  # (G*E*k, L)
        self.doc_lp = None if doc_log_probs is None else tf.repeat(doc_log_probs, copies, axis=0)  # (G*E, k)
        self.cache = None

    def __call__(self, input_ids: np.ndarray) -> np.ndarray:
        """input_ids (G*E, t): all tokens so far; with a cache only the last one is new."""
        new = input_ids if self.cache is None else input_ids[:, -1:]
        decoder_ids = tf.constant(np.repeat(new, self.k, axis=0))  # (G*E*k, t)
        hidden = tf.gather(self.hidden, self.rows) if self.cache is None else None  # cross-attention is cached after
        out = self.generator.decode(decoder_ids, hidden, self.mask, cache=self.cache)
        self.cache = out.cache
        return step_marginal(out.logits[:, -1], self.doc_lp).numpy()  # (G*E, V)

    def reorder(self, beam_idx: np.ndarray) -> None:
        """Loop row i continues loop row beam_idx[i] (same group): move its k decoder rows."""
        index = (beam_idx[:, None] * self.k + np.arange(self.k)).reshape(-1)  # (G*E*k,)
        self.cache = reorder_cache(self.cache, tf.constant(index))


def process(log_probs: np.ndarray, cur_len: int, config: GenerationConfig) -> np.ndarray:
    """The logits processors: min_length, forced BOS at step 1, forced EOS at the last step. (N, V)."""
    eos = eos_ids(config)
    if config.min_length and cur_len < config.min_length and eos.size:
        log_probs[:, eos] = -np.inf
    for token, when in ((config.forced_bos_token_id, 1), (config.forced_eos_token_id, config.max_length - 1)):
        if token is not None and cur_len == when:
            log_probs[:] = -np.inf
            log_probs[:, token] = 0.0
    return log_probs


def greedy_search(step: TFPassageDecodingStep, start: np.ndarray, config: GenerationConfig) -> np.ndarray:
    """transformers' greedy search: start (N, 1) -> (N, T), finished rows padded with pad_token_id."""
    ids, eos = start, eos_ids(config)
    unfinished = np.ones(len(ids), dtype=bool)
    while True:
        nxt = process(step(ids), ids.shape[1], config).argmax(-1)  # (N,)
        if eos.size:
            nxt = np.where(unfinished, nxt, config.pad_token_id)
        ids = np.concatenate([ids, nxt[:, None]], axis=1)
        unfinished &= ~np.isin(nxt, eos) & (ids.shape[1] < config.max_length)
        if not unfinished.any():
            return ids


def _gather(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per batch row, pick entries idx (B, n) along axis 1 of x (B, m, ...)."""
    return np.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)


def _topk(x: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-x, axis=-1, kind="stable")[:, :k]


def beam_search(step: TFPassageDecodingStep, start: np.ndarray, config: GenerationConfig) -> np.ndarray:
    """transformers' vectorized beam search: start (G*E, 1) -> (G*num_return_sequences, T)."""
    beams, max_len, lp, early = config.num_beams, config.max_length, config.length_penalty, config.early_stopping
    eos = eos_ids(config)
    batch, prompt = start.shape[0] // beams, start.shape[1]
    keep = max(2, 1 + eos.size) * beams
    top_mask = np.arange(keep) < beams  # (K,)
    fill = config.pad_token_id if config.pad_token_id else (eos[0] if eos.size else -1)
    running = np.full((batch, beams, max_len), fill, dtype=np.int64)
    running[:, :, :prompt] = start.reshape(batch, beams, prompt)
    sequences = running.copy()
    running_scores = np.zeros((batch, beams), np.float32)
    running_scores[:, 1:] = NEG
    scores = np.full((batch, beams), NEG, np.float32)
    finished = np.zeros((batch, beams), bool)
    improvable = np.ones((batch, 1), bool)
    running_idx = np.full((batch, beams, max_len - prompt), -1, np.int64)
    beam_idx = running_idx.copy()
    cur = prompt
    while True:
        log_probs = process(step(running[:, :, :cur].reshape(batch * beams, cur)), cur, config)  # (G*E, V)
        vocab = log_probs.shape[-1]
        acc = (log_probs.reshape(batch, beams, vocab) + running_scores[:, :, None]).reshape(batch, -1)  # (G, E*V)
        top = _topk(acc, keep)  # (G, K)
        top_lp = np.take_along_axis(acc, top, axis=1).astype(np.float32)
        src, tokens = top // vocab, top % vocab
        top_seq, top_idx = _gather(running, src), _gather(running_idx, src)
        top_seq[:, :, cur] = tokens
        top_idx[:, :, cur - prompt] = src + np.arange(batch)[:, None] * beams
        hits = np.isin(tokens, eos) | (cur + 1 >= max_len)  # (G, K) stopping criteria

        run_lp = top_lp + hits * np.float32(NEG)  # next running beams: the best unfinished ones
        nxt = _topk(run_lp, beams)
        running, running_scores, running_idx = _gather(top_seq, nxt), _gather(run_lp, nxt), _gather(top_idx, nxt)

        just = hits & top_mask[None]  # finished beams among the top E
        fin_lp = top_lp / np.float32((cur + 1 - prompt) ** lp)
        fin_lp += (finished.all(-1, keepdims=True) & (early is True)) * np.float32(NEG)
        fin_lp += (~improvable) * np.float32(NEG) + (~just) * np.float32(NEG)
        merged = np.concatenate([scores, fin_lp], axis=1)
        best = _topk(merged, beams)
        sequences = _gather(np.concatenate([sequences, top_seq], 1), best)
        beam_idx = _gather(np.concatenate([beam_idx, top_idx], 1), best)
        finished = _gather(np.concatenate([finished, just], 1), best)
        scores = _gather(merged, best)

        step.reorder(running_idx[:, :, cur - prompt].reshape(-1))
        cur += 1
        best_len = max_len - prompt if early == "never" and lp > 0 else cur - prompt
        best_running = running_scores[:, :1] / np.float32(best_len**lp)
        worst = np.where(finished, scores.min(1, keepdims=True), np.float32(NEG))
        improvable &= (best_running > worst).any(-1, keepdims=True)
        if not (improvable.any() and not (finished.all() and early is True) and not hits.all()):
            break
    n = config.num_return_sequences
    out = sequences[:, :n].reshape(batch * n, -1)
    generated = (beam_idx[:, :n].reshape(batch * n, -1) + 1 != 0).sum(1).max()
    return out[:, : prompt + generated]


def search(step: TFPassageDecodingStep, config: GenerationConfig) -> np.ndarray:
    """Greedy (num_beams == 1) or beam search from the decoder start token, E = step.copies rows per group."""
    start = np.full((step.groups * step.copies, 1), config.decoder_start_token_id, dtype=np.int64)
    return beam_search(step, start, config) if config.num_beams > 1 else greedy_search(step, start, config)
