"""Generator inputs: "prefix + title + title_sep + text + doc_sep + question", tokenized in ONE call.

The strings and their tokenization are the reference's ``RagRetriever.postprocess_docs`` byte for
byte: one surrounding double quote is stripped from each title, every double space of the joined
string becomes one space, and the batch is truncated and padded to ``max_combined_length``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase


def decode_questions(question_input_ids: Any, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Question strings from question-encoder ids (bs, L), special tokens skipped (as the reference)."""
    rows = question_input_ids.tolist() if hasattr(question_input_ids, "tolist") else list(question_input_ids)
    return tokenizer.batch_decode(rows, skip_special_tokens=True)


def combine(title: str, text: str, question: str, prefix: str | None, title_sep: str, doc_sep: str) -> str:
    """One generator input string (the reference's ``cat_input_and_doc``)."""
    title = title.removeprefix('"').removesuffix('"')
    return ((prefix or "") + title + title_sep + text + doc_sep + question).replace("  ", " ")


def contextualized_strings(doc_dicts: Sequence[dict], questions: Sequence[str], prefix: str | None,
                           title_sep: str, doc_sep: str) -> list[str]:
    """bs * n_docs strings, question-major: all passages of question 0, then question 1, ..."""
    return [
        combine(title, text, question, prefix, title_sep, doc_sep)
        for docs, question in zip(doc_dicts, questions, strict=True)
        for title, text in zip(docs["title"], docs["text"], strict=True)
    ]


def contextualize(doc_dicts: Sequence[dict], questions: Sequence[str], tokenizer: PreTrainedTokenizerBase, *,
                  prefix: str | None, title_sep: str, doc_sep: str, max_length: int,
                  return_tensors: str | None = None) -> tuple[Any, Any]:
    """Tokenize all contextualized strings at once -> (input_ids, attention_mask), (bs * n_docs, max_length)."""
    strings = contextualized_strings(doc_dicts, questions, prefix, title_sep, doc_sep)
    encoded = tokenizer(strings, max_length=max_length, return_tensors=return_tensors,
                        padding="max_length", truncation=True)
    return encoded["input_ids"], encoded["attention_mask"]


def tokenize_docs(doc_dicts: Sequence[dict], tokenizer: PreTrainedTokenizerBase,
                  return_tensors: str | None = None) -> tuple[Any, Any]:
    """(title, text) pairs for the context encoder of end-to-end training, padded to the longest."""
    titles = [title for docs in doc_dicts for title in docs["title"]]
    texts = [text for docs in doc_dicts for text in docs["text"]]
    encoded = tokenizer(titles, texts, truncation=True, padding="longest", return_tensors=return_tensors)
    return encoded["input_ids"], encoded["attention_mask"]
