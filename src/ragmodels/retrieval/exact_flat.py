"""Exact flat inner-product search through a bfloat16 scan: FAISS's ids and scores, faster.

For a query q and stored vector x (float32), FAISS's IndexFlatIP reports f(q, x), the float32 dot
product. We scan a bfloat16 copy instead: s(q, x) = bf16(<bf16(q), bf16(x)>) with float32 accumulation
(torch's CPU bf16 GEMM: oneDNN / cpublas accumulate exact bf16 products in float32). With u = 2^-8
(bf16 unit roundoff), g = d 2^-24 / (1 - d 2^-24) (float32 summation of d terms, any order), and
q x - q~ x~ = q (x - x~) + x~ (q - q~):
    |<q,x> - <q~,x~>|     <= (2u + u^2) |q| |x|
    |sum_fp32 - <q~,x~>|  <= g (1+u)^2 |q| |x|          (accumulation)
    |s - sum_fp32|        <= u (1+u)^2 |q| |x|          (the bf16 output)
    |f - <q,x>|           <= g |q| |x|                  (FAISS's own float32 rounding)
so |s - f| <= e = (2u + u^2 + (2g + u)(1+u)^2) |q| N + a, N the largest stored norm and a a term
for bf16 denormals flushed to zero. If T is the k-th largest s of a query, k vectors have f >= T - e,
so FAISS's k-th score is >= T - e and every vector FAISS could return has s >= T - 2e: the candidates.
They are re-scored by FAISS itself (an IndexFlatIP over the union of the batch's candidates, in
increasing id order, searched with the same batch), so scores are FAISS's own and ties fall as FAISS
breaks them (its result depends only on the id-ordered vectors scoring at least its k-th score).

Bit-equal scores need the same FAISS kernel for the candidates as for the full scan. faiss-cpu 1.15
computes a batch one query at a time with one kernel whose result does not depend on a vector's
position, except (measured, tests/retrieval/test_exact_flat.py) when the batch is large enough for BLAS
(nq * d >= distance_compute_blas_threshold: sgemm over blocks of 1024 vectors, position-dependent
rounding) or when it has fewer queries than OpenMP threads and >= ~10,000 vectors (a database-parallel
kernel). Those batches, and batches whose candidates overflow the scan's top list, go to FAISS's own
full scan.

The bf16 copy is built on first use and cached next to the index file (``<index>.bf16``, memory-mapped,
validated against the index file's size, mtime and a sample of its vectors; rebuilt when stale) when
the folder is writable, kept in memory otherwise.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path

import faiss
import numpy as np
import torch

from ragmodels._io import atomic_write_bytes

MAGIC = b"RAGMBF16"
HEADER_BYTES = 4096  # magic, header length, JSON header; the bf16 matrix starts here (page aligned)
SUFFIX = ".bf16"
MIN_VECTORS = 4096  # below this FAISS's own scan is as fast
DB_PARALLEL_VECTORS = 9000  # at or above: FAISS may take its database-parallel kernel (switches near 10,000)
U_BF16 = 2.0**-8
U_FP32 = 2.0**-24


def stored_vectors(index: faiss.Index) -> np.ndarray:
    """The float32 (n, d) matrix of a flat FAISS index, as a view (no copy; memory-mapped files stay mapped)."""
    flat = faiss.downcast_index(index)
    n, d = int(flat.ntotal), int(flat.d)
    if n == 0:
        return np.zeros((0, d), np.float32)
    return faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d)


def error_bound(query_norms: np.ndarray, max_norm: float, dimension: int) -> np.ndarray:
    """e per query (bs,): the bound on |bf16 scan score - FAISS's score| of the module docstring."""
    u, g = U_BF16, dimension * U_FP32 / (1 - dimension * U_FP32)
    relative = 2 * u + u * u + (2 * g + u) * (1 + u) ** 2
    denormal = 2.0**-125 * math.sqrt(dimension) * (query_norms + max_norm) + dimension * 2.0**-140
    return (relative * query_norms * max_norm + denormal) * (1 + 1e-6)  # (bs,); 1e-6: float64 rounding of this sum


def same_kernel(nq: int, ny: int, d: int) -> bool:
    """Whether FAISS scores ``nq`` queries against ``ny`` vectors with its position-independent per-query
    kernel (see the module docstring), so that re-scoring candidates alone gives its bits."""
    if nq * d >= faiss.cvar.distance_compute_blas_threshold:
        return False
    return nq >= faiss.omp_get_max_threads() or ny < DB_PARALLEL_VECTORS


class ExactFlatSearch:
    """Top-k of a flat inner-product FAISS index: a bf16 scan, then FAISS re-scores the candidates."""

    def __init__(self, index: faiss.Index, path: str | os.PathLike | None = None, *, min_vectors: int | None = None):
        self.index = index
        self.vectors = stored_vectors(index)  # (n, d) float32 view
        self.min_vectors = MIN_VECTORS if min_vectors is None else min_vectors
        self.copy: torch.Tensor | None = None  # (n, d) bfloat16, built on first search
        self.max_norm = 0.0
        self.index_path = None if path is None else Path(path)
        self.cache_path = None if path is None else Path(str(path) + SUFFIX)
        self.cached = False  # whether ``copy`` is memory-mapped from ``cache_path``

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """FAISS's (scores (bs, k) float32, ids (bs, k) int64) for ``queries`` (bs, d) float32, or None
        where FAISS's own scan should answer (small index, k too close to n, non-finite input, too many
        candidates)."""
        n = len(self.vectors)
        kc = min(n, max(4 * k, k + 32))  # scan list size: candidates must fit in it
        if n < self.min_vectors or kc >= n or not same_kernel(len(queries), n, queries.shape[1]):
            return None
        if not np.isfinite(queries).all():
            return None
        copy = self._copy()
        if copy is None:
            return None
        q = torch.from_numpy(queries)  # (bs, d)
        scores = torch.nn.functional.linear(q.to(torch.bfloat16), copy)  # (bs, n) bf16, float32 accumulation
        top_scores, top_ids = torch.topk(scores, kc, dim=1)  # (bs, kc), sorted
        top_scores = top_scores.double().numpy()
        bound = error_bound(np.linalg.norm(queries.astype(np.float64), axis=1), self.max_norm, queries.shape[1])
        threshold = top_scores[:, k - 1] - 2 * bound  # (bs,)
        if (top_scores[:, -1] >= threshold).any():  # candidates may continue past the list
            return None
        candidates = np.unique(top_ids.numpy()[top_scores >= threshold[:, None]])  # (m,) sorted ids
        if not same_kernel(len(queries), len(candidates), queries.shape[1]):
            return None
        sub = faiss.IndexFlatIP(self.vectors.shape[1])
        sub.add(np.ascontiguousarray(self.vectors[candidates]))
        # One OpenMP thread (this thread's setting only): waking FAISS's pool right after torch's costs ~25 ms
        # on a busy machine for ~0.2 ms of work; the per-query kernel is the same for any thread count.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            distances, positions = sub.search(queries, k)  # (bs, k): every query has >= k candidates
        finally:
            faiss.omp_set_num_threads(threads)
        return distances, candidates[positions].astype(np.int64)

    # -- the bf16 copy ------------------------------------------------------------------------------
    def _copy(self) -> torch.Tensor | None:
        if self.copy is None:
            vectors = self.vectors
            norms = np.linalg.norm(vectors.astype(np.float64), axis=1) if len(vectors) else np.zeros(0)
            if not np.isfinite(norms).all():
                return None  # inf/nan stored: leave it to FAISS
            self.max_norm = float(norms.max(initial=0.0))
            self.copy = self._load_cached() if self.cache_path is not None else None
            if self.copy is None:
                self.copy = torch.from_numpy(vectors).to(torch.bfloat16)  # (n, d), round to nearest
                self._write_cache()
            if not torch.isfinite(self.copy).all():  # a float32 above bf16's range rounded to inf
                self.copy = None
        return self.copy

    def _key(self) -> dict:
        """What the cache must match: the index file's size and mtime and a hash of sampled rows."""
        stat = os.stat(self.index_path)
        n, d = self.vectors.shape
        rows = np.unique(np.linspace(0, n - 1, min(n, 257)).astype(np.int64))
        digest = hashlib.blake2b(self.vectors[rows].tobytes(), digest_size=16).hexdigest()
        return {"n": n, "d": d, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sample": digest}

    def _load_cached(self) -> torch.Tensor | None:
        try:
            with open(self.cache_path, "rb") as f:
                head = f.read(HEADER_BYTES)
            if head[:8] != MAGIC:
                return None
            (length,) = struct.unpack("<I", head[8:12])
            if json.loads(head[12 : 12 + length]) != self._key():
                return None
            n, d = self.vectors.shape
            if os.path.getsize(self.cache_path) != HEADER_BYTES + 2 * n * d:
                return None
            # copy-on-write mapping: writable for torch (no warning), never written back
            raw = np.memmap(self.cache_path, dtype=np.uint16, mode="c", offset=HEADER_BYTES, shape=(n, d))
        except (OSError, ValueError):
            return None
        self.cached = True
        return torch.from_numpy(raw).view(torch.bfloat16)

    def _write_cache(self) -> None:
        if self.cache_path is None:
            return
        try:
            header = json.dumps(self._key()).encode()
            head = (MAGIC + struct.pack("<I", len(header)) + header).ljust(HEADER_BYTES, b"\0")
            atomic_write_bytes(self.cache_path, head + self.copy.view(torch.uint16).numpy().tobytes())
        except OSError:  # read-only folder or full disk: keep the copy in memory
            return
        loaded = self._load_cached()
        if loaded is not None:
            self.copy = loaded
