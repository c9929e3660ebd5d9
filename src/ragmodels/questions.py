"""What counts as an askable question: one check shared by the pipeline, ``ragmodels ask`` and the server.

A question is at most ``MAX_QUESTION_CHARS`` characters of valid Unicode text (no lone surrogates: what
Python makes of undecodable command-line bytes, or a JSON ``"\\ud800"`` escape) that is not blank. After
tokenization it must keep some text: the question encoder reads at most ``MAX_QUESTION_TOKENS`` tokens and
turns a "word" longer than its WordPiece limit into one unknown token, so ``"x" * 1000`` reads as nothing.
Error messages quote at most ``QUOTE_CHARS`` characters of a question, so they stay small whatever comes in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_QUESTION_CHARS = 1000
MAX_QUESTION_TOKENS = 128  # questions are truncated to this many question-encoder tokens
QUOTE_CHARS = 40


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """``text`` as a short, ASCII-safe quotation for an error message (cut at ``limit`` characters)."""
    short = text if len(text) <= limit else text[:limit] + "..."
    return ascii(short)


def question_problem(question: Any, max_chars: int = MAX_QUESTION_CHARS) -> str | None:
    """Why ``question`` cannot be asked, in plain words (None when it can): "is empty", "is too long: ..."."""
    if not isinstance(question, str):
        return f"is not text (got {type(question).__name__})"
    if not question.strip():
        return "is empty"
    if len(question) > max_chars:
        return f"is too long: {len(question)} characters, at most {max_chars} allowed"
    bad = next((i for i, ch in enumerate(question) if "\ud800" <= ch <= "\udfff"), None)
    if bad is not None:
        return (f"is not valid text: character {bad + 1} is {quote(question[bad])}, a lone surrogate (an undecodable "
                "byte or a broken escape); send UTF-8 text")
    return None


def check_questions(questions: Sequence[Any], max_chars: int = MAX_QUESTION_CHARS) -> None:
    """ValueError naming the first question that ``question_problem`` refuses (or an empty list)."""
    if not questions:
        raise ValueError("Give at least one question.")
    for number, question in enumerate(questions, 1):
        problem = question_problem(question, max_chars)
        if problem is not None:
            raise ValueError(f"Question {number} {problem}.")


def check_readable(questions: Sequence[str], input_ids: Any, tokenizer: Any) -> None:
    """ValueError when a question keeps no text after the question tokenizer (see the module docstring)."""
    texts = tokenizer.batch_decode(input_ids, skip_special_tokens=True)
    for number, (question, text) in enumerate(zip(questions, texts), 1):
        if not text.strip():
            longest = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
            word_limit = getattr(longest, "max_input_chars_per_word", None)
            why = (f"a word longer than {word_limit} characters becomes one unknown token"
                   if word_limit else "its words are unknown tokens")
            raise ValueError(
                f"Question {number} ({quote(question)}, {len(question)} characters) has no text left after the "
                f"question tokenizer: questions are cut at {MAX_QUESTION_TOKENS} tokens and {why}. "
                "Ask with ordinary words.")
