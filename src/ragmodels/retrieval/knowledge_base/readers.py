"""Reading a user's documents: JSONL ({"title", "text"} per line), CSV/TSV (title, text columns) or a
folder of .txt/.md files (title = file name stem). Every document keeps where it came from, so that
bad input is reported as ``file:line``.

Bad records (invalid JSON or UTF-8, a row with more or fewer fields than the header, a quote that is
never closed, no text, an overlong title) stop the read with a ``DocumentError`` naming ``file:line``,
or, with ``on_error="skip"``, are left out and listed in a ``Skipped`` record so the caller can say how
many. CSV/TSV are parsed strictly: a quote that is opened and not closed would otherwise swallow the
rows after it into one field.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
TABLE_DELIMITERS = {".csv": ",", ".tsv": "\t"}
ON_ERROR = ("raise", "skip")
MAX_TITLE_CHARS = 1000  # a title is repeated in front of every passage of its document


class DocumentError(ValueError):
    """An input file that cannot become a knowledge base (empty, malformed, a document without text)."""


@dataclass(frozen=True)
class Document:
    title: str
    text: str
    source: str  # "path:line" (or the file path for a folder of text files)


@dataclass
class Skipped:
    """The bad records an ``on_error="skip"`` read left out, as "file:line: what" lines."""

    records: list[str] = field(default_factory=list)

    def summary(self, limit: int = 3) -> str:
        shown = "; ".join(r.rstrip(".") for r in self.records[:limit]) + ("; ..." if len(self.records) > limit else "")
        return f"skipped {len(self.records)} bad input record{'' if len(self.records) == 1 else 's'} (--on-error skip): {shown}"


class _Errors:
    """Where a reader sends a bad record: raised, or noted in ``skipped``."""

    def __init__(self, on_error: str, skipped: Skipped | None):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error (--on-error) must be one of {ON_ERROR}, got {on_error!r}.")
        self.skip = on_error == "skip"
        self.skipped = skipped if skipped is not None else Skipped()

    def __call__(self, error: DocumentError) -> None:
        if not self.skip:
            raise error
        self.skipped.records.append(str(error))


def read_documents(paths: Iterable[str | os.PathLike], on_error: str = "raise",
                   skipped: Skipped | None = None) -> Iterator[Document]:
    """Yield the documents of every input path in order; bad records raise DocumentError (file:line) or,
    with ``on_error="skip"``, are noted in ``skipped``. A file without any good document is an error."""
    paths = [Path(p) for p in paths]
    errors = _Errors(on_error, skipped)
    if not paths:
        raise DocumentError("No input given: pass JSONL, CSV/TSV files or a folder of .txt/.md files.")
    for path in paths:
        count = 0
        for doc in _read_one(path, errors):
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


def _read_one(path: Path, errors: _Errors) -> Iterator[Document]:
    if not path.exists():
        raise DocumentError(f"{path} does not exist.")
    if path.is_dir():
        return _read_folder(path, errors)
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path, errors)
    if suffix in TABLE_DELIMITERS:
        return _read_table(path, TABLE_DELIMITERS[suffix], errors)
    raise DocumentError(
        f"{path}: unsupported input format {suffix!r}; use .jsonl, .csv, .tsv or a folder of .txt/.md files."
    )


def _document(title: object, text: object, source: str) -> Document:
    if not isinstance(text, str) or not text.strip():
        raise DocumentError(f"{source}: document without text.")
    title = "" if title is None else " ".join(str(title).split())
    if len(title) > MAX_TITLE_CHARS:
        raise DocumentError(f"{source}: title of {len(title)} characters; titles may have at most {MAX_TITLE_CHARS}.")
    return Document(title=title, text=" ".join(text.split()), source=source)


class _Lines:
    """The lines of a file decoded as UTF-8 one by one, so that a bad byte is reported with its line;
    ``number`` is the number of lines read so far (the current line's number). Setting ``mark`` makes
    the next line yielded set ``record_start`` (the first line of a CSV record)."""

    def __init__(self, path: Path, errors: _Errors):
        self.path, self.errors, self.number = path, errors, 0
        self.mark, self.record_start = False, 0

    def __iter__(self) -> Iterator[str]:
        with self.path.open("rb") as f:
            for raw in f:
                self.number += 1
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    self.errors(DocumentError(
                        f"{self.path}:{self.number}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column "
                        f"{err.start + 1}); save the file as UTF-8."))
                    continue
                if self.mark:
                    self.mark, self.record_start = False, self.number
                yield line[1:] if self.number == 1 and line.startswith("\ufeff") else line  # a UTF-8 BOM


def utf8_lines(path: Path) -> _Lines:
    """The lines of ``path`` as text; a DocumentError naming file:line at the first byte that is not UTF-8."""
    return _Lines(path, _Errors("raise", None))


def _read_jsonl(path: Path, errors: _Errors) -> Iterator[Document]:
    lines = _Lines(path, errors)
    for line in lines:
        if not line.strip():
            continue
        source = f"{path}:{lines.number}"
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise DocumentError(f'{source}: expected an object with "title" and "text".')
            yield _document(record.get("title"), record.get("text"), source)
        except json.JSONDecodeError as err:
            errors(DocumentError(f"{source}: not valid JSON ({err.msg})."))
        except DocumentError as err:
            errors(err)


def _read_table(path: Path, delimiter: str, errors: _Errors) -> Iterator[Document]:
    csv.field_size_limit(sys.maxsize)
    lines = _Lines(path, errors)
    reader = csv.reader(iter(lines), delimiter=delimiter, strict=True)
    header = None
    while True:
        lines.mark = True
        try:
            row = next(reader)
            start = lines.record_start
        except StopIteration:
            return
        except csv.Error as err:
            start = lines.record_start
            what = "a quote opened here is never closed" if "end of data" in str(err) else str(err)
            errors(DocumentError(f"{path}:{start}: malformed {path.suffix[1:].upper()} record ({what}); "
                                 "quote fields that hold the delimiter, a quote or a line break, and double "
                                 "quotes inside them."))
            continue
        if not row:
            continue
        if header is None:
            header = [h.strip() for h in row]
            if "text" not in header:
                raise DocumentError(f"{path}: no 'text' column (columns: {header}).")
            continue
        try:
            if len(row) != len(header):
                raise DocumentError(
                    f"{path}:{start}: {len(row)} fields where the header has {len(header)} ({', '.join(header)}); "
                    "quote fields that contain the delimiter.")
            record = dict(zip(header, row))
            yield _document(record.get("title"), record["text"], f"{path}:{start}")
        except DocumentError as err:
            errors(err)


def _folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)


def _read_folder(folder: Path, errors: _Errors) -> Iterator[Document]:
    for file in _folder_files(folder):
        data = file.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            errors(DocumentError(f"{file}:{line}: not valid UTF-8 (byte 0x{data[err.start]:02x}); save the file as UTF-8."))
            continue
        try:
            yield _document(file.stem, text, str(file))
        except DocumentError as err:
            errors(err)
