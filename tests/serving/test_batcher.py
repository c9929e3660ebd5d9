"""DynamicBatcher with a recording stand-in for the model: grouping by options, sizes, waits, errors."""

from __future__ import annotations

import asyncio
import time

import pytest

from ragmodels.serving.batcher import DynamicBatcher


def run_jobs(jobs, max_batch_size=8, max_wait_ms=50.0, run=None):
    """Submit ``jobs`` [(questions, options)] at once; return (results per job, model calls)."""
    calls = []

    def record(questions, options):
        calls.append((list(questions), options))
        return [f"{options}:{q}" for q in questions]

    async def main():
        batcher = DynamicBatcher(run or record, max_batch_size, max_wait_ms)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(q, o) for q, o in jobs), return_exceptions=True)
        finally:
            await batcher.close()

    return asyncio.run(main()), calls


def test_equal_options_share_a_call_and_results_go_back_to_their_request():
    results, calls = run_jobs([(["a"], "x"), (["b", "c"], "y"), (["d"], "x"), (["e"], "y")])
    assert calls == [(["a", "d"], "x"), (["b", "c", "e"], "y")]
    assert [r[0] for r in results] == [["x:a"], ["y:b", "y:c"], ["x:d"], ["y:e"]]
    assert [r[1] for r in results] == [2, 3, 2, 3]  # batch sizes


def test_batches_hold_at_most_max_batch_size_questions():
    _, calls = run_jobs([([str(i)], "x") for i in range(7)], max_batch_size=3)
    assert [len(q) for q, _ in calls] == [3, 3, 1]
    _, calls = run_jobs([([str(i)], "x") for i in range(3)], max_batch_size=1)
    assert [len(q) for q, _ in calls] == [1, 1, 1]


def test_a_lone_request_waits_at_most_max_wait():
    start = time.perf_counter()
    (result,), _ = run_jobs([(["a"], "x")], max_wait_ms=100)
    elapsed = time.perf_counter() - start
    assert result == (["x:a"], 1) and 0.09 < elapsed < 2


def test_model_errors_reach_every_request_of_the_batch():
    def broken(questions, options):
        raise ValueError("bad batch")

    results, _ = run_jobs([(["a"], "x"), (["b"], "x")], run=broken)
    assert all(isinstance(r, ValueError) and str(r) == "bad batch" for r in results)


@pytest.mark.parametrize("max_batch_size, max_wait_ms", [(0, 1), (1, -1)])
def test_settings_are_checked(max_batch_size, max_wait_ms):
    from ragmodels.serving import ServerSettings

    with pytest.raises(ValueError):
        ServerSettings(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms)
