"""DynamicBatcher with a recording stand-in for the model: grouping by options, sizes, waits, errors."""

from __future__ import annotations

import asyncio

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


def test_a_lone_request_is_answered_and_a_full_batch_does_not_wait():
    (result,), _ = run_jobs([(["a"], "x")], max_wait_ms=50)
    assert result == (["x:a"], 1)
    calls = []

    async def main():
        # a wait far longer than the test: the second request fills the batch, which then runs at once
        batcher = DynamicBatcher(lambda q, o: calls.append(list(q)) or list(q), max_batch_size=2, max_wait_ms=600_000)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(["a"], "x"))
            await asyncio.sleep(0.05)
            return await asyncio.wait_for(asyncio.gather(first, batcher.submit(["b"], "x")), 60)
        finally:
            await batcher.close()

    assert asyncio.run(main()) == [(["a"], 2), (["b"], 2)] and calls == [["a", "b"]]


def test_model_errors_reach_only_the_request_that_caused_them():
    def picky(questions, options):
        if "bad" in questions:
            raise ValueError("bad question")
        return list(questions)

    results, _ = run_jobs([(["a"], "x"), (["bad"], "x"), (["c"], "x")], run=picky)
    assert results[0] == (["a"], 1) and results[2] == (["c"], 1)  # run again alone after the batch failed
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad question"


@pytest.mark.parametrize("max_batch_size, max_wait_ms", [(0, 1), (1, -1)])
def test_settings_are_checked(max_batch_size, max_wait_ms):
    from ragmodels.serving import ServerSettings

    with pytest.raises(ValueError):
        ServerSettings(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms)
