"""One long-lived task per resource, ticking every pollIntervalSeconds.

Ticks are aligned to the wall clock (multiples of the poll interval) plus a
small phase within ``jitter``, so resources with the same interval fall due
together and their metric and capacity reads batch into a handful of AWS
calls, while the phases keep a fleet from hitting the API at the same
millisecond. A resource's phase is stable (taken from its uid), so the
resources start in the same order every wave: each lands in the same read
batch as last time and is decided about as long after its slot, which keeps
the age of its decision close to the poll interval.

A fleet larger than ``wave_size`` (500: one full GetMetricData call) is
split into ``ceil(N / wave_size)`` equal sub-waves, each due at its own
sub-slot of the interval (slot + k * interval / waves): 2,000 resources on a
30 s poll tick 500 at a time at :00, :07.5, :15 and :22.5. A sub-wave's
reads still fill whole batches (one GetMetricData, five
DescribeAutoScalingGroups within their burst), and its decisions, status
writes and AWS writes take a quarter of the time a single wave of 2,000
would: no tier waits seconds behind the others' answers, and the write rate
limit is spent over the interval instead of in one burst. A resource's
sub-wave is its rank by phase, so it stays put while the fleet is the same
size, and moves at most once when the number of sub-waves changes. A new
spec (a new generation) wakes its resource at once; status updates, which the
operator writes itself, do not.

A tick that raises never stops its resource's task, nor any other: it is
logged and retried after ``error_delay`` seconds, doubling with every failure
in a row up to ``max_error_delay`` (so a resource that fails for good costs a
log line and a few calls every few minutes, not every 30 s), and back to the
normal cadence after the first tick that succeeds. A new spec still wakes a
failing resource at once.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from stackscaler.sharding import fraction_of

log = logging.getLogger("stackscaler.scheduler")

Tick = Callable[[Mapping[str, Any]], Awaitable[float]]
"""Runs one tick for a body; returns the seconds until the next one."""

MIN_DELAY = 1.0
WAVE_SIZE = 500
"""At most this many resources of one interval fall due together (see the module doc)."""
MIN_SUBSLOT = 2.0
"""Sub-slots of an interval are at least this many seconds apart."""
ERROR_DELAY = 30.0
"""Seconds before the first retry of a tick that raised."""
MAX_ERROR_DELAY = 300.0
"""The retry delay doubles per failure in a row up to this."""


class _Entry:
    def __init__(self, body: Mapping[str, Any]) -> None:
        self.body = body
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.failures = 0
        """Ticks in a row that raised."""
        self.phase = 0.0
        """Seconds after each aligned slot at which this resource ticks."""


def _generation(body: Mapping[str, Any]) -> Any:
    meta = body.get("metadata") or {}
    return (meta.get("generation"), (meta.get("annotations") or {}).get("stackscaler.dev/paused"))


class Scheduler:
    def __init__(
        self,
        tick: Tick,
        *,
        jitter: float = 0.2,
        on_forget: Callable[[str, Mapping[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.time,
        min_delay: float = MIN_DELAY,
        error_delay: float = ERROR_DELAY,
        max_error_delay: float = MAX_ERROR_DELAY,
        wave_size: int = WAVE_SIZE,
    ) -> None:
        if not 0 < error_delay <= max_error_delay:
            raise ValueError(
                f"need 0 < error_delay <= max_error_delay, got {error_delay}, {max_error_delay}"
            )
        if min_delay <= 0:
            raise ValueError(f"min_delay must be > 0, got {min_delay}")
        if wave_size < 1:
            raise ValueError(f"wave_size must be >= 1, got {wave_size}")
        self._wave_size = wave_size
        self._tick, self._jitter, self._clock = tick, jitter, clock
        self._min_delay = min_delay
        self._error_delay, self._max_error_delay = error_delay, max_error_delay
        self._on_forget = on_forget
        self._entries: dict[str, _Entry] = {}
        self._order: list[tuple[float, str]] = []
        """(fraction_of(uid), uid) of every resource, sorted: the ranks of the sub-waves."""

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, uid: object) -> bool:
        return uid in self._entries

    def upsert(self, body: Mapping[str, Any]) -> None:
        """A resource was added or changed (any watch event but deletion)."""
        uid = str((body.get("metadata") or {}).get("uid", ""))
        entry = self._entries.get(uid)
        if entry is None:
            entry = self._entries[uid] = _Entry(body)
            fraction = fraction_of(uid)
            entry.phase = fraction * self._jitter
            bisect.insort(self._order, (fraction, uid))
            entry.task = asyncio.get_running_loop().create_task(
                self._run(uid, entry), name=f"stackscaler:{uid}"
            )
            return
        changed = _generation(body) != _generation(entry.body)
        entry.body = body
        if changed:
            entry.wake.set()

    def remove(self, uid: str) -> None:
        entry = self._entries.pop(uid, None)
        if entry is not None:
            key = (fraction_of(uid), uid)
            at = bisect.bisect_left(self._order, key)
            if at < len(self._order) and self._order[at] == key:
                del self._order[at]
        if entry is not None and entry.task is not None:
            entry.task.cancel()
            if self._on_forget is not None:
                self._on_forget(uid, entry.body)

    def next_delay(self, interval: float, phase: float = 0.0, offset: float = 0.0) -> float:
        """Seconds to the next slot (a multiple of ``interval`` plus ``offset``), plus
        ``phase``."""
        interval = max(self._min_delay, interval)
        since = self._clock() - offset
        aligned = (int(since // interval) + 1) * interval - since
        return aligned + phase

    def offset(self, uid: str, interval: float) -> float:
        """The sub-slot of ``uid``'s wave within ``interval`` (0 for a fleet of at most
        ``wave_size``): its rank by phase, in equal sub-waves."""
        n = len(self._order)
        waves = min(math.ceil(n / self._wave_size), max(1, int(interval // MIN_SUBSLOT)))
        if waves <= 1:
            return 0.0
        rank = bisect.bisect_left(self._order, (fraction_of(uid), uid))
        return (rank * waves // n) * interval / waves

    def error_delay(self, failures: int) -> float:
        """Seconds before retrying after ``failures`` failed ticks in a row (>= 1):
        ``error_delay`` doubled per further failure, at most ``max_error_delay``."""
        doublings = min(max(failures - 1, 0), 1000)  # 2.0**1000 is still a finite float
        return min(self._error_delay * 2.0**doublings, self._max_error_delay)

    async def _run(self, uid: str, entry: _Entry) -> None:
        await asyncio.sleep(entry.phase)
        while True:
            entry.wake.clear()
            try:
                interval = await self._tick(entry.body)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one resource never stops the others
                entry.failures += 1
                retry = self.error_delay(entry.failures)
                log.exception(
                    "tick failed for %s (%d in a row); retrying in %ss",
                    uid,
                    entry.failures,
                    retry,
                )
                # counted from the failure, not aligned to the wall clock, plus the jitter
                delay = retry + random.uniform(0, self._jitter)
            else:
                entry.failures = 0
                delay = (
                    self.next_delay(interval, entry.phase, self.offset(uid, interval))
                    if interval >= self._min_delay
                    else self._min_delay
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # no task of its own, as wait_for makes
                    await entry.wake.wait()

    async def close(self) -> None:
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        self._entries.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
