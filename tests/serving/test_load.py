"""Bounded load over loopback: 16 concurrent clients x 20 requests each at the server's defaults (batching on,
the default in-flight limit, which must admit them all), and x 5 unbatched (slower: one question per model
call). Timings are for benchmarks/serving.py, not asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import QUESTIONS
from serving.conftest import FAST, running

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the load tester lives there
from loadtest import run_load  # noqa: E402

CLIENTS = 16


@pytest.mark.parametrize("max_batch_size, per_client", [(1, 5), (8, 20)], ids=["unbatched", "batched"])
def test_load_completes_without_errors(pipeline, log_lines, max_batch_size, per_client):
    requests = CLIENTS * per_client
    bodies = [{"questions": [QUESTIONS[i % len(QUESTIONS)]], "n_docs": 2, **FAST} for i in range(requests)]
    with running(pipeline, max_batch_size=max_batch_size) as srv:
        result = run_load(srv.url, bodies, concurrency=CLIENTS, timeout_s=60)
    assert result.errors == [] and len(result.latencies_s) == requests
    sizes = [json.loads(line)["batch_size"] for line in log_lines]
    assert len(sizes) == requests and max(sizes) <= max_batch_size
    if max_batch_size > 1:  # with 16 clients waiting, batches must form
        assert sum(sizes) / len(sizes) > 2, sizes
