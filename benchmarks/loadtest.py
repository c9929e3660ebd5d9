"""A small HTTP load generator for ``POST /v1/answer``: N requests from C concurrent clients, with
latency percentiles and throughput (used by the tests and benchmarks/serving.py)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoadResult:
    """Per-request latencies (s) of the successful requests, the failures, and the wall time of the run."""

    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1000) if self.latencies_s else float("nan")

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return len(self.latencies_s) / self.wall_s if self.wall_s else 0.0


def post_json(url: str, body: dict, timeout_s: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def run_load(base_url: str, bodies: Sequence[dict], concurrency: int = 16, timeout_s: float = 30) -> LoadResult:
    """POST every body to ``base_url + /v1/answer`` from ``concurrency`` client threads."""
    result = LoadResult()

    def one(body: dict) -> None:
        start = time.perf_counter()
        try:
            status, payload = post_json(base_url + "/v1/answer", body, timeout_s)
        except OSError as err:
            result.errors.append(f"{type(err).__name__}: {err}")
            return
        if status == 200:
            result.latencies_s.append(time.perf_counter() - start)
        else:
            result.errors.append(f"{status}: {payload[:200]!r}")

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, bodies))
    result.wall_s = time.perf_counter() - start
    return result
