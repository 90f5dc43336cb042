"""What the actuators share to tell units in warm-up from units ready.

A unit is ready once it serves and was launched (created) at least the
resource's warm-up before now (:func:`stackscaler.model.spec.warmup`). The
clock is injected (tests stop it; the operator reads the wall clock), and
launch times an actuator has to ask for separately (EC2 instances of an Auto
Scaling group, ElastiCache member clusters) are kept in a bounded cache:
they never change, so each is asked for once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

Clock = Callable[[], datetime]
"""Now, timezone-aware."""

K = TypeVar("K", bound=Hashable)

LAUNCH_TIMES_KEPT = 20_000
"""Launch times an actuator remembers (about 3 MB); the least recently used go first
and are asked for again if their unit is seen again."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """``moment`` with a time zone (AWS timestamps are UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def past_warmup(launched: datetime | None, now: datetime, seconds: int) -> bool:
    """Whether a unit launched at ``launched`` is past a warm-up of ``seconds`` at ``now``.

    An unknown launch time is not past any warm-up but zero: the unit has not
    been seen producing the metrics.
    """
    if seconds <= 0:
        return True
    if launched is None:
        return False
    return aware(now) - aware(launched) >= timedelta(seconds=seconds)


class LaunchTimes(Generic[K]):
    """A bounded, least-recently-used map of unit -> launch time."""

    def __init__(self, size: int = LAUNCH_TIMES_KEPT) -> None:
        self._size = size
        self._times: OrderedDict[K, datetime] = OrderedDict()

    def get(self, key: K) -> datetime | None:
        found = self._times.get(key)
        if found is not None:
            self._times.move_to_end(key)
        return found

    def __contains__(self, key: object) -> bool:
        return key in self._times

    def put(self, key: K, launched: datetime) -> None:
        self._times[key] = aware(launched)
        self._times.move_to_end(key)
        while len(self._times) > self._size:
            self._times.popitem(last=False)

    def __len__(self) -> int:
        return len(self._times)
