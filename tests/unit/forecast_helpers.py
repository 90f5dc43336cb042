"""Histories for the forecast's tests: seasonal, noisy, flat; in epoch seconds."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from stackscaler.forecast import PredictiveMode, PredictiveSettings, Series
from stackscaler.forecast.types import DAY

MONDAY = 1_700_438_400.0
"""2023-11-20 00:00 UTC, a Monday."""


def settings(**kw: object) -> PredictiveSettings:
    base: dict[str, object] = {"mode": PredictiveMode.FORECAST_AND_SCALE, "metric": "rpm"}
    base.update(kw)
    return PredictiveSettings(**base)  # type: ignore[arg-type]


def daily_shape(harmonics: Sequence[tuple[float, float]]) -> Callable[[float], float]:
    """A smooth positive daily shape: 1 + sum a_k cos(2 pi k (t / day) + phase_k), with
    sum |a_k| < 1."""

    def shape(t: float) -> float:
        x = 2 * math.pi * (t % DAY) / DAY
        return 1.0 + sum(a * math.cos((k + 1) * x + ph) for k, (a, ph) in enumerate(harmonics))

    return shape


def web_day(t: float) -> float:
    """A web day: quiet at 04:00 UTC, busy at 16:00 (between 0.25 and 1)."""
    return 0.625 - 0.375 * math.cos(2 * math.pi * ((t % DAY) / DAY - 4 / 24))


def make_series(
    f: Callable[[float], float],
    *,
    start: float = MONDAY,
    days: float = 14,
    step: float = 60.0,
    noise: float = 0.0,
    seed: int = 1,
    gaps: Sequence[tuple[float, float]] = (),
) -> Series:
    """Samples of ``f`` at each period's start, times (1 + noise x N(0, 1)) clipped at 0;
    ``gaps``: (from, to) epoch seconds left missing."""
    rng = random.Random(seed)
    n = round(days * DAY / step)
    values: list[float | None] = []
    for i in range(n):
        t = start + i * step
        if any(a <= t < b for a, b in gaps):
            values.append(None)
            continue
        v = f(t)
        if noise:
            v = max(0.0, v * (1 + noise * rng.gauss(0, 1)))
        values.append(v)
    return Series(start, step, tuple(values))
