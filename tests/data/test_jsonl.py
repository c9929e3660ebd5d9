import pytest

from ragmodels.data import JsonlFormatError, read_qa_jsonl

LINES = [
    '{"question": "Capital of Peru?", "answers": ["Lima"]}',
    "{not json",
    "",
    '{"question": "Capital of Chile?", "answers": []}',
    '["a list"]',
    '{"question": "Capital of Japan?", "answers": ["Tokyo", " "]}',
    '{"question": "Capital of Kenya?", "answers": ["Nairobi"]}',
]


def test_skip_reports_every_bad_line_with_its_number(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    result = read_qa_jsonl(path, on_error="skip")
    assert [r["answers"][0] for r in result.records] == ["Lima", "Nairobi"]
    assert [e.line for e in result.errors] == [2, 4, 5, 6]
    assert "empty" in result.errors[3].message


def test_stop_raises_at_the_first_bad_line(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    with pytest.raises(JsonlFormatError, match=r"qa.jsonl:2:") as info:
        read_qa_jsonl(path)
    assert [e.line for e in info.value.errors] == [2]
