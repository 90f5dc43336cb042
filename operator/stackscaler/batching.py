"""Coalescing concurrent requests into batched calls.

Many resources are due in the same tick; each asks for its own metric or
capacity. A :class:`Coalescer` collects the requests of one key (for example
one (region, role)) into a batch and hands it to one ``flush`` call, which
makes as few provider calls as the provider's batch limits allow
(GetMetricData: 500 queries; DescribeAutoScalingGroups: 100 names) and
returns one result, or one exception, per request.

A batch goes as soon as it holds ``max_batch`` requests (one provider call's
worth), when no request came for ``quiet`` seconds, or ``window`` seconds
after its first request, whichever comes first. A wave of thousands of
resources keeps arriving for longer than any fixed window (the scheduler
spreads them over its jitter, and starting each tick takes the event loop a
little while), so a fixed window cut waves into more calls than needed;
closing a batch on quiet or when full sends a wave of N requests in about
N / max_batch calls, while a lone request waits ``quiet`` seconds at most.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

Flush = Callable[[K, Sequence[I]], Awaitable[Sequence[R | BaseException]]]


QUIET = 0.1
"""Seconds without a new request after which a batch goes."""
WINDOW = 0.5
"""Seconds after its first request a batch goes at the latest."""


class Coalescer(Generic[K, I, R]):
    def __init__(
        self,
        flush: Flush[K, I, R],
        *,
        quiet: float = QUIET,
        window: float = WINDOW,
        max_batch: int | None = None,
    ) -> None:
        if not 0 < quiet <= window:
            raise ValueError(f"need 0 < quiet <= window, got {quiet}, {window}")
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._flush = flush
        self._quiet, self._window, self._max_batch = quiet, window, max_batch
        self._pending: dict[K, list[tuple[I, asyncio.Future[R]]]] = {}
        self._first: dict[K, float] = {}
        self._last: dict[K, float] = {}
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, key: K, item: I) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        batch = self._pending.setdefault(key, [])
        batch.append((item, future))
        now = loop.time()
        self._last[key] = now
        if self._max_batch is not None and len(batch) >= self._max_batch:
            self._start(key)  # one call's worth: no reason to wait
        elif key not in self._timers:
            self._first[key] = now
            self._timers[key] = loop.call_at(now + self._quiet, self._due, key)
        return await future

    def _due(self, key: K) -> None:
        """The batch's timer: send it, unless requests are still coming in."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        quiet_at = self._last.get(key, now) + self._quiet
        latest = self._first.get(key, now) + self._window
        if now < quiet_at and now < latest:
            self._timers[key] = loop.call_at(min(quiet_at, latest), self._due, key)
            return
        self._start(key)

    def _start(self, key: K) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._first.pop(key, None)
        self._last.pop(key, None)
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
