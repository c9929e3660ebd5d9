"""Exact top-k over several shards' results, chosen and ordered as one FAISS index would.

Ordering: higher scores first; equal scores by id as FAISS orders them (larger ids first for inner
product, smaller first for L2). Choosing among ties at the k-th score: a flat FAISS index scans ids in
order, takes a result while it holds fewer than k results scoring at least the k-th score, and lets a
strictly better result evict the smallest-id tie it holds once it holds k. ``scan_ties`` replays that
scan, given candidates that include EVERY passage scoring at least the k-th score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def merge_topk(scores: Sequence[np.ndarray], ids: Sequence[np.ndarray], k: int, *, larger_ids_first: bool,
               scan_ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` of every row of the shards' (bs, k_i) scores / global ids -> float32 (bs, k), int64 (bs, k).

    Holes (id -1, score -inf) sort last.
    """
    all_scores = np.concatenate(scores, axis=1)  # (bs, sum k_i)
    all_ids = np.concatenate(ids, axis=1)  # (bs, sum k_i)
    if scan_ties:
        kept = np.stack([_flat_scan(row_scores, row_ids, k) for row_scores, row_ids in zip(all_scores, all_ids)])
        all_scores, all_ids = np.take_along_axis(all_scores, kept, 1), np.take_along_axis(all_ids, kept, 1)  # (bs, k)
    order = np.lexsort((-all_ids if larger_ids_first else all_ids, -all_scores), axis=-1)[:, :k]  # primary key last
    return np.take_along_axis(all_scores, order, 1), np.take_along_axis(all_ids, order, 1)


def kth_scores(scores: Sequence[np.ndarray], k: int) -> np.ndarray:
    """The k-th best score of every row over all shards' (bs, k_i) scores -> (bs,)."""
    return -np.sort(-np.concatenate(scores, axis=1), axis=1)[:, k - 1]


def _flat_scan(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Positions (k,) of the candidates a flat index's id-ordered scan keeps (see the module docstring)."""
    threshold = -np.sort(-scores)[k - 1]
    better = np.flatnonzero(scores > threshold)
    tied = np.flatnonzero(scores == threshold)
    if threshold == -np.inf or len(better) + len(tied) == k:  # holes, or no choice among ties
        return np.concatenate([better, tied])[:k]
    held: list[int] = []  # positions of the ties held, in increasing id order
    count = 0  # results held scoring >= threshold
    for position in sorted(np.concatenate([better, tied]), key=lambda p: ids[p]):
        if scores[position] > threshold:
            if count == k:
                held.pop(0)
            count = min(count + 1, k)
        elif count < k:
            held.append(position)
            count += 1
    return np.concatenate([better, np.asarray(held, dtype=np.int64)])
