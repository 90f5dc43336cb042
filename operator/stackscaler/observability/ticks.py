"""Whether ticks are completing: readiness and liveness of the operator.

Every tick has a deadline per phase (observe, apply), so a tick that runs
for minutes means the operator itself is stuck (a deadlock, a starved pool,
a blocked event loop), not that AWS is slow. Readiness says whether ticks
complete at all; liveness fails only when one has been running far past
anything its deadlines allow, so that the kubelet restarts a stuck process
and never one that is merely waiting out an AWS outage.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

STALLED_AFTER = 300.0
"""A tick running this long is stuck (deadlines allow about 2 x 60 s plus status writes)."""
IDLE_AFTER = 600.0
"""With resources to tick, no tick completed for this long: not ready."""


class TickWatch:
    def __init__(
        self,
        *,
        stalled_after: float = STALLED_AFTER,
        idle_after: float = IDLE_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stalled_after, self.idle_after, self._clock = stalled_after, idle_after, clock
        self._running: dict[str, float] = {}
        self._started = clock()
        self.last_completed: float | None = None
        self.completed = 0

    @contextlib.contextmanager
    def running(self, uid: str) -> Iterator[None]:
        self._running[uid] = self._clock()
        try:
            yield
        finally:
            self._running.pop(uid, None)
            self.last_completed = self._clock()
            self.completed += 1

    def oldest(self) -> float:
        """Seconds the longest-running tick has run (0 when none runs)."""
        if not self._running:
            return 0.0
        return self._clock() - min(self._running.values())

    def alive(self) -> bool | str:
        age = self.oldest()
        if age > self.stalled_after:
            return (
                f"a tick has run for {age:.0f} s (its deadlines allow far less): the operator "
                "is stuck"
            )
        return True

    def ready(self, resources: int) -> bool | str:
        if resources == 0:
            return True
        since = self.last_completed if self.last_completed is not None else self._started
        idle = self._clock() - since
        if idle > self.idle_after:
            return f"no tick of {resources} resource(s) completed in the last {idle:.0f} s"
        return self.alive()
