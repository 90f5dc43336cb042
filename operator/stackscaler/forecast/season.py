"""The seasonal model: a daily shape, day-of-week factors, a trend and a recent level.

    load(t) = level x growth ** (t - level_time) x weekly[day of week(t)] x daily[slot(t)]

fitted on a history binned into 5-minute means (the shape is that fine, never finer):

1. **Daily shape** (``daily``, mean 1): per 5-minute slot of the (UTC) day, the
   median over days of the slot's mean divided by its day's level; a day's level is
   the ratio of sums ``sum(load) / sum(shape)`` over its samples, so a partial day or
   a gap counts only what it has. Two passes (the first with a flat shape), then a
   circular 3-slot (15-minute) smoothing.
2. **Trend and weekly factors** from the day levels (days with at least half their
   slots, and a level above a tenth of the median day: an outage is not a season).
   With 8 days or more (every weekday seen, one twice), the growth is the Theil-Sen
   slope of log(level) over pairs of the *same* weekday (immune to the weekly cycle),
   and each weekday's factor the geometric mean of its days' levels over that trend
   (normalized to a geometric mean of 1). With fewer days: Theil-Sen over every pair
   and no weekly factors.
3. **Level**: at the moment of the fit, ``sum(load) / sum(weekly x daily)`` over the
   last three hours (a busier day than the shape says shows by mid-morning), dated at
   the centre of that window so the trend carries it forward.

Multiplicative and built from medians, ratios of sums and quantiles of ratios: scaling
the history by c scales the forecast by c. Pure: time is an argument.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

from stackscaler.forecast.types import (
    DAY,
    MIN_FIT_SECONDS,
    Forecast,
    Refusal,
    RefusalReason,
    Series,
)

BIN_SECONDS = 300
"""The model's resolution: 5-minute means."""
LEVEL_SECONDS = 3 * 3600
"""The window before the fit's moment that sets the level."""
WEEKLY_MIN_DAYS = 8
"""Day-of-week factors from this many usable days on (every weekday seen, one twice)."""
OUTAGE_FRACTION = 0.1
"""A day whose level is below this fraction of the median day is an outage: it sets no
trend and no weekly factor."""
MAX_GROWTH_PER_DAY = math.log(2.0)
"""The trend is clamped to doubling (or halving) per day."""
_THURSDAY = 3
"""1970-01-01, day 0 of the epoch, was a Thursday (Monday = 0)."""


def bin_seconds_for(step: float) -> int:
    """The bin a series of this step is averaged into: 5 minutes, or the smallest
    divisor of a day at least as long as the step."""
    if step <= BIN_SECONDS:
        return BIN_SECONDS
    for b in (600, 900, 1200, 1800, 3600, 7200, 10800, 14400, 21600, 43200, DAY):
        if b >= step:
            return b
    return DAY


@dataclass(frozen=True)
class Bins:
    """A history averaged into bins aligned on epoch multiples of ``seconds``:
    ``means[j]`` is bin ``first + j`` (None: no sample in it)."""

    seconds: int
    first: int
    means: tuple[float | None, ...]

    @property
    def stop(self) -> int:
        return self.first + len(self.means)


def truncate(series: Series, now: float, history_seconds: float) -> Series:
    """The samples whose whole period lies within ``[now - history_seconds, now]``:
    nothing at or after ``now`` is ever read (no peeking)."""
    step = series.step
    hi = min(len(series.values), max(0, math.floor((now - series.start) / step + 1e-9)))
    lo = max(0, math.ceil((now - history_seconds - series.start) / step - 1e-9))
    lo = min(lo, hi)
    return Series(series.start + lo * step, step, series.values[lo:hi])


def to_bins(series: Series, seconds: int) -> Bins:
    """Mean of the present samples of each bin (a sample belongs to the bin of its start)."""
    values = series.values
    if not values:
        return Bins(seconds, 0, ())
    start, step = series.start, series.step
    first = math.floor(start / seconds)
    last = math.floor((start + step * (len(values) - 1)) / seconds)
    n = last - first + 1
    sums = [0.0] * n
    counts = [0] * n
    ratio = seconds / step
    if ratio == int(ratio) and (start / step) == int(start / step):
        # the common case (per-minute samples on minute boundaries): whole chunks per bin
        per = int(ratio)
        offset = int(start / step) - first * per  # samples of bin ``first`` before start
        j = 0
        i = 0
        take = per - offset
        while i < len(values):
            chunk = values[i : i + take]
            s = 0.0
            c = 0
            for v in chunk:
                if v is not None and v == v:  # noqa: PLR0124 (NaN: missing)
                    s += v
                    c += 1
            sums[j] = s
            counts[j] = c
            i += take
            take = per
            j += 1
    else:
        for i, v in enumerate(values):
            if v is None or v != v:  # noqa: PLR0124 (NaN: missing)
                continue
            j = math.floor((start + i * step) / seconds) - first
            sums[j] += v
            counts[j] += 1
    means = tuple(s / c if c else None for s, c in zip(sums, counts, strict=True))
    return Bins(seconds, first, means)


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    mid = n // 2
    return xs[mid] if n % 2 else 0.5 * (xs[mid - 1] + xs[mid])


def _theil_sen(points: Sequence[tuple[int, float]], *, period: int | None) -> float:
    """Median slope over pairs (x distinct); with ``period``, only pairs whose x differ by a
    multiple of it (the same weekday). 0 with no pair."""
    slopes = [
        (yj - yi) / (xj - xi)
        for a, (xi, yi) in enumerate(points)
        for xj, yj in points[a + 1 :]
        if xj != xi and (period is None or (xj - xi) % period == 0)
    ]
    return _median(slopes) if slopes else 0.0


def weekday(day: int) -> int:
    """Monday = 0 of an epoch day number (UTC)."""
    return (day + _THURSDAY) % 7


@dataclass(frozen=True)
class Shape:
    """The seasonal part of a fit: everything but the level."""

    bin_seconds: int
    daily: tuple[float, ...]
    """Per slot of the UTC day, mean 1."""
    weekly: tuple[float, ...]
    """Per weekday (Monday = 0), geometric mean 1; all 1 when not fitted."""
    growth: float
    """Trend, log per day."""
    days: int
    """Usable days the trend and weekly factors came from."""

    @property
    def has_weekly(self) -> bool:
        return any(w != 1.0 for w in self.weekly)

    def factor(self, k: int) -> float:
        """weekly x daily of bin number ``k``."""
        slots = len(self.daily)
        return self.weekly[weekday(k // slots)] * self.daily[k % slots]


@dataclass(frozen=True)
class Present:
    """The bins that have a sample, as parallel tuples in time order: bin number, day
    (from ``day0``), slot of the day and mean. What every fit loops over."""

    seconds: int
    day0: int
    k: tuple[int, ...]
    day: tuple[int, ...]
    slot: tuple[int, ...]
    y: tuple[float, ...]

    @property
    def slots(self) -> int:
        return DAY // self.seconds

    @property
    def ndays(self) -> int:
        return self.day[-1] + 1 if self.day else 0

    def before(self, k_stop: int) -> Present:
        """The bins before bin number ``k_stop``."""
        n = bisect.bisect_left(self.k, k_stop)
        return Present(self.seconds, self.day0, self.k[:n], self.day[:n], self.slot[:n], self.y[:n])


def present_bins(bins: Bins) -> Present:
    slots = DAY // bins.seconds
    day0 = bins.first // slots
    ks = [bins.first + j for j, y in enumerate(bins.means) if y is not None]
    ys = [y for y in bins.means if y is not None]
    return Present(
        bins.seconds,
        day0,
        tuple(ks),
        tuple(k // slots - day0 for k in ks),
        tuple(k % slots for k in ks),
        tuple(ys),
    )


def _within_day(slots: int, growth: float) -> list[float]:
    """The trend within a day, relative to its middle, per slot."""
    if not growth:
        return [1.0] * slots
    return [math.exp(growth * ((s + 0.5) / slots - 0.5)) for s in range(slots)]


def _day_levels(p: Present, weight: list[float]) -> list[float | None]:
    """Each day's level at its middle: the ratio of sums ``sum(y) / sum(weight[slot])``
    over its samples (``weight``: shape x trend within the day)."""
    nd = p.ndays
    num = [0.0] * nd
    den = [0.0] * nd
    for d, s, y in zip(p.day, p.slot, p.y, strict=True):
        num[d] += y
        den[d] += weight[s]
    return [n / w if w > 0 else None for n, w in zip(num, den, strict=True)]


def _daily_shape(
    p: Present, levels: list[float | None], within: list[float], use: list[bool]
) -> list[float] | None:
    """Median per slot of load / (day level x trend within the day) over the days
    ``use`` marks; smoothed, mean 1."""
    slots = len(within)
    per_slot: list[list[float]] = [[] for _ in range(slots)]
    inv = [
        1.0 / lv if ok and lv is not None and lv > 0 else 0.0
        for lv, ok in zip(levels, use, strict=True)
    ]
    inv_within = [1.0 / w for w in within]
    for d, s, y in zip(p.day, p.slot, p.y, strict=True):
        a = inv[d]
        if a:
            per_slot[s].append(y * a * inv_within[s])
    raw = [_median(r) if r else None for r in per_slot]
    known = [r for r in raw if r is not None]
    if not known or sum(known) <= 0:
        return None
    fill = sum(known) / len(known)
    filled = [fill if r is None else r for r in raw]
    smooth = [(filled[s - 1] + filled[s] + filled[(s + 1) % slots]) / 3.0 for s in range(slots)]
    mean = sum(smooth) / slots
    return [v / mean for v in smooth]


def _trend_and_week(
    levels: list[float | None], counts: list[int], day0: int, slots: int
) -> tuple[float, list[float], int]:
    """(growth per day, weekday factors, usable days) from the day levels."""
    usable = [
        (d + day0, lv)
        for d, lv in enumerate(levels)
        if lv is not None and lv > 0 and counts[d] >= slots // 2
    ]
    if usable:
        floor = OUTAGE_FRACTION * _median([lv for _, lv in usable])
        usable = [(d, lv) for d, lv in usable if lv > floor]
    logs = [(d, math.log(lv)) for d, lv in usable]
    weekly = [1.0] * 7
    if len(logs) >= WEEKLY_MIN_DAYS and len({weekday(d) for d, _ in logs}) == 7:
        growth = _theil_sen(logs, period=7)
        intercept = _median([y - growth * d for d, y in logs])
        resid: list[list[float]] = [[] for _ in range(7)]
        for d, y in logs:
            resid[weekday(d)].append(y - intercept - growth * d)
        wlog = [sum(r) / len(r) if r else 0.0 for r in resid]
        centre = sum(wlog) / 7.0
        weekly = [math.exp(w - centre) for w in wlog]
    else:
        growth = _theil_sen(logs, period=None) if len(logs) >= 2 else 0.0
    growth = max(-MAX_GROWTH_PER_DAY, min(MAX_GROWTH_PER_DAY, growth))
    return growth, weekly, len(logs)


def fit_shape(bins: Bins | Present) -> Shape | None:
    """The daily shape, weekly factors and trend; None without any load.

    Two rounds: the shape from the (nearly) whole days, levelled with a flat shape and
    no trend (a partial day's level depends on the shape: a night alone would read as
    a quiet day); then the trend. Then the shape again from every day with half its
    slots, each levelled with that shape and with the trend taken out of the day (a
    growing series would otherwise read as evenings busier than mornings); then the
    trend and the weekly factors from the final day levels.
    """
    p = present_bins(bins) if isinstance(bins, Bins) else bins
    slots = p.slots
    counts = [0] * p.ndays
    for d in p.day:
        counts[d] += 1
    daily: list[float] | None = [1.0] * slots
    growth = 0.0
    weekly = [1.0] * 7
    days = 0
    for rnd in range(2):
        within = _within_day(slots, growth)
        assert daily is not None
        levels = _day_levels(p, [a * b for a, b in zip(daily, within, strict=True)])
        # first the whole days (or the most complete one), then every half day
        need = min(max(counts, default=0), (9 * slots) // 10) if rnd == 0 else slots // 2
        daily = _daily_shape(p, levels, within, [c >= need for c in counts])
        if daily is None:
            return None
        levels = _day_levels(p, [a * b for a, b in zip(daily, within, strict=True)])
        growth, weekly, days = _trend_and_week(levels, counts, p.day0, slots)
    assert daily is not None
    return Shape(p.seconds, tuple(daily), tuple(weekly), growth, days)


@dataclass(frozen=True)
class Model:
    """A fitted forecast: the shape, the level at ``fitted_at`` and the upper ratio."""

    shape: Shape
    fitted_at: float
    level: float
    """Deseasonalized load at ``level_time``."""
    level_time: float
    upper_ratio: float = 1.0
    """``upper`` = ``value`` x this (set from the back-test)."""
    history_seconds: float = 0.0
    """How much history (with gaps) the fit saw."""

    def value_at(self, t: float) -> float:
        shape = self.shape
        k = math.floor(t / shape.bin_seconds)
        trend = math.exp(shape.growth * (t - self.level_time) / DAY) if shape.growth else 1.0
        return self.level * trend * shape.factor(k)

    def forecast(self, t: float) -> Forecast:
        """The load expected at ``t``."""
        v = self.value_at(t)
        return Forecast(t, v, v * self.upper_ratio)

    def peak(self, start: float, end: float) -> Forecast:
        """The highest forecast over ``[start, end]`` (each bin the window touches), dated
        ``end``: the load the capacity ordered at ``start`` must carry until ``end``."""
        b = self.shape.bin_seconds
        k0, k1 = math.floor(start / b), math.floor(end / b)
        best = max(self.value_at(max(start, k * b)) for k in range(k0, max(k0, k1) + 1))
        return Forecast(end, best, best * self.upper_ratio)


def level_at(shape: Shape, bins: Bins, now: float) -> tuple[float, float] | None:
    """(level, its time): ``sum(load) / sum(weekly x daily)`` over the whole bins of the
    ``LEVEL_SECONDS`` before ``now`` that have a sample; None when none has (or the shape
    is 0 there). Only bins that end by ``now`` are read."""
    b = bins.seconds
    k_hi = min(bins.stop, math.floor(now / b))  # a bin that ``now`` cuts is not read
    k_lo = max(bins.first, math.floor((now - LEVEL_SECONDS) / b))
    num = den = when = 0.0
    means, first = bins.means, bins.first
    for k in range(k_lo, k_hi):
        y = means[k - first]
        if y is None:
            continue
        f = shape.factor(k)
        num += y
        den += f
        when += f * (k + 0.5) * b
    if den <= 0:
        return None
    return num / den, when / den


@dataclass(frozen=True)
class History:
    """A history as the fits read it: truncated at ``now``, binned, its present bins."""

    now: float
    seen: Series
    bins: Bins
    present: Present

    @property
    def span(self) -> float:
        """Seconds from the first sample to ``now``."""
        return self.now - self.seen.start if self.seen.values else 0.0


def prepare(series: Series, now: float, history_seconds: float) -> History:
    """What the fit may read of ``series`` at ``now``: nothing at or after it."""
    seen = truncate(series, now, history_seconds)
    bins = to_bins(seen, bin_seconds_for(seen.step))
    return History(now, seen, bins, present_bins(bins))


def fit(series: Series | History, now: float, history_seconds: float) -> Model | Refusal:
    """Fit the model on the history before ``now`` (at most ``history_seconds`` of it).

    Refused (``TooLittleHistory``) with less than 24 hours between the first sample and
    ``now``, or with no sample in the last three hours (nothing says the level now).
    """
    h = series if isinstance(series, History) else prepare(series, now, history_seconds)
    span, bins = h.span, h.bins
    if span < MIN_FIT_SECONDS or not h.present.k:
        return Refusal(
            RefusalReason.TOO_LITTLE_HISTORY,
            f"too little history: {span / 3600:.1f} h, the forecast needs "
            f"{MIN_FIT_SECONDS / 3600:.0f} h to fit",
        )
    shape = fit_shape(h.present)
    if shape is None:
        # no load at all in the history: the forecast is zero (a floor of nothing)
        flat = Shape(bins.seconds, (1.0,) * (DAY // bins.seconds), (1.0,) * 7, 0.0, 0)
        return Model(flat, now, 0.0, now, 1.0, span)
    lv = level_at(shape, bins, now)
    if lv is None:
        return Refusal(
            RefusalReason.TOO_LITTLE_HISTORY,
            f"no sample in the last {LEVEL_SECONDS / 3600:.0f} h: nothing says the level now",
        )
    return Model(shape, now, lv[0], lv[1], 1.0, span)
