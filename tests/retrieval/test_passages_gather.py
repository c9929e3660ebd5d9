"""Chunk-by-chunk gathers and the direct memory-mapped load equal a plain Arrow take."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from datasets import Dataset, load_from_disk

from ragmodels.retrieval.passages import PassageStore


def chunked_table(n: int = 50, d: int = 4, chunk: int = 7, float_type=pa.float32()) -> pa.Table:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((n, d))
    table = pa.table({
        "title": [f"t{i}" for i in range(n)], "text": [f"text {i} é" for i in range(n)],
        "embeddings": pa.array(list(emb), pa.list_(float_type)),
    })
    return pa.Table.from_batches(table.to_batches(max_chunksize=chunk))


@pytest.mark.parametrize("float_type", [pa.float32(), pa.float64()])
def test_gather_across_chunks_equals_take(float_type):
    table = chunked_table(float_type=float_type)
    assert table.column("text").num_chunks > 3
    store = PassageStore(table)
    ids = np.array([[49, 0, 7, 6, 7], [13, 14, 35, 2, 48]])
    docs, emb = store.lookup(ids)
    expected = table.take(pa.array(ids.reshape(-1)))
    assert [t for d in docs for t in d["title"]] == expected.column("title").to_pylist()
    assert [t for d in docs for t in d["text"]] == expected.column("text").to_pylist()
    want = np.array(expected.column("embeddings").to_pylist(), np.float32).reshape(2, 5, -1)
    np.testing.assert_array_equal(emb, want)
    assert emb.dtype == np.float32
    np.testing.assert_array_equal(store.embeddings(ids), want)
    np.testing.assert_array_equal(store.all_embeddings(), np.array(table.column("embeddings").to_pylist(), np.float32))
    assert store.fetch(ids) == docs
    assert store._take(ids.reshape(-1), columns=["title"]).column("title").to_pylist() == expected.column("title").to_pylist()


def test_direct_mmap_load_matches_load_from_disk(tmp_path):
    Dataset(chunked_table(n=40, chunk=9)).save_to_disk(str(tmp_path / "p"), num_shards=3)
    store = PassageStore.load(tmp_path / "p")
    reference = load_from_disk(str(tmp_path / "p"))
    assert len(list((tmp_path / "p").glob("*.arrow"))) > 1
    assert len(store) == len(reference) == 40
    ids = np.array([[39, 1, 20], [5, 5, 33]])
    docs, emb = store.lookup(ids)
    assert [t for d in docs for t in d["text"]] == [reference[int(i)]["text"] for i in ids.reshape(-1)]
    np.testing.assert_allclose(emb.reshape(6, -1), np.array([reference[int(i)]["embeddings"] for i in ids.reshape(-1)]))
    assert store._embedding_views()[0].base is not None  # a view of the mapped file, not a copy


def test_saved_shuffled_view_loads_in_view_order(tmp_path):
    dataset = Dataset(chunked_table(n=20, chunk=6)).shuffle(seed=0)
    dataset.save_to_disk(str(tmp_path / "p"))
    store = PassageStore.load(tmp_path / "p")
    assert store.fetch(np.array([[0, 19]]))[0]["title"] == [dataset[0]["title"], dataset[19]["title"]]
