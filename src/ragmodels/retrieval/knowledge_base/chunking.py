"""Splitting documents into passages of N words, each keeping its document's title (DPR: 100 words)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .readers import Document

DEFAULT_WORDS_PER_PASSAGE = 100


@dataclass(frozen=True)
class Passage:
    title: str
    text: str


def split_document(doc: Document, words_per_passage: int = DEFAULT_WORDS_PER_PASSAGE) -> Iterator[Passage]:
    """Consecutive, non-overlapping runs of ``words_per_passage`` words (the last one may be shorter)."""
    if words_per_passage < 1:
        raise ValueError(f"words_per_passage must be positive, got {words_per_passage}.")
    words = doc.text.split()
    for start in range(0, len(words), words_per_passage):
        yield Passage(doc.title, " ".join(words[start : start + words_per_passage]))


def split_documents(docs: Iterable[Document], words_per_passage: int = DEFAULT_WORDS_PER_PASSAGE) -> Iterator[Passage]:
    for doc in docs:
        yield from split_document(doc, words_per_passage)


def batched(items: Iterable, size: int) -> Iterator[tuple]:
    """Consecutive tuples of ``size`` items, the last one shorter (itertools.batched of Python 3.12)."""
    iterator = iter(items)
    while batch := tuple(itertools.islice(iterator, size)):
        yield batch
