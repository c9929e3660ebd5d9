"""Reading a user's documents: JSONL ({"title", "text"} per line), CSV/TSV (title, text columns) or a
folder of .txt/.md files (title = file name stem). Every document keeps where it came from, so that
bad input is reported as ``file:line``.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}


class DocumentError(ValueError):
    """An input file that cannot become a knowledge base (empty, malformed, a document without text)."""


@dataclass(frozen=True)
class Document:
    title: str
    text: str
    source: str  # "path:line" (or the file path for a folder of text files)


def read_documents(paths: Iterable[str | os.PathLike]) -> Iterator[Document]:
    """Yield the documents of every input path in order; raise DocumentError on bad input."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise DocumentError("No input given: pass JSONL, CSV/TSV files or a folder of .txt/.md files.")
    for path in paths:
        count = 0
        for doc in _read_one(path):
            count += 1
            yield doc
        if count == 0:
            raise DocumentError(f"{path} contains no documents.")


def input_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The files that ``read_documents`` reads for ``paths`` (folders expanded), for fingerprints."""
    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(_folder_files(path) if path.is_dir() else [path])
    return files


def _read_one(path: Path) -> Iterator[Document]:
    if not path.exists():
        raise DocumentError(f"{path} does not exist.")
    if path.is_dir():
        return _read_folder(path)
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path)
    if suffix in TABLE_DELIMITERS:
        return _read_table(path, TABLE_DELIMITERS[suffix])
    raise DocumentError(
        f"{path}: unsupported input format {suffix!r}; use .jsonl, .csv, .tsv or a folder of .txt/.md files."
    )


def _document(title: object, text: object, source: str) -> Document:
    if not isinstance(text, str) or not text.strip():
        raise DocumentError(f"{source}: document without text.")
    title = "" if title is None else str(title)
    return Document(title=title.strip(), text=" ".join(text.split()), source=source)


def _read_jsonl(path: Path) -> Iterator[Document]:
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            source = f"{path}:{line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DocumentError(f"{source}: not valid JSON ({err.msg}).") from None
            if not isinstance(record, dict):
                raise DocumentError(f'{source}: expected an object with "title" and "text".')
            yield _document(record.get("title"), record.get("text"), source)


def _read_table(path: Path, delimiter: str) -> Iterator[Document]:
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        if reader.fieldnames is None:
            return
        if "text" not in reader.fieldnames:
            raise DocumentError(f"{path}: no 'text' column (columns: {reader.fieldnames}).")
        for row in reader:
            yield _document(row.get("title"), row.get("text"), f"{path}:{reader.line_num}")


def _folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)


def _read_folder(folder: Path) -> Iterator[Document]:
    for file in _folder_files(folder):
        yield _document(file.stem, file.read_text(encoding="utf-8"), str(file))
