"""Bounded load over loopback: 200 requests from 16 concurrent clients, with and without batching."""

from __future__ import annotations

import json

import pytest

from conftest import QUESTIONS
from ragmodels.serving.loadtest import run_load
from serving.conftest import FAST, running

REQUESTS, CLIENTS = 200, 16


@pytest.mark.parametrize("max_batch_size", [1, 8], ids=["unbatched", "batched"])
def test_load_completes_without_errors(pipeline, log_lines, max_batch_size):
    bodies = [{"questions": [QUESTIONS[i % len(QUESTIONS)]], "n_docs": 2, **FAST} for i in range(REQUESTS)]
    with running(pipeline, max_batch_size=max_batch_size, max_wait_ms=5, request_timeout_s=60) as srv:
        result = run_load(srv.url, bodies, concurrency=CLIENTS, timeout_s=60)
    assert result.errors == [] and len(result.latencies_s) == REQUESTS
    assert result.wall_s < 60  # bounded in time as well as in count
    sizes = [json.loads(line)["batch_size"] for line in log_lines]
    assert len(sizes) == REQUESTS and max(sizes) <= max_batch_size
    if max_batch_size > 1:  # with 16 clients waiting, batches must form
        assert sum(sizes) / len(sizes) > 2, sizes
