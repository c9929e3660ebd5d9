"""ragmodels.questions: the one check of what can be asked (pipeline, CLI and server share it)."""

from __future__ import annotations

import os

import pytest

from ragmodels.questions import MAX_QUESTION_CHARS, check_questions, question_problem, quote


@pytest.mark.parametrize("question, problem", [
    ("What is the capital of Peru?", None),
    ("x" * MAX_QUESTION_CHARS, None),  # at the limit: allowed here (the tokenizer check comes later)
    ("x" * (MAX_QUESTION_CHARS + 1), f"is too long: {MAX_QUESTION_CHARS + 1} characters, at most 1000 allowed"),
    (" \t\n", "is empty"),
    (os.fsdecode(b"caf\xff"), "is not valid text: character 4 is '\\udcff', a lone surrogate"),
    ("caf\ud800 x", "is not valid text: character 4 is '\\ud800'"),
    ("café 🌍", None),  # any valid Unicode, astral characters included
    (42, "is not text (got int)"),
])
def test_question_problem(question, problem):
    found = question_problem(question)
    assert found == problem if problem is None else found.startswith(problem), found


def test_check_questions_names_the_first_bad_one():
    with pytest.raises(ValueError, match="^Question 2 is empty.$"):
        check_questions(["ok", "", "x" * 5000])
    with pytest.raises(ValueError, match="at least one question"):
        check_questions([])
    check_questions(["ok"])


def test_quotes_are_short_and_ascii():
    assert quote("é" * 1000) == "'" + "\\xe9" * 40 + "...'"
    assert quote("caf\ud800") == "'caf\\ud800'"
