"""Serving fixtures: the tiny RAG-Token pipeline over the tiny knowledge base, servers on loopback ports
(uvicorn in a background thread), and a JSON-over-HTTP client built on urllib."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from ragmodels.pipeline import RagPipeline
from ragmodels.serving import BackgroundServer, ServerSettings, create_app
from ragmodels.serving.logs import JsonFormatter, logger

FAST = {"num_beams": 1, "max_new_tokens": 6}  # decoding options that keep the tests quick


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any  # case-insensitive (email.message.Message)


def call(url: str, data: Any = None, raw: bytes | None = None, timeout: float = 30) -> Reply:
    """GET (no data) or POST JSON ``data`` (or ``raw`` bytes) to ``url``; 4xx/5xx are returned, not raised."""
    body = raw if raw is not None else (json.dumps(data).encode() if data is not None else None)
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, _decode(response.read()), response.headers)
    except urllib.error.HTTPError as err:
        return Reply(err.code, _decode(err.read()), err.headers)


def _decode(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode()


@contextmanager
def running(pipeline_or_loader: Any, **settings: Any) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(pipeline_or_loader, ServerSettings(**settings))) as server:
        yield server


@pytest.fixture(scope="session")
def pipeline(tiny_rag_checkpoint, tiny_knowledge_base) -> RagPipeline:
    return RagPipeline.from_pretrained(tiny_rag_checkpoint("token"), index=tiny_knowledge_base, device="cpu")


@pytest.fixture(scope="module")
def server(pipeline) -> Iterator[BackgroundServer]:
    """A batching server (batches of up to 8 questions, 10 ms wait) over the shared pipeline."""
    with running(pipeline, max_batch_size=8, max_wait_ms=10, max_questions=4, max_question_chars=200,
                 max_n_docs=8, max_new_tokens=16) as srv:
        yield srv


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """The server's log lines (formatted as JSON) emitted during the test."""
    handler = _Lines()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)
