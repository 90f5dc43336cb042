"""The story the demo tells: launch day at NASA, replayed in demo time. Pure.

The embedded NASA-HTTP trace (requests per minute, July-August 1995, minute 0
= 1995-07-01 00:00 EDT) holds the classic "first 10 million users" moment:
Thursday 13 July 1995, when Space Shuttle Discovery (STS-70) lifted off at
09:42 EDT and the Kennedy Space Center's web site had the busiest minute of
the two months (409 requests). The story replays 06:00-12:00 EDT of that
day: a quiet morning, the ramp to the launch, the peak, and the afternoon
decline, so every tier scales out and then back in.

One story minute (one row of the trace) lasts ``minute_seconds`` of wall
time (2 s by default: the six hours take 12 minutes). Demand is the trace's
requests of that minute times ``scale``; the trace is a step function, so
bursts stay bursts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

LAUNCH_DAY = 12
"""Days after the trace's first day (1995-07-01): Thursday 1995-07-13."""
STORY_START = 6 * 60
"""Minute of the day (EDT) the story starts at."""
STORY_MINUTES = 6 * 60
LAUNCH_AT = 9 * 60 + 42
"""STS-70 lift-off, minute of the day (EDT)."""
DEFAULT_MINUTE_SECONDS = 2.0
PEAK_WINDOW = 10
"""Minutes over which the story's peak is averaged when calibrating (bursts are shorter)."""


@dataclass(frozen=True)
class Story:
    demand: tuple[float, ...]
    """Requests per story minute, already scaled."""
    raw: tuple[float, ...]
    """The trace's requests per minute (unscaled)."""
    scale: float
    minute_seconds: float
    start_minute_of_day: int = STORY_START

    @property
    def wall_seconds(self) -> float:
        """How long the whole story takes in wall time."""
        return len(self.demand) * self.minute_seconds

    def minute_at(self, wall_seconds: float) -> int:
        """Index of the story minute playing ``wall_seconds`` into the story (clamped)."""
        i = math.floor(max(0.0, wall_seconds) / self.minute_seconds)
        return min(i, len(self.demand) - 1)

    def demand_at(self, wall_seconds: float) -> float:
        return self.demand[self.minute_at(wall_seconds)]

    def minute_of_day(self, wall_seconds: float) -> float:
        """The story's time of day in minutes (EDT), ``wall_seconds`` into the story (clamped
        to the story; 582.5 is 09:42:30)."""
        minutes = min(max(0.0, wall_seconds) / self.minute_seconds, float(len(self.demand)))
        return self.start_minute_of_day + minutes

    def clock(self, wall_seconds: float) -> str:
        """The story's time of day, ``HH:MM`` (EDT), ``wall_seconds`` into the story."""
        return minute_of_day_label(self.start_minute_of_day + self.minute_at(wall_seconds))

    def with_scale(self, scale: float) -> Story:
        return Story(
            tuple(r * scale for r in self.raw),
            self.raw,
            scale,
            self.minute_seconds,
            self.start_minute_of_day,
        )


def minute_of_day_label(minute: int) -> str:
    return f"{(minute // 60) % 24:02d}:{minute % 60:02d}"


def launch_day(
    trace: Sequence[float],
    *,
    minute_seconds: float = DEFAULT_MINUTE_SECONDS,
    scale: float = 1.0,
) -> Story:
    """The launch-day window of the NASA trace (per-minute rows from 1995-07-01 00:00 EDT)."""
    if minute_seconds <= 0:
        raise ValueError("minute_seconds must be > 0")
    first = LAUNCH_DAY * 1440 + STORY_START
    raw = tuple(float(x) for x in trace[first : first + STORY_MINUTES])
    if len(raw) < STORY_MINUTES:
        raise ValueError(
            f"the trace has {len(trace)} minutes; the story needs {first + STORY_MINUTES}"
        )
    return Story(raw, raw, 1.0, minute_seconds).with_scale(scale)


def smoothed_peak(values: Sequence[float], window: int = PEAK_WINDOW) -> float:
    """The highest mean of ``window`` consecutive values (the whole mean when shorter)."""
    if not values:
        return 0.0
    window = max(1, min(window, len(values)))
    total = sum(values[:window])
    best = total
    for i in range(window, len(values)):
        total += values[i] - values[i - window]
        best = max(best, total)
    return best / window


def round_sig(value: float, digits: int = 2) -> float:
    """``value`` rounded to ``digits`` significant digits (150.47 -> 150.0, 0.01234 -> 0.012)."""
    if value == 0 or not math.isfinite(value):
        return value
    exponent = math.floor(math.log10(abs(value)))
    return round(value, digits - 1 - exponent)
