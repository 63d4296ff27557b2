"""Dynamic batching: concurrent requests' images are gathered into one model call.

A worker takes the first waiting job, then whatever else is queued, waiting at most ``max_wait_s`` for more, up to
``max_size`` jobs; jobs with different keys (e.g. TTA policies) run as separate batches. ``workers`` such loops run
at once, each batch in a thread so the event loop keeps accepting requests. A job that waited longer than
``timeout_s`` for a worker fails with 503 ``busy`` instead of running late.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from lesionlab.serving.api_errors import ApiError

logger = logging.getLogger(__name__)

#: ``run(key, items) -> results``: one result per item, in order; runs in a worker thread.
BatchFn = Callable[[Hashable, list[Any]], Sequence[Any]]


@dataclass
class Job:
    key: Hashable
    item: Any
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    """``await batcher.submit(key, item)`` → the item's result, computed together with concurrent items."""

    def __init__(self, run: BatchFn, *, max_size: int = 32, max_wait_s: float = 0.002, workers: int = 1,
                 timeout_s: float = 30.0, metrics: Any = None) -> None:
        self.run, self.max_size, self.max_wait_s = run, max_size, max_wait_s
        self.workers, self.timeout_s, self.metrics = workers, timeout_s, metrics
        self.running = 0
        # one queue and its workers per event loop (asyncio queues and futures belong to one loop; an app may be
        # served by several, e.g. a test client beside a live server)
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Queue[Job]] = \
            weakref.WeakKeyDictionary()
        self._tasks: set[asyncio.Task] = set()

    @property
    def waiting(self) -> int:
        return sum(q.qsize() for q in list(self._queues.values()))

    def _start(self) -> asyncio.Queue[Job]:
        """The running loop's queue; created lazily with its worker tasks, inside the server's event loop."""
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = asyncio.Queue()
            for i in range(self.workers):
                task = loop.create_task(self._worker(queue), name=f"lesionlab-batcher-{i}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return queue

    async def submit(self, key: Hashable, item: Any) -> Any:
        return (await self.submit_many(key, [item]))[0]

    async def submit_many(self, key: Hashable, items: Sequence[Any]) -> list[Any]:
        """Queue several items (a batch request) and wait for all their results."""
        queue = self._start()
        loop = asyncio.get_running_loop()
        jobs = [Job(key, item, loop.create_future()) for item in items]
        for job in jobs:
            queue.put_nowait(job)
        self._gauge()
        return list(await asyncio.gather(*(job.future for job in jobs)))

    async def _worker(self, queue: asyncio.Queue[Job]) -> None:
        while True:
            jobs = [await queue.get()]
            deadline = time.perf_counter() + self.max_wait_s
            while len(jobs) < self.max_size:
                if queue.empty():
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    try:
                        jobs.append(await asyncio.wait_for(queue.get(), remaining))
                    except asyncio.TimeoutError:
                        break
                else:
                    jobs.append(queue.get_nowait())
            self._gauge()
            for key in dict.fromkeys(job.key for job in jobs):
                await self._run([job for job in jobs if job.key == key])

    async def _run(self, jobs: list[Job]) -> None:
        now = time.perf_counter()
        live = []
        for job in jobs:
            if job.future.done():  # the client went away
                continue
            if now - job.enqueued > self.timeout_s:
                job.future.set_exception(ApiError(
                    503, "busy", f"the inference workers stayed busy for {self.timeout_s:g} s; retry later",
                    headers={"Retry-After": "5"}))
                continue
            live.append(job)
        if not live:
            return
        self.running += len(live)
        start = time.perf_counter()
        try:
            results = await run_in_threadpool(self.run, live[0].key, [job.item for job in live])
        except Exception as exc:  # every job of the batch gets the error (e.g. a model failure → 500)
            for job in live:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        finally:
            self.running -= len(live)
            if self.metrics is not None:
                self.metrics.observe_batch(len(live), [start - job.enqueued for job in live],
                                           time.perf_counter() - start)
        for job, result in zip(live, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self.waiting)


__all__ = ["BatchFn", "DynamicBatcher", "Job"]
