"""JSONL reading with line-numbered errors, and atomic JSONL writing.

Every reader of user files (training sets, evaluation sets) goes through ``read_jsonl`` so a bad line
is always reported as ``path:line: reason``. ``on_error="stop"`` raises at the first bad line;
``on_error="skip"`` drops bad lines and returns them in ``JsonlResult.errors`` for the caller's report.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .._io import atomic_write_bytes

OnError = Literal["stop", "skip"]


@dataclass(frozen=True)
class LineError:
    """One rejected line: 1-based line number and the reason."""

    line: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "error": self.message}


class JsonlFormatError(ValueError):
    """A JSONL file has a line that is not valid JSON or not a valid record."""

    def __init__(self, path: str | os.PathLike, errors: list[LineError]):
        self.path = str(path)
        self.errors = errors
        lines = "; ".join(f"{self.path}:{e.line}: {e.message}" for e in errors)
        super().__init__(f"Malformed JSONL: {lines}")


@dataclass
class JsonlResult:
    records: list[dict[str, Any]]
    errors: list[LineError] = field(default_factory=list)


def read_jsonl(
    path: str | os.PathLike,
    validate: Callable[[dict[str, Any]], None] | None = None,
    on_error: OnError = "stop",
) -> JsonlResult:
    """Read one JSON object per line; blank lines are ignored.

    ``validate(record)`` raises ValueError for a record that parses but is unusable.
    """
    if on_error not in ("stop", "skip"):
        raise ValueError(f"on_error must be 'stop' or 'skip', got {on_error!r}.")
    result = JsonlResult(records=[])
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"expected a JSON object, got {type(record).__name__}")
                if validate is not None:
                    validate(record)
            except ValueError as err:  # json.JSONDecodeError is a ValueError
                error = LineError(number, str(err))
                if on_error == "stop":
                    raise JsonlFormatError(path, [error]) from err
                result.errors.append(error)
                continue
            result.records.append(record)
    return result


def validate_qa_record(record: dict[str, Any]) -> None:
    """A question/answer record: non-empty ``question`` and a non-empty list of non-empty ``answers``."""
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("'question' must be a non-empty string")
    answers = record.get("answers")
    if not isinstance(answers, list) or not answers:
        raise ValueError("'answers' must be a non-empty list of strings")
    if not all(isinstance(a, str) and a.strip() for a in answers):
        raise ValueError("'answers' contains an empty or non-string answer")


def read_qa_jsonl(path: str | os.PathLike, on_error: OnError = "stop") -> JsonlResult:
    """Read a question/answer JSONL set (see ``validate_qa_record``)."""
    return read_jsonl(path, validate=validate_qa_record, on_error=on_error)


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> Path:
    """Write records one per line through a temporary file and a rename."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_bytes(path, data.encode("utf-8"))
    return Path(path)
