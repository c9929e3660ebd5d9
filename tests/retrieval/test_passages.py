"""Passage store: batched lookups from a dataset in memory or memory-mapped from a saved folder."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset
from conftest import PASSAGES, passage_embeddings

from ragmodels.retrieval.passages import PassageStore

IDS = np.array([[3, 0, 11], [5, 5, 2]])  # (bs=2, k=3)


def unindexed(dataset):
    """The same rows without the attached FAISS index (datasets refuses to shuffle indexed datasets)."""
    return Dataset(dataset.data)


def check_rows(store: PassageStore, titles: list[str], embeddings: np.ndarray) -> None:
    doc_dicts, embeds = store.lookup(IDS)
    assert [d["title"] for d in doc_dicts] == [[titles[i] for i in row] for row in IDS]
    assert embeds.dtype == np.float32 and embeds.shape == (2, 3, embeddings.shape[1])
    np.testing.assert_array_equal(embeds, embeddings[IDS])
    np.testing.assert_array_equal(store.embeddings(IDS), embeddings[IDS])


def test_lookup_from_a_dataset_in_memory(passage_dataset):
    store = PassageStore.from_dataset(passage_dataset)
    check_rows(store, [t for t, _ in PASSAGES], passage_embeddings())
    assert store.fetch(IDS)[1]["text"][0] == PASSAGES[5][1]
    assert (len(store), store.dimension) == (len(PASSAGES), passage_embeddings().shape[1])


def test_lookup_follows_a_shuffled_dataset_view(passage_dataset):
    shuffled = unindexed(passage_dataset).shuffle(seed=3)
    store = PassageStore.from_dataset(shuffled)
    check_rows(store, shuffled["title"], np.asarray(shuffled["embeddings"], dtype=np.float32))


def test_saved_folder_is_memory_mapped_and_round_trips(tmp_path, passage_dataset):
    PassageStore.from_dataset(unindexed(passage_dataset).shuffle(seed=1)).save(tmp_path / "passages")
    store = PassageStore.load(tmp_path / "passages")
    reference = unindexed(passage_dataset).shuffle(seed=1)
    check_rows(store, reference["title"], np.asarray(reference["embeddings"], dtype=np.float32))
    assert store.source == str(tmp_path / "passages")


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="No passages folder at .*absent.*save_to_disk"):
        PassageStore.load(tmp_path / "absent")


@pytest.mark.parametrize("column", ["embeddings", "title", "text"])
def test_missing_column_is_a_clear_error(passage_dataset, column):
    with pytest.raises(ValueError, match=rf"lack the column\(s\) \['{column}'\]"):
        PassageStore.from_dataset(passage_dataset.remove_columns(column))


def test_out_of_range_ids_are_a_clear_error(passage_dataset):
    with pytest.raises(ValueError, match=r"must lie in \[0, 12\)"):
        PassageStore.from_dataset(passage_dataset).fetch(np.array([[0, 12]]))
