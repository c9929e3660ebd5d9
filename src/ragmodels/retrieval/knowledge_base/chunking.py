"""Splitting documents into passages of N words, each keeping its document's title (DPR: 100 words).

Two rules keep every passage useful and bounded in size:
  - a document's last passage shorter than ``min_words`` joins the one before it (a document that is
    short as a whole stays one passage): a tail of a few words matches almost any question by accident
    and ranked high everywhere; the default, a fifth of ``words_per_passage`` (20 of 100), keeps a
    sentence or more on its own while a joined passage stays under 1.2 x the passage size (119 words,
    within the 256 tokens a MiniLM or DPR context encoder reads);
  - a "word" (a run without whitespace) longer than ``MAX_WORD_CHARS`` is cut into pieces of that
    length, so no passage exceeds (words_per_passage + min_words - 1) * MAX_WORD_CHARS characters
    (11,900 at the defaults): what one retrieved passage can cost at question time is bounded, however
    the input looks (a 10 MB run without spaces used to become one 10 MB passage).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .readers import Document

DEFAULT_WORDS_PER_PASSAGE = 100
MAX_WORDS_PER_PASSAGE = 1000  # context encoders read at most 512 tokens: longer passages are never encoded whole
MAX_WORD_CHARS = 100  # longer than any ordinary word or URL


@dataclass(frozen=True)
class Passage:
    title: str
    text: str


def default_min_words(words_per_passage: int) -> int:
    """A fifth of the passage size: 20 words at DPR's 100."""
    return words_per_passage // 5


def check_passage_sizes(words_per_passage: int, min_words: int | None) -> int:
    """Raise ValueError naming the flag unless the sizes are usable; return the effective ``min_words``."""
    if isinstance(words_per_passage, bool) or not isinstance(words_per_passage, int) or not (
            1 <= words_per_passage <= MAX_WORDS_PER_PASSAGE):
        raise ValueError(f"--words (words_per_passage) must be an integer in [1, {MAX_WORDS_PER_PASSAGE}], "
                         f"got {words_per_passage!r}.")
    if min_words is None:
        return default_min_words(words_per_passage)
    if isinstance(min_words, bool) or not isinstance(min_words, int) or not 0 <= min_words <= words_per_passage:
        raise ValueError(f"--min-words (min_words) must be an integer in [0, --words = {words_per_passage}], "
                         f"got {min_words!r}.")
    return min_words


def split_document(doc: Document, words_per_passage: int = DEFAULT_WORDS_PER_PASSAGE,
                   min_words: int | None = None) -> Iterator[Passage]:
    """Consecutive, non-overlapping runs of ``words_per_passage`` words; a last run shorter than
    ``min_words`` joins the one before it (see the module docstring)."""
    min_words = check_passage_sizes(words_per_passage, min_words)
    words = _bounded_words(doc.text)
    starts = list(range(0, len(words), words_per_passage))
    if len(starts) > 1 and len(words) - starts[-1] < min_words:
        starts.pop()  # the short tail joins the passage before it
    for start, stop in zip(starts, [*starts[1:], len(words)]):
        yield Passage(doc.title, " ".join(words[start:stop]))


def split_documents(docs: Iterable[Document], words_per_passage: int = DEFAULT_WORDS_PER_PASSAGE,
                    min_words: int | None = None) -> Iterator[Passage]:
    for doc in docs:
        yield from split_document(doc, words_per_passage, min_words)


def batched(items: Iterable, size: int) -> Iterator[tuple]:
    """Consecutive tuples of ``size`` items, the last one shorter (itertools.batched of Python 3.12)."""
    iterator = iter(items)
    while batch := tuple(itertools.islice(iterator, size)):
        yield batch


def _bounded_words(text: str) -> list[str]:
    """The whitespace-separated words of ``text``, each longer than MAX_WORD_CHARS cut into pieces."""
    return [piece for word in text.split()
            for piece in ([word] if len(word) <= MAX_WORD_CHARS else
                          (word[i : i + MAX_WORD_CHARS] for i in range(0, len(word), MAX_WORD_CHARS)))]
