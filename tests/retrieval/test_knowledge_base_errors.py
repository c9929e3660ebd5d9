"""Bad input to knowledge-base builds, loads, updates and imports: a clear error, the previous KB untouched."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest
from transformers import BertModel

from conftest import PASSAGES, tiny_bert_config
from retrieval.conftest import kb_leftovers
from ragmodels.cli import main
from ragmodels.retrieval.knowledge_base import (
    ContextEncoder, DocumentError, KnowledgeBase, ManifestError, build_knowledge_base, import_dpr,
    import_saved_dataset,
)


@pytest.fixture(scope="module")
def encoder(question_tokenizer) -> ContextEncoder:
    return ContextEncoder(BertModel(tiny_bert_config()), question_tokenizer, pooling="cls", name="tiny")


@pytest.fixture
def kb_path(tmp_path, encoder):
    """A built KB of the shared passages whose files must survive every failing operation."""
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"title": t, "text": x}) + "\n" for t, x in PASSAGES))
    build_knowledge_base([tmp_path / "docs.jsonl"], tmp_path / "kb", encoder, progress=False)
    return tmp_path / "kb"


def assert_untouched(kb_path):
    kb = KnowledgeBase.load(kb_path, full_check=True)
    assert len(kb) == len(PASSAGES)
    assert kb.passages.fetch(np.array([[0]]))[0]["title"] == [PASSAGES[0][0]]
    assert kb_leftovers(kb_path) == []  # no staging left


@pytest.mark.parametrize("name,content,message", [
    ("empty.jsonl", "", "contains no documents"),
    ("blank.jsonl", '{"title": "A", "text": "fine"}\n{"title": "B", "text": "   "}\n', r"blank.jsonl:2: document without text"),
    ("notext.jsonl", '{"title": "A"}\n', "document without text"),
    ("bad.jsonl", "{not json}\n", "not valid JSON"),
    ("notext.csv", "title,body\nA,b\n", "no 'text' column"),
    ("empty.tsv", "", "contains no documents"),
    ("docs.xml", "<doc/>", "unsupported input format"),
])
def test_bad_documents_fail_clearly_and_keep_previous_kb(kb_path, encoder, name, content, message):
    bad = kb_path.parent / name
    bad.write_text(content)
    with pytest.raises(DocumentError, match=message):
        build_knowledge_base([bad], kb_path, encoder, progress=False)
    assert_untouched(kb_path)


def test_empty_folder_and_missing_input(kb_path, encoder):
    (kb_path.parent / "empty_dir").mkdir()
    with pytest.raises(DocumentError, match="contains no documents"):
        build_knowledge_base([kb_path.parent / "empty_dir"], kb_path, encoder, progress=False)
    with pytest.raises(DocumentError, match="does not exist"):
        build_knowledge_base([kb_path.parent / "missing.jsonl"], kb_path, encoder, progress=False)
    assert_untouched(kb_path)


def test_update_with_encoder_of_other_dimension(kb_path, question_tokenizer):
    wide = ContextEncoder(BertModel(tiny_bert_config().__class__(**{**tiny_bert_config().to_dict(), "hidden_size": 48})),
                          question_tokenizer, pooling="cls")
    kb = KnowledgeBase.load(kb_path)
    with pytest.raises(ValueError, match="Dimension mismatch"):
        kb.add(["New"], ["a new passage"], encoder=wide)
    with pytest.raises(ValueError, match="Dimension mismatch"):
        kb.replace([0], ["New"], ["text"], embeddings=np.zeros((1, 16), np.float32))
    with pytest.raises(ValueError, match="without text"):
        kb.add(["New"], ["  "], embeddings=np.zeros((1, 32), np.float32))
    with pytest.raises(ValueError, match=r"must lie in \[0, 12\)"):
        kb.delete([12])
    with pytest.raises(ValueError, match="empty knowledge base"):
        kb.delete(range(len(PASSAGES)))
    assert_untouched(kb_path)


def test_truncated_index_is_refused(kb_path):
    index_file = kb_path / "index.faiss"
    index_file.write_bytes(index_file.read_bytes()[:-100])
    with pytest.raises(ManifestError, match="truncated"):
        KnowledgeBase.load(kb_path)


def test_corrupted_index_same_size_is_refused(kb_path):
    index_file = kb_path / "index.faiss"
    data = bytearray(index_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    index_file.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="checksum"):
        KnowledgeBase.load(kb_path)


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.update(passage_count=99), "do not match its manifest"),
    (lambda m: m.update(dimension=64), "do not match its manifest"),
    (lambda m: m.update(format_version=99), "format version 99"),
    (lambda m: m["files"].update({"passages/extra.arrow": {"size": 1, "edge_sha256": "", "sha256": ""}}), "missing"),
])
def test_manifest_not_matching_files_is_refused(kb_path, edit, message):
    manifest = json.loads((kb_path / "manifest.json").read_text())
    edit(manifest)
    (kb_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=message):
        KnowledgeBase.load(kb_path)


def test_missing_or_unreadable_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest.json is missing"):
        KnowledgeBase.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(ManifestError, match="not a valid"):
        KnowledgeBase.load(tmp_path)


def test_import_reference_with_corrupt_or_mismatched_index(passage_dataset, kb_path):
    folder = kb_path.parent
    dataset = passage_dataset.with_format(None)
    dataset._indexes = {}
    dataset.save_to_disk(folder / "ref_passages")
    (folder / "corrupt.faiss").write_bytes(b"IxFI" + b"\0" * 10)
    with pytest.raises(ValueError, match="truncated, corrupt or not a FAISS index"):
        import_saved_dataset(folder / "ref_passages", folder / "corrupt.faiss", kb_path)
    faiss.write_index(faiss.IndexFlatIP(16), str(folder / "wide.faiss"))
    with pytest.raises(ValueError, match="Dimension mismatch"):
        import_saved_dataset(folder / "ref_passages", folder / "wide.faiss", kb_path)
    assert_untouched(kb_path)


def test_import_dpr_row_count_mismatch(kb_path):
    folder = kb_path.parent
    (folder / "psgs.tsv").write_text("id\ttext\ttitle\n1\tsome text\tT\n2\tmore text\tU\n")
    np.save(folder / "one.npy", np.zeros((1, 32), np.float32))
    with pytest.raises(ValueError, match="more passages than the embedding files"):
        import_dpr(folder / "psgs.tsv", [folder / "one.npy"], kb_path)
    np.save(folder / "three.npy", np.zeros((3, 32), np.float32))
    with pytest.raises(ValueError, match="more rows than"):
        import_dpr(folder / "psgs.tsv", [folder / "three.npy"], kb_path)
    assert_untouched(kb_path)


def test_cli_reports_bad_input_in_one_line(kb_path, capsys):
    (kb_path.parent / "empty.jsonl").write_text("")
    assert main(["index", "build", str(kb_path.parent / "empty.jsonl"), "-o", str(kb_path), "--encoder", "unused"]) == 1
    assert main(["index", "info", str(kb_path.parent / "nothing")]) == 1
    err = capsys.readouterr().err
    assert "manifest.json is missing" in err and "Traceback" not in err
    assert_untouched(kb_path)
