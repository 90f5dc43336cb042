"""Coalescing concurrent requests into batched calls.

Many resources are due in the same tick; each asks for its own metric or
capacity. A :class:`Coalescer` collects the requests that arrive within a
short window (per key, for example per (region, role)) and hands them to one
``flush`` call, which makes as few provider calls as the provider's batch
limits allow (GetMetricData: 500 queries; DescribeAutoScalingGroups: 100
names) and returns one result, or one exception, per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

Flush = Callable[[K, Sequence[I]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[K, I, R]):
    def __init__(self, flush: Flush[K, I, R], *, window: float = 0.05) -> None:
        self._flush = flush
        self._window = window
        self._pending: dict[K, list[tuple[I, asyncio.Future[R]]]] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: K, item: I) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        batch = self._pending.setdefault(key, [])
        batch.append((item, future))
        if key not in self._timers:
            self._timers[key] = loop.call_later(self._window, self._start, key)
        return await future

    def _start(self, key: K) -> None:
        self._timers.pop(key, None)
        batch = self._pending.pop(key, [])
        if batch:
            task = asyncio.get_running_loop().create_task(self._run(key, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, key: K, batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush(key, [item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(
                    f"batch flush returned {len(results)} results for {len(batch)} requests"
                )
        except BaseException as exc:  # one failure for the whole batch
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
