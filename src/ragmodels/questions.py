"""The user's question texts, checked where they enter (``RagPipeline.answer``, ``ragmodels ask``).

There the text is the user's own, so an empty question is an error that names it, raised before any
tokenizing. Deeper down, ``RagRetriever`` only sees token ids; ids that decode to no text (padding rows,
another tokenizer's ids) get a warning there and retrieval goes on, as in transformers.
"""

from __future__ import annotations

from collections.abc import Sequence


def check_questions(questions: Sequence[str]) -> None:
    """Raise ValueError unless there is at least one question and every one has non-whitespace text."""
    if not questions:
        raise ValueError("Give at least one question, and no empty ones.")
    blank = [i for i, q in enumerate(questions) if not isinstance(q, str) or not q.strip()]
    if blank:
        raise ValueError(
            f"Give at least one question, and no empty ones: the questions at positions {blank} (counting from 0) "
            "are empty or only whitespace."
        )
