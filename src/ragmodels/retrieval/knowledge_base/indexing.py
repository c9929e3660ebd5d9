"""Building the FAISS index of a knowledge base from its passage files, streaming (no full copy in memory).

Index kinds and parameters are those of ``ragmodels.retrieval.index``; this module only feeds them:
parameters are resolved for the corpus size, compressed kinds are trained on a random sample of rows,
and embeddings are added one Arrow record batch at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ragmodels.retrieval.index import KIND_PARAMS, FaissIndex, check_kind_params, create_index, default_refine

from .arrow_files import embeddings_of, iter_batches

def index_from_files(files: Sequence[Path], kind: str, params: dict, seed: int = 0) -> tuple[FaissIndex, dict]:
    """Build an index of ``kind`` over the embeddings of ``files``; return it and its resolved parameters."""
    count, dim = _shape(files)
    resolved = check_kind_params(kind, params).resolve(dim, count)
    if resolved.refine is None:
        resolved = replace(resolved, refine=default_refine(kind))
    if kind == "hnsw" and resolved.max_norm is None:
        norms = [np.linalg.norm(embeddings_of(b), axis=1).max(initial=0.0) for b in iter_batches(files)]
        resolved = replace(resolved, max_norm=float(max(norms)))
    index = create_index(kind, dim, **asdict(resolved))
    if not index.is_trained:
        index.train(_sample(files, count, resolved.train_size, seed))
    for batch in iter_batches(files):
        index.add(embeddings_of(batch))
    return index, {name: getattr(resolved, name) for name in KIND_PARAMS[kind]}


def refill(index_path: Path, files: Sequence[Path]) -> FaissIndex:
    """The index at ``index_path`` emptied and refilled with ``files``' embeddings, keeping its training
    (IVF centroids and codebooks, the HNSW norm bound). Read into memory: the file itself is left alone."""
    index = FaissIndex.read(index_path, mmap=False)
    index.faiss_index.reset()
    for batch in iter_batches(files):
        index.add(embeddings_of(batch))
    return index


def _shape(files: Sequence[Path]) -> tuple[int, int]:
    count, dim = 0, None
    for batch in iter_batches(files):
        count += batch.num_rows
        dim = batch.schema.field("embeddings").type.list_size
    if not count:
        raise ValueError("A knowledge base needs at least one passage.")
    return count, dim


def _sample(files: Sequence[Path], count: int, size: int, seed: int) -> np.ndarray:
    """Embeddings of ``size`` random rows (all rows if fewer), in row order: (min(size, count), dim)."""
    rows = np.sort(np.random.default_rng(seed).permutation(count)[:size])
    parts, start = [], 0
    for batch in iter_batches(files):
        stop = start + batch.num_rows
        local = rows[(rows >= start) & (rows < stop)] - start
        if local.size:
            parts.append(embeddings_of(batch)[local])
        start = stop
    return np.concatenate(parts)
