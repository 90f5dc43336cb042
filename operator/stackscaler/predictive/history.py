"""A resource's load history in memory: 5-minute bins on the clock, bounded.

One :class:`Bins` per resource (and one more for the capacity the operator observed,
where the load needs it): an ``array('f')`` of one float per 5-minute period, ``NaN``
where nothing is known (missing is not zero), indexed by the period's number since the
epoch (``floor(t / 300)``), so bins of every resource line up with the clock and with
each other. At most ``limit`` bins are kept (14 days: 4,032 floats, 16 KiB); older ones
are dropped as new ones arrive.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable

from stackscaler.forecast import Series

STEP = 300
"""Seconds per bin: the forecast's own resolution (its model works in 5-minute bins)."""


def bin_of(t: float) -> int:
    """The number of the 5-minute period holding epoch second ``t``."""
    return math.floor(t / STEP)


class Bins:
    """Values per 5-minute period; ``NaN`` is unknown. See the module docstring."""

    __slots__ = ("_first", "_values", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a history keeps at least one bin")
        self.limit = limit
        self._first = 0
        self._values = array("f")

    def __len__(self) -> int:
        return len(self._values)

    @property
    def first(self) -> int | None:
        """The first bin held (None when empty)."""
        return self._first if self._values else None

    @property
    def stop(self) -> int | None:
        """One past the last bin held (None when empty)."""
        return self._first + len(self._values) if self._values else None

    def known(self) -> int:
        """How many bins hold a value."""
        return sum(1 for v in self._values if not math.isnan(v))

    def get(self, k: int) -> float:
        i = k - self._first
        return self._values[i] if self._values and 0 <= i < len(self._values) else math.nan

    def put(self, points: Iterable[tuple[int, float]]) -> None:
        """Set bin ``k`` to ``v`` for each point (the newest value wins); non-finite values
        are ignored. Extends the range to cover them, then drops the oldest bins past the
        limit."""
        pts = [(k, v) for k, v in points if math.isfinite(v)]
        if not pts:
            return
        lo, hi = min(k for k, _ in pts), max(k for k, _ in pts) + 1
        if not self._values or lo < self._first:  # the first points, or older ones: rebuild
            old, old_first = self._values, self._first
            if old:
                lo, hi = min(lo, old_first), max(hi, old_first + len(old))
            lo = max(lo, hi - self.limit)
            self._values = array("f", [math.nan]) * (hi - lo)
            self._first = lo
            for i, v in enumerate(old):
                j = old_first + i - lo
                if 0 <= j < len(self._values):
                    self._values[j] = v
        else:
            stop = self._first + len(self._values)
            if hi > stop:
                self._values.extend(array("f", [math.nan]) * (hi - stop))
        for k, v in pts:
            i = k - self._first
            if 0 <= i < len(self._values):
                self._values[i] = v
        self._trim()

    def extend_to(self, k_stop: int) -> None:
        """Make the range reach ``k_stop`` (unknown bins), dropping the oldest past the limit:
        a read that found nothing new still moves the history's end."""
        stop = self.stop
        if stop is not None and k_stop > stop:
            self._values.extend(array("f", [math.nan]) * (k_stop - stop))
            self._trim()

    def _trim(self) -> None:
        extra = len(self._values) - self.limit
        if extra > 0:
            del self._values[:extra]
            self._first += extra

    def values(self, k_lo: int, k_hi: int) -> list[float]:
        """The values of bins ``[k_lo, k_hi)``, NaN where unknown or not held."""
        return [self.get(k) for k in range(k_lo, k_hi)]


def load_series(metric: Bins, capacity: Bins | None, k_stop: int) -> Series | None:
    """The load history up to bin ``k_stop``: the metric's bins, times the capacity's
    where the load is a per-unit metric times the units serving (``capacity`` given).
    None when nothing is held."""
    first = metric.first
    if first is None or k_stop <= first:
        return None
    values: list[float | None] = []
    for k in range(first, k_stop):
        v = metric.get(k)
        if capacity is not None:
            v = v * capacity.get(k)
        values.append(None if math.isnan(v) else v)
    return Series(float(first * STEP), float(STEP), tuple(values))


class CapacityRecorder:
    """The capacity the operator observed at its ticks, averaged per 5-minute bin.

    For a per-unit metric whose target has no capacity history in CloudWatch (anything
    but an Auto Scaling group), the load is the metric times the mean of the units ready
    in each bin, as this process saw them: after a restart it starts afresh.
    """

    __slots__ = ("_k", "_n", "_sum", "bins")

    def __init__(self, limit: int) -> None:
        self.bins = Bins(limit)
        self._k: int | None = None
        self._sum = 0.0
        self._n = 0

    def record(self, t: float, units: int) -> None:
        """One observation at epoch second ``t``: the bin's mean so far is its value."""
        k = bin_of(t)
        if k != self._k:
            self._k, self._sum, self._n = k, 0.0, 0
        self._sum += units
        self._n += 1
        self.bins.put([(k, self._sum / self._n)])
