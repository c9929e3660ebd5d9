"""Dynamic batching: requests that arrive within ``max_wait`` of each other, up to ``max_batch_size``
questions, with equal decoding options, go to the model as one call in a single worker thread. A batch
that fails is run again request by request, so that an error reaches only the request that caused it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

RunBatch = Callable[[list[str], Hashable], list[Any]]  # (questions, options) -> one result per question


@dataclass
class _Job:
    questions: list[str]
    options: Hashable
    future: asyncio.Future = field(repr=False)


class DynamicBatcher:
    """``await submit(questions, options)`` -> (results, batch size); ``start()`` / ``close()`` in one loop."""

    def __init__(self, run: RunBatch, max_batch_size: int, max_wait_ms: float):
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragmodels-model")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, questions: list[str], options: Hashable) -> tuple[list[Any], int]:
        job = _Job(questions, options, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.future

    async def _serve(self) -> None:
        while True:
            jobs = await self._collect()
            for batch in _batches(jobs, self.max_batch_size):
                await self._run_batch(batch)

    async def _collect(self) -> list[_Job]:
        """The first waiting job and those arriving within max_wait of it, up to max_batch_size questions."""
        jobs = [await self._queue.get()]
        count = len(jobs[0].questions)
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while count < self.max_batch_size:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                job = self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
            except (asyncio.QueueEmpty, TimeoutError):
                break
            jobs.append(job)
            count += len(job.questions)
        return jobs

    async def _run_batch(self, batch: list[_Job]) -> None:
        batch = [job for job in batch if not job.future.done()]  # timed-out requests are dropped
        if not batch:
            return
        questions = [q for job in batch for q in job.questions]
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._run, questions, batch[0].options)
        except Exception as err:  # noqa: BLE001 - handed to the waiting request(s)
            if len(batch) > 1:  # one request's bad question must not fail the others batched with it
                for job in batch:
                    await self._run_batch([job])
                return
            if not batch[0].future.done():
                batch[0].future.set_exception(err)
            return
        start = 0
        for job in batch:
            if not job.future.done():
                job.future.set_result((results[start : start + len(job.questions)], len(questions)))
            start += len(job.questions)


def _batches(jobs: list[_Job], max_batch_size: int) -> list[list[_Job]]:
    """Group jobs by options (first-come order), then pack each group into batches of <= max_batch_size
    questions (a job larger than that runs alone)."""
    groups: dict[Hashable, list[_Job]] = {}
    for job in jobs:
        groups.setdefault(job.options, []).append(job)
    batches: list[list[_Job]] = []
    for group in groups.values():
        current: list[_Job] = []
        size = 0
        for job in group:
            if current and size + len(job.questions) > max_batch_size:
                batches.append(current)
                current, size = [], 0
            current.append(job)
            size += len(job.questions)
        batches.append(current)
    return batches
