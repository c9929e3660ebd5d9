"""The bf16-scan flat search (retrieval/exact_flat.py) against faiss' IndexFlatIP as the oracle.

FAISS re-scores the candidates with the kernel it uses for the full scan (exact_flat.same_kernel), so
ids AND scores are compared for equality, not within a tolerance; ties and last-ulp near-ties are where
an inexact candidate set or another kernel would show.
"""

from __future__ import annotations

import os

import faiss
import numpy as np
import pytest
import torch

from ragmodels.retrieval import exact_flat
from ragmodels.retrieval.exact_flat import ExactFlatSearch, error_bound, stored_vectors
from ragmodels.retrieval.index import FaissIndex

N, D = 6000, 32  # below exact_flat.DB_PARALLEL_VECTORS: FAISS's per-query kernel for every batch size


def tricky_vectors(seed: int = 0) -> np.ndarray:
    """Random vectors with exact duplicates and last-ulp neighbours of rows 5 and 7."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, D), dtype=np.float32)
    x[100:110] = x[5]  # ten duplicates of row 5
    x[200] = np.nextafter(x[5], np.float32(np.inf))  # every coordinate one ulp up
    x[201] = x[5]
    x[201, 3] = np.nextafter(x[5, 3], np.float32(-np.inf))  # one coordinate one ulp down
    x[300:305] = x[7]
    x[4000] = x[7]
    return x


def queries_for(x: np.ndarray, bs: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((bs, D), dtype=np.float32)
    q[0] = x[5]  # its best results are the duplicates and near-duplicates of row 5
    if bs > 1:
        q[1] = 3 * x[7]
    return q


def faiss_flat(x: np.ndarray) -> faiss.IndexFlatIP:
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    return index


@pytest.mark.parametrize("bs", [1, 3, 40])
@pytest.mark.parametrize("k", [1, 5, 12, 60])
def test_fast_path_equals_faiss_with_ties_and_near_ties(bs, k):
    x = tricky_vectors()
    reference = faiss_flat(x)
    q = queries_for(x, bs)
    found = ExactFlatSearch(reference, min_vectors=0).search(q, k)
    assert found is not None, "the bf16 scan should answer this batch (no fallback)"
    scores, ids = found
    ref_scores, ref_ids = reference.search(q, k)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores)  # FAISS's own kernel re-scored them: equal bits


def test_integer_data_ties_in_faiss_order():
    """Small integer vectors: scores are exact integers, so most top-k lists end in a run of ties."""
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, (N, D)).astype(np.float32)
    q = rng.integers(-2, 3, (16, D)).astype(np.float32)
    reference = faiss_flat(x)
    index = FaissIndex(faiss_flat(x))
    for k in (1, 4, 10):
        ref_scores, ref_ids = reference.search(q, k)
        scores, ids = index.search(q, k)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(scores, ref_scores)
    fast = ExactFlatSearch(reference, min_vectors=0).search(q, 4)
    assert fast is not None and np.array_equal(fast[1], reference.search(q, 4)[1])


def test_many_duplicates_fall_back_and_stay_equal():
    """More tied candidates than the scan keeps: the batch goes to FAISS's own scan, results unchanged."""
    x = tricky_vectors()
    x[1000:1400] = x[5]
    reference = faiss_flat(x)
    q = queries_for(x, 4)
    assert ExactFlatSearch(reference, min_vectors=0).search(q, 5) is None
    scores, ids = FaissIndex(faiss_flat(x)).search(q, 5)
    np.testing.assert_array_equal(ids, reference.search(q, 5)[1])


def test_k_larger_than_n_keeps_faiss_holes():
    x = tricky_vectors()[:50]
    index = FaissIndex(faiss_flat(x))
    scores, ids = index.search(queries_for(x, 2), 60)
    assert (ids[:, 50:] == -1).all() and np.isneginf(scores[:, 50:]).all()
    np.testing.assert_array_equal(ids[:, :50], faiss_flat(x).search(queries_for(x, 2), 60)[1][:, :50])


def test_error_bound_holds_for_every_pair():
    """|bf16 scan score - FAISS score| <= error_bound, over vectors of very different norms."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3000, D), dtype=np.float32) * rng.uniform(1e-3, 1e3, (3000, 1)).astype(np.float32)
    q = rng.standard_normal((8, D), dtype=np.float32) * np.float32(50)
    faiss_scores = np.empty((8, len(x)), np.float32)
    ref_d, ref_i = faiss_flat(x).search(q, len(x))
    np.put_along_axis(faiss_scores, ref_i, ref_d, 1)
    scan = torch.nn.functional.linear(torch.from_numpy(q).bfloat16(), torch.from_numpy(x).bfloat16()).double().numpy()
    bound = error_bound(np.linalg.norm(q.astype(np.float64), axis=1), float(np.linalg.norm(x, axis=1).max()), D)
    assert (np.abs(scan - faiss_scores) <= bound[:, None]).all()
    assert (np.abs(scan - faiss_scores).max(axis=1) > bound / 100).all()  # the bound is not vacuous


def test_same_kernel_rules():
    d = 64
    assert not exact_flat.same_kernel(faiss.cvar.distance_compute_blas_threshold // d, 1000, d)  # BLAS batches
    assert exact_flat.same_kernel(1, exact_flat.DB_PARALLEL_VECTORS - 1, d)
    assert not exact_flat.same_kernel(faiss.omp_get_max_threads() - 1, 20_000, d) or faiss.omp_get_max_threads() == 1


# -- the cached bf16 copy --------------------------------------------------------------------------
def saved_index(path, x) -> FaissIndex:
    index = FaissIndex(faiss_flat(x))
    index.save(path)
    return FaissIndex.read(path)


def test_copy_cached_next_to_the_index_and_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(exact_flat, "MIN_VECTORS", 0)
    x = tricky_vectors()
    path = tmp_path / "index.faiss"
    index = saved_index(path, x)
    q = queries_for(x, 4)
    first = index.search(q, 5)
    cache = tmp_path / "index.faiss.bf16"
    assert cache.is_file() and index._exact_flat.cached
    assert index._exact_flat.copy.shape == (N, D)

    reopened = FaissIndex.read(path)
    built = []
    monkeypatch.setattr(exact_flat.ExactFlatSearch, "_write_cache", lambda self: built.append(1))
    second = reopened.search(q, 5)
    assert built == [] and reopened._exact_flat.cached  # loaded from the file, not rebuilt
    np.testing.assert_array_equal(first[1], second[1])


def test_stale_copy_never_used(tmp_path, monkeypatch):
    monkeypatch.setattr(exact_flat, "MIN_VECTORS", 0)
    path = tmp_path / "index.faiss"
    x = tricky_vectors(seed=0)
    old = saved_index(path, x)
    old.search(queries_for(x, 4), 5)
    stat = os.stat(path)
    # same size, and even the old mtime: only the sampled-rows hash tells the files apart
    y = tricky_vectors(seed=9)
    saved_index(path, y)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    new = FaissIndex.read(path)
    q = queries_for(y, 4)
    scores, ids = new.search(q, 5)
    np.testing.assert_array_equal(ids, faiss_flat(y).search(q, 5)[1])
    torch.testing.assert_close(new._exact_flat.copy, torch.from_numpy(y).bfloat16(), rtol=0, atol=0)
    assert new._exact_flat.cached  # rewritten for the new index


def test_vectors_added_in_process_rebuild_the_copy():
    x = tricky_vectors()
    index = FaissIndex(faiss.IndexFlatIP(D))
    index.add(x[:5000])
    q = queries_for(x, 4)
    index._exact_flat = ExactFlatSearch(index.faiss_index, min_vectors=0)
    index.search(q, 5)
    index.add(x[5000:])
    np.testing.assert_array_equal(index.search(q, 5)[1], faiss_flat(x).search(q, 5)[1])
    assert len(stored_vectors(index.faiss_index)) == N


def test_unwritable_folder_keeps_the_copy_in_memory(tmp_path, monkeypatch):
    """A read-only folder makes the atomic write raise (simulated: tests may run as root, who can write)."""
    monkeypatch.setattr(exact_flat, "MIN_VECTORS", 0)

    def refuse(path, data):
        raise PermissionError(13, "Read-only file system", str(path))

    monkeypatch.setattr(exact_flat, "atomic_write_bytes", refuse)
    x = tricky_vectors()
    path = tmp_path / "index.faiss"
    index = saved_index(path, x)
    q = queries_for(x, 4)
    scores, ids = index.search(q, 5)
    assert not (tmp_path / "index.faiss.bf16").exists()
    assert index._exact_flat.copy is not None and not index._exact_flat.cached
    np.testing.assert_array_equal(ids, faiss_flat(x).search(q, 5)[1])
