"""DPR's legacy files: same answers as the reference (which unpickles), and pickles refused here."""

from __future__ import annotations

import csv
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import DIM, PASSAGES, passage_embeddings

from ragmodels.retrieval import RagRetriever, create_index
from ragmodels.retrieval.legacy import INDEX_FILE, INDEX_FILENAME, LegacyIndex

from .conftest import query_vectors, rag_config

TITLES = ['"Quoted" title'] + [t for t, _ in PASSAGES[1:]]  # quotes survive the TSV round trip
DB_IDS = 1000 + np.random.default_rng(5).permutation(len(PASSAGES))  # FAISS id i -> DPR passage id


def write_dpr_folder(folder: Path, meta: str = "json", passages: str = "tsv") -> Path:
    """A tiny DPR knowledge base: augmented HNSW index, id map and passages in the chosen formats."""
    folder.mkdir(parents=True)
    index = create_index("hnsw", DIM)
    index.add(passage_embeddings())
    index.save(folder / INDEX_FILE)
    ids = [int(i) for i in DB_IDS]
    if meta == "json":
        (folder / f"{INDEX_FILENAME}.index_meta.json").write_text(json.dumps(ids))
    elif meta == "npy":
        np.save(folder / f"{INDEX_FILENAME}.index_meta.npy", DB_IDS)
    else:  # DPR's original: a pickled list (or JSON under the same name)
        data = pickle.dumps(ids) if meta == "pickle" else json.dumps(ids).encode()
        (folder / f"{INDEX_FILENAME}.index_meta.dpr").write_bytes(data)
    rows = sorted(zip(ids, (x for _, x in PASSAGES), TITLES))  # TSV order differs from FAISS order
    if passages == "tsv":
        with open(folder / "psgs_w100.tsv", "w", newline="") as f:
            writer = csv.writer(f, delimiter="\t")
            writer.writerow(["id", "text", "title"])
            writer.writerows(rows)
    else:
        (folder / "psgs_w100.tsv.pkl").write_bytes(pickle.dumps({str(i): (text, title) for i, text, title in rows}))
    return folder


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fail the test if anything unpickles."""

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle.load called")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)


@pytest.mark.parametrize("meta", ["json", "npy", "dpr-json"])
def test_legacy_retrieval_matches_reference(tmp_path, monkeypatch, meta, question_tokenizer, bart_tokenizer,
                                            question_ids):
    from transformers import RagRetriever as ReferenceRetriever

    ours_dir = write_dpr_folder(tmp_path / "ours", meta=meta)
    ref_dir = write_dpr_folder(tmp_path / "ref", meta="pickle", passages="pickle")
    q = query_vectors()
    retriever = RagRetriever(rag_config(bart_tokenizer, index_name="legacy", index_path=str(ours_dir)),
                             question_tokenizer, bart_tokenizer)
    got = retriever(question_ids, q, n_docs=3)
    monkeypatch.setenv("TRUST_REMOTE_CODE", "True")  # the reference oracle reads the pickles this test wrote
    reference = ReferenceRetriever(rag_config(bart_tokenizer, index_name="legacy", index_path=str(ref_dir)),
                                   question_tokenizer, bart_tokenizer)
    expected = reference(question_ids, q, n_docs=3)
    for key in expected:
        np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(expected[key]), err_msg=key)
    assert set(got["doc_ids"].ravel()) <= set(DB_IDS)
    _, _, docs = retriever.retrieve(q, 3)
    top = np.argmax(q @ passage_embeddings().T, axis=1)
    assert [d["title"][0] for d in docs] == [TITLES[i] for i in top]


def test_pickled_passages_are_refused(tmp_path, no_unpickling):
    folder = write_dpr_folder(tmp_path / "dpr", passages="pickle")
    with pytest.raises(ValueError, match=r"(?s)psgs_w100.tsv.pkl is a Python pickle.*never unpickles.*psgs_w100.tsv"):
        LegacyIndex(DIM, folder)


def test_pickled_index_map_is_refused(tmp_path, no_unpickling):
    legacy = LegacyIndex(DIM, write_dpr_folder(tmp_path / "dpr", meta="pickle"))
    with pytest.raises(ValueError, match=r"(?s)index_meta.dpr is a Python pickle.*json.dump"):
        legacy.init_index()


def test_missing_legacy_files(tmp_path, question_tokenizer, bart_tokenizer):
    with pytest.raises(ValueError, match="legacy index folder .*absent does not exist"):
        LegacyIndex(DIM, tmp_path / "absent")
    folder = write_dpr_folder(tmp_path / "dpr")
    shutil.move(folder / INDEX_FILE, tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="No FAISS index file in the legacy index folder"):
        LegacyIndex(DIM, folder).init_index()
    with pytest.raises(ValueError, match="index_name='legacy' needs index_path"):
        RagRetriever(rag_config(bart_tokenizer, index_name="legacy"), question_tokenizer, bart_tokenizer)
