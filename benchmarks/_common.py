"""Shared benchmark helpers: wall-clock timing, peak resident memory of a block, markdown tables.

Generic: nothing here knows about RAG. Each benchmark measures ours and the reference in one process
and prints a table with their ratios (see benchmarks/generation.py).
"""

from __future__ import annotations

import gc
import os
import resource
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class PeakRSS:
    """Context manager sampling RSS every ``interval`` s: ``.peak`` (bytes) and ``.delta`` (peak - start)."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.start = self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> "PeakRSS":
        gc.collect()
        self.start = self.peak = rss_bytes()
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def delta(self) -> int:
        return self.peak - self.start


@dataclass
class Measurement:
    name: str
    seconds: float  # best of the repeats
    peak_rss: int  # bytes, process peak during the runs
    peak_delta: int  # bytes above the RSS at the start of the runs
    cpu_seconds: float = 0.0  # process CPU time (user + system, all threads) of the best repeat
    result: Any = None


def measure(name: str, fn: Callable[[], Any], repeats: int = 1, warmup: int = 0) -> Measurement:
    """Run ``fn`` warmup + repeats times; best wall time of the repeats and peak RSS over them."""
    for _ in range(warmup):
        fn()
    best, best_cpu, result = float("inf"), 0.0, None
    with PeakRSS() as mem:
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), cpu_seconds()
            result = fn()
            elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - c0
            if elapsed < best:
                best, best_cpu = elapsed, cpu
    return Measurement(name, best, mem.peak, mem.delta, best_cpu, result)


def cpu_seconds() -> float:
    """CPU time of this process so far, user + system, all threads. Less sensitive than wall time to other
    processes sharing the cores (a loaded machine stretches wall time, not the work done)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def ratio(ours: float, reference: float) -> str:
    return f"{ours / reference:.2f}x" if reference else "n/a"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])])
