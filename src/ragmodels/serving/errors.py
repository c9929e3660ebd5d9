"""Error responses of the server: plain-words messages, small whatever the input, safe for any Unicode.

Every error body is ``{"detail": "...", ...}`` rendered as ASCII JSON (a lone surrogate is escaped, never
an encoding failure), with at most ``MAX_DETAIL_CHARS`` characters of text: messages quote inputs through
``ragmodels.questions.quote`` and list at most ``MAX_PROBLEMS`` validation problems (each also in
``errors``, cut to ``MAX_MESSAGE_CHARS``), so no error response reaches 4 kB.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi.responses import JSONResponse

from ragmodels.questions import quote

MAX_PROBLEMS = 5
MAX_DETAIL_CHARS = 1500
MAX_MESSAGE_CHARS = 200  # per problem in "errors": with the detail, a response stays under 4 kB
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,40}")  # field names shown as they are; others quoted


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: renders any Python string, lone surrogates included."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(status: int, detail: str, headers: Mapping[str, str] | None = None, **extra: Any) -> JSONResponse:
    """``{"detail": detail, **extra}`` with ``status``; the detail cut to MAX_DETAIL_CHARS characters."""
    return AsciiJSONResponse({"detail": _cut(detail, MAX_DETAIL_CHARS), **extra}, status_code=status,
                             headers=dict(headers or {}))


def validation_response(errors: Iterable[Mapping[str, Any]], fields: Iterable[str]) -> JSONResponse:
    """400 (malformed JSON) or 422 (schema or limits) with one plain sentence per problem.

    ``fields``: the request's field names, listed when an unknown one is sent.
    """
    errors = list(errors)
    status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
    problems = [{"field": _label(e.get("loc", ())), "message": _cut(describe(e, fields), MAX_MESSAGE_CHARS)}
                for e in errors[:MAX_PROBLEMS]]
    detail = "; ".join(p["message"] for p in problems)
    if len(errors) > MAX_PROBLEMS:
        detail += f" (and {len(errors) - MAX_PROBLEMS} more problems)"
    return error_response(status, detail, errors=problems)


def _label(loc: Iterable[Any]) -> str:
    """Where in the body: "question 2" for questions[1], "'n_docs'" for a field, "the request" for the whole."""
    parts = [p for p in loc if p != "body"]
    if len(parts) >= 2 and parts[0] == "questions" and isinstance(parts[1], int):
        return f"question {parts[1] + 1}"
    if not parts or isinstance(parts[0], int):
        return "the request"
    name = ".".join(str(p) for p in parts)
    return name if _PLAIN.fullmatch(name) else quote(name)


def describe(error: Mapping[str, Any], fields: Iterable[str] = ()) -> str:
    """One pydantic error as a sentence that names the field and quotes no more than a few characters."""
    kind, ctx, value = error.get("type", ""), error.get("ctx") or {}, error.get("input")
    label = _label(error.get("loc", ()))
    if kind == "json_invalid":
        loc = error.get("loc", ())
        where = f" at character {loc[-1] + 1}" if loc and isinstance(loc[-1], int) else ""
        return f"Malformed JSON body{where}: {str(ctx.get('error', 'cannot be parsed'))[:100]}"
    if kind == "extra_forbidden":
        return f"Unknown field {label}; the fields are: {', '.join(fields)}"
    if kind == "missing":
        return f"The field {label} is required"
    if kind == "string_too_long" and isinstance(value, str):
        return f"{_cap(label)} is too long: {len(value)} characters, at most {ctx.get('max_length')} allowed"
    if kind == "string_too_short":
        return f"{_cap(label)} is empty"
    if kind == "too_short":
        return f"{_cap(label)} must have at least {ctx.get('min_length')} item(s), got {ctx.get('actual_length', 0)}"
    if kind == "too_long":
        return f"{_cap(label)} must have at most {ctx.get('max_length')} items, got {ctx.get('actual_length')}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bound = {"greater_than_equal": "at least", "less_than_equal": "at most", "greater_than": "more than",
                 "less_than": "less than"}[kind]
        limit = next(iter(ctx.values()), "?")
        return f"{_cap(label)} must be {bound} {limit}, got {_short(value)}"
    message = str(error.get("msg", "is not valid")).removeprefix("Value error, ")[:300]
    if label.startswith("question ") and kind == "value_error":
        return f"{_cap(label)} {message}"  # from question_problem: "is too long: ..."
    if label == "the request":
        return message
    return f"{_cap(label)}: {message.replace('Input should', 'should')}"


def _cap(label: str) -> str:
    """A label at the start of a sentence: "Question 2", "The request"; field names stay as spelled."""
    return label[:1].upper() + label[1:] if label.startswith(("question ", "the ")) else label


def _short(value: Any) -> str:
    """A number as written (cut at 20 characters), anything else quoted."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value)
        return text if len(text) <= 20 else text[:20] + "..."
    return quote(str(value), 20)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
