"""One long-lived task per resource, ticking every pollIntervalSeconds.

Ticks are aligned to the wall clock (multiples of the poll interval) plus a
small random jitter, so resources with the same interval fall due together
and their metric and capacity reads batch into a handful of AWS calls, while
the jitter keeps a fleet from hitting the API at the same millisecond. A new
spec (a new generation) wakes its resource at once; status updates, which the
operator writes itself, do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

log = logging.getLogger("stackscaler.scheduler")

Tick = Callable[[Mapping[str, Any]], Awaitable[float]]
"""Runs one tick for a body; returns the seconds until the next one."""

MIN_DELAY = 1.0
ERROR_DELAY = 30.0


class _Entry:
    def __init__(self, body: Mapping[str, Any]) -> None:
        self.body = body
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


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
    ) -> None:
        self._tick, self._jitter, self._clock = tick, jitter, clock
        self._on_forget = on_forget
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def upsert(self, body: Mapping[str, Any]) -> None:
        """A resource was added or changed (any watch event but deletion)."""
        uid = str((body.get("metadata") or {}).get("uid", ""))
        entry = self._entries.get(uid)
        if entry is None:
            entry = self._entries[uid] = _Entry(body)
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
        if entry is not None and entry.task is not None:
            entry.task.cancel()
            if self._on_forget is not None:
                self._on_forget(uid, entry.body)

    def next_delay(self, interval: float) -> float:
        """Seconds to the next aligned tick, plus jitter."""
        interval = max(MIN_DELAY, interval)
        now = self._clock()
        aligned = (int(now // interval) + 1) * interval - now
        return aligned + random.uniform(0, self._jitter)

    async def _run(self, uid: str, entry: _Entry) -> None:
        await asyncio.sleep(random.uniform(0, self._jitter))
        while True:
            entry.wake.clear()
            try:
                interval = await self._tick(entry.body)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one resource never stops the others
                log.exception("tick failed for %s; retrying in %ss", uid, ERROR_DELAY)
                interval = ERROR_DELAY
            delay = self.next_delay(interval) if interval >= MIN_DELAY else MIN_DELAY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(entry.wake.wait(), timeout=delay)

    async def close(self) -> None:
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        self._entries.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
