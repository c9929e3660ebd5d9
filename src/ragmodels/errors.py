"""The error class of bad inputs to the RAG models.

Where transformers' RAG code *asserts* on its inputs (a wrong ``n_docs``, contexts missing without a
retriever, no config), it raises ``AssertionError``, and code written for it (its own tests among
them) catches that. We raise ``RagInputError`` there instead: a ``ValueError`` with a message that says
what is wrong and how to fix it, which ``except AssertionError`` still catches.
"""

from __future__ import annotations


class RagInputError(ValueError, AssertionError):
    """Bad input to a RAG model or retriever; both a ValueError and an AssertionError (see the module docstring)."""
