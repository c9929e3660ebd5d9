"""FAISS index kinds: exact search equals brute force; approximate kinds give inner-product scores and recall."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from ragmodels.retrieval.index import (
    INDEX_KINDS, FaissIndex, IndexParams, build_index, check_kind_params, create_index, parse_index_params,
)

D = 32
K = 10
PARAMS = {"ivf_pq": {"pq_m": 16, "pq_nbits": 6}}


@pytest.fixture(scope="module")
def corpus():
    """Clustered synthetic corpus (2000, D) and queries near corpus points (40, D), float32."""
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((20, D)) * 3
    x = centers[rng.integers(0, 20, 2000)] + rng.standard_normal((2000, D))
    q = x[rng.integers(0, 2000, 40)] + 0.3 * rng.standard_normal((40, D))
    return x.astype(np.float32), q.astype(np.float32)


@pytest.fixture(scope="module")
def indexes(corpus):
    x, _ = corpus
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # tiny builds: threads only oversubscribe a busy test machine
    try:
        return {kind: build_index(x, kind, **PARAMS.get(kind, {})) for kind in INDEX_KINDS}
    finally:
        faiss.omp_set_num_threads(threads)


def brute_force(x, q, k):
    scores = q @ x.T  # (bs, n)
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, ids, 1), ids


def test_flat_equals_brute_force(corpus, indexes):
    x, q = corpus
    scores, ids = indexes["flat"].search(q, K)
    expected_scores, expected_ids = brute_force(x, q, K)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-4)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (len(q), K)


@pytest.mark.parametrize("kind,min_recall", [("hnsw", 0.95), ("ivf_sq8", 0.9), ("ivf_pq", 0.6)])
def test_approximate_kinds_score_by_inner_product_with_good_recall(corpus, indexes, kind, min_recall):
    x, q = corpus
    index = indexes[kind]
    scores, ids = index.search(q, K)
    # scores are inner products with the stored (for compressed kinds: decoded) vectors
    np.testing.assert_allclose(scores, np.einsum("bd,bkd->bk", q, index.reconstruct(ids)), rtol=1e-3, atol=1e-2)
    assert (np.diff(scores, axis=1) <= 1e-4).all()  # best first
    _, truth = brute_force(x, q, K)
    recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, truth)])
    assert recall >= min_recall, f"{kind} recall@{K} = {recall:.2f}"


def test_hnsw_scores_are_exact_inner_products(corpus, indexes):
    x, q = corpus
    scores, ids = indexes["hnsw"].search(q, K)
    np.testing.assert_allclose(scores, np.einsum("bd,bkd->bk", q, x[ids]), rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(indexes["hnsw"].reconstruct(ids[:2]), x[ids[:2]])


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_save_and_read_round_trip(tmp_path, corpus, indexes, kind):
    _, q = corpus
    path = indexes[kind].save(tmp_path / f"{kind}.faiss")
    loaded = FaissIndex.read(path)
    assert (loaded.kind, loaded.dimension, loaded.ntotal) == (kind, D, 2000)
    for got, expected in zip(loaded.search(q, K), indexes[kind].search(q, K)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    assert not list(tmp_path.glob(".*tmp*"))  # no temp file left behind


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_mapped_index_refuses_writes_and_gives_an_empty_copy(tmp_path, corpus, indexes, kind):
    """A memory-mapped index (FAISS aborts the process on writes to it) raises instead; ``empty_copy`` keeps
    the training and takes vectors again, with the same results as the original."""
    x, q = corpus
    path = indexes[kind].save(tmp_path / f"{kind}.faiss")
    mapped = FaissIndex.read(path)
    assert mapped.read_only and not FaissIndex.read(path, mmap=False).read_only
    with pytest.raises(ValueError, match="memory-mapped"):
        mapped.add(x[:2])
    copy = mapped.empty_copy()
    assert (copy.kind, copy.ntotal, copy.read_only, copy.augmented) == (kind, 0, False, mapped.augmented)
    copy.add(x)
    for got, expected in zip(copy.search(q, K), mapped.search(q, K)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_mapped_flat_index_opens_without_reading_its_vectors(tmp_path):
    big = faiss.IndexFlatIP(256)
    big.add(np.random.default_rng(0).standard_normal((40_000, 256)).astype(np.float32))  # 40 MB of vectors
    path = FaissIndex(big).save(tmp_path / "big.faiss")
    del big

    def anon_kib():
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("RssAnon:"))

    before = anon_kib()
    index = FaissIndex.read(path)
    assert index.ntotal == 40_000 and anon_kib() - before < 10_000  # not read into private memory


def test_set_search_params_changes_ivf_probing(corpus, indexes):
    x, q = corpus
    index = indexes["ivf_sq8"]
    _, truth = brute_force(x, q, K)
    index.set_search_params(nprobe=1)
    _, narrow = index.search(q, K)
    index.set_search_params(nprobe=10_000)
    _, wide = index.search(q, K)
    index.set_search_params(nprobe=16)
    overlap = lambda ids: np.mean([len(set(a) & set(b)) for a, b in zip(ids, truth)])  # noqa: E731
    assert overlap(wide) > overlap(narrow)


def test_wraps_an_l2_index_built_elsewhere_with_inner_product_scores(corpus):
    x, q = corpus
    l2 = faiss.IndexFlat(D)  # what datasets.add_faiss_index builds by default
    l2.add(x)
    scores, ids = FaissIndex(l2).search(q, K)
    np.testing.assert_allclose(scores, np.einsum("bd,bkd->bk", q, x[ids]), rtol=1e-5, atol=1e-4)


def test_incremental_train_and_add_continue_ids(corpus):
    x, q = corpus
    index = create_index("ivf_sq8", D, nlist=8)
    index.train(x[:500])
    index.add(x[:1000])
    index.add(x[1000:])
    assert index.ntotal == 2000
    np.testing.assert_allclose(index.reconstruct(np.array([1500])), x[[1500]], atol=0.1)


def test_dimension_mismatch_is_a_clear_error(corpus, indexes):
    _, q = corpus
    with pytest.raises(ValueError, match=r"shape \(n, 32\).*got shape \(40, 31\)"):
        indexes["flat"].search(q[:, :31], K)


def test_truncated_file_names_the_file(tmp_path, indexes):
    path = indexes["flat"].save(tmp_path / "index.faiss")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"index\.faiss.*truncated, corrupt.*Rebuild"):
        FaissIndex.read(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="No FAISS index file at .*nowhere.faiss"):
        FaissIndex.read(tmp_path / "nowhere.faiss")


def test_unknown_kind_and_parameter_are_rejected():
    with pytest.raises(ValueError, match="Unknown index kind 'annoy'"):
        create_index("annoy", D)
    with pytest.raises(ValueError, match=r"--index-param bogus: unknown index parameter; known ones are nlist, M"):
        create_index("hnsw", D, bogus=3)
    with pytest.raises(ValueError, match=r"unknown index parameter.*Did you mean M\?"):
        create_index("hnsw", D, m=3)
    assert faiss.downcast_index(create_index("hnsw", D, efSearch=3).faiss_index).hnsw.efSearch == 3  # FAISS's name


@pytest.mark.parametrize("pairs,message", [
    (["M=-1"], r"--index-param M=-1: M must be an integer in \[2, 512\]"),
    (["M=1"], r"--index-param M=1: M must be an integer in \[2, 512\]"),
    (["nlist=abc"], r"--index-param nlist=abc: nlist must be an integer >= 1"),
    (["nlist=0"], r"nlist must be an integer >= 1"),
    (["nlist=2.5"], r"nlist must be an integer >= 1"),
    (["efSearch=0"], r"--index-param ef_search=0: ef_search must be an integer in \[1, 65536\]"),
    (["efConstruction=100000"], r"ef_construction must be an integer in \[1, 65536\]"),
    (["nprobe=0"], r"nprobe must be an integer >= 1"),
    (["refine=0"], r"refine must be an integer in \[1, 1000\]"),
    (["max_norm=nan"], r"max_norm must be a number"),
    (["pq_nbits=32"], r"pq_nbits must be an integer in \[1, 16\]"),
    (["nlist"], r"--index-param expects NAME=VALUE"),
    (["bogus=1"], r"--index-param bogus: unknown index parameter"),
])
def test_index_params_are_parsed_and_range_checked(pairs, message):
    with pytest.raises(ValueError, match=message):
        parse_index_params(pairs)


def test_index_params_checked_against_the_corpus_and_kind():
    assert parse_index_params(["nlist=4", " efSearch = 7"]) == {"nlist": 4, "ef_search": 7}
    with pytest.raises(ValueError, match=r"--index-param nlist=50: nlist must be at most the number of passages \(12\)"):
        IndexParams(nlist=50).resolve(D, 12)
    with pytest.raises(ValueError, match=r"--index-param nprobe=8: nprobe must be at most nlist \(4\)"):
        IndexParams(nlist=4, nprobe=8).resolve(D, 100)
    with pytest.raises(ValueError, match=r"--index-param pq_m=5: pq_m must divide the dimension"):
        IndexParams(pq_m=5).resolve(D, 100)
    with pytest.raises(ValueError, match=r"--index-param nlist: the hnsw index does not use nlist; it takes M"):
        check_kind_params("hnsw", {"nlist": 4})
    assert IndexParams().resolve(D, 12).nprobe == 1  # the default nprobe shrinks to a small corpus's nlist
    with pytest.raises(ValueError, match=r"ef_search=0: ef_search must be an integer in \[1, 65536\]"):
        create_index("hnsw", D).set_search_params(ef_search=0)


def test_hnsw_refuses_vectors_beyond_its_norm_bound(corpus):
    x, _ = corpus
    index = create_index("hnsw", D, max_norm=1.0)
    with pytest.raises(ValueError, match="above the index's max_norm"):
        index.add(x[:5])


def test_ivf_training_sample_smaller_than_nlist_is_rejected(corpus):
    x, _ = corpus
    index = create_index("ivf_pq", D, nlist=64, pq_m=8)
    with pytest.raises(ValueError, match="nlist=64 needs at least 64 vectors"):
        index.train(x[:10])
