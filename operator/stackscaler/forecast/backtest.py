"""The back-test, and ``build``: fit, back-test, and refuse or hand back a model.

The back-test replays the last ``backtest_days`` whole days before ``now`` as the
operator would have lived them, with no peeking: for each day, the shape (daily,
weekly, trend) is fitted on the history before that day only; at each refresh within
the day (every ``refresh_seconds``) the level is re-estimated from the data before
that refresh, and the refresh interval that follows is forecast. It returns

- ``error``: the WAPE of the 5-minute means, ``sum |actual - forecast| / sum actual``,
  scale-free and, unlike a MAPE, not blown up by quiet nights;
- ``naive_error``: the same for holding the mean of the hour before each refresh
  (persistence: what a forecast must beat to know anything the reactive policy does
  not);
- ``upper_ratio``: the ``quantile`` of actual / forecast over every sample (at the
  history's own resolution, noise included): the forecast's ``upper``.

``build`` refuses, with a typed reason and a message for the status, when the history
is too short (24 hours to fit plus one day to back-test), when the back-test error is
above ``max_error``, or when the forecast does not beat persistence by ``min_skill``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from stackscaler.forecast.season import History, Model, fit, fit_shape, level_at, prepare
from stackscaler.forecast.types import (
    DAY,
    MIN_FIT_SECONDS,
    Backtest,
    PredictiveSettings,
    Refusal,
    RefusalReason,
    Series,
)

NAIVE_SECONDS = 3600
"""Persistence holds the mean of this long before each refresh."""


@dataclass(frozen=True)
class Ready:
    """A forecast fit to act on: the model (its ``upper_ratio`` from the back-test) and
    the back-test that vouches for it."""

    model: Model
    backtest: Backtest

    def describe(self) -> str:
        return self.backtest.describe()


Outcome = Ready | Refusal


def _quantile(xs: list[float], q: float) -> float:
    xs.sort()
    if not xs:
        return 1.0
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _wape(abs_err: float, total: float) -> float:
    """sum |error| / sum actual; rounding noise (below 1e-9 of the total) is no error, so
    that a history and the same history scaled compare alike."""
    if abs_err <= 1e-9 * total:
        return 0.0
    return abs_err / total if total > 0 else math.inf


def backtest(
    series: Series | History, now: float, settings: PredictiveSettings
) -> Backtest | Refusal:
    """Replay the last days before ``now`` (see the module). Refused with too little
    history: fewer than 24 hours before the first back-test day."""
    h = series if isinstance(series, History) else prepare(series, now, settings.history_seconds)
    seen, bins = h.seen, h.bins
    b = bins.seconds
    first_sample = seen.start if seen.values else now
    days = min(settings.backtest_days, math.floor((now - first_sample - MIN_FIT_SECONDS) / DAY))
    if days < 1:
        have = max(0.0, now - first_sample) / 3600
        need = (MIN_FIT_SECONDS + DAY) / 3600
        return Refusal(
            RefusalReason.TOO_LITTLE_HISTORY,
            f"too little history: {have:.1f} h, the forecast needs {need:.0f} h "
            f"({MIN_FIT_SECONDS / 3600:.0f} h to fit and a day to back-test)",
        )
    abs_err = naive_err = total = 0.0
    ratios: list[float] = []
    values, start, step = seen.values, seen.start, seen.step
    refresh = settings.refresh_seconds
    means, first = bins.means, bins.first
    for j in range(days, 0, -1):
        day_start = now - j * DAY
        shape = fit_shape(h.present.before(math.floor(day_start / b)))
        r = day_start
        while r < day_start + DAY - 1e-9:
            r_end = min(r + refresh, day_start + DAY)
            # persistence: the mean of the whole bins in the hour before r
            past = [
                y
                for y in means[
                    max(0, math.floor((r - NAIVE_SECONDS) / b) - first) : max(
                        0, math.floor(r / b) - first
                    )
                ]
                if y is not None
            ]
            naive = sum(past) / len(past) if past else 0.0
            # the forecast of each bin the interval touches (0: no forecast)
            kb_lo, kb_hi = math.floor(r / b), math.ceil(r_end / b)
            lv = None if shape is None else level_at(shape, bins, r)
            if shape is None or lv is None:
                fbin = [0.0] * (kb_hi - kb_lo)
            else:
                model = Model(shape, r, lv[0], lv[1], 1.0, r - first_sample)
                fbin = [model.value_at(k * b) for k in range(kb_lo, kb_hi)]
            # error of the whole bins within [r, r_end)
            for k in range(max(math.ceil(r / b), first), min(math.floor(r_end / b), bins.stop)):
                y = means[k - first]
                if y is None:
                    continue
                f = fbin[k - kb_lo]
                abs_err += abs(y - f)
                naive_err += abs(y - naive)
                total += abs(y)
            # actual / forecast of every sample within [r, r_end)
            i_lo = max(0, math.ceil((r - start) / step - 1e-9))
            i_hi = min(len(values), math.floor((r_end - start) / step + 1e-9))
            for i in range(i_lo, i_hi):
                v = values[i]
                if v is None or v != v:  # noqa: PLR0124 (NaN: missing)
                    continue
                f = fbin[math.floor((start + i * step) / b) - kb_lo]
                if f > 0:
                    ratios.append(v / f)
            r = r_end
    error, naive_error = _wape(abs_err, total), _wape(naive_err, total)
    upper = max(1.0, _quantile(ratios, settings.quantile))
    return Backtest(error, naive_error, days, upper, len(ratios))


def build(series: Series, now: float, settings: PredictiveSettings) -> Ready | Refusal:
    """Fit on the history before ``now``, back-test, and decide whether to act.

    What the operator calls at each refresh: either a :class:`Ready` model whose
    ``upper`` carries the back-test's quantile, or a :class:`Refusal` saying why not.
    """
    h = prepare(series, now, settings.history_seconds)
    bt = backtest(h, now, settings)
    if isinstance(bt, Refusal):
        return bt
    if not bt.error <= settings.max_error:
        return Refusal(
            RefusalReason.ERROR_TOO_HIGH,
            f"{bt.describe()} is above the limit of {100 * settings.max_error:.0f}%",
            bt,
        )
    if bt.skill < settings.min_skill:
        return Refusal(
            RefusalReason.NO_SKILL,
            f"{bt.describe()}: the forecast does not beat holding the last hour's level "
            f"by {100 * settings.min_skill:.0f}%",
            bt,
        )
    model = fit(h, now, settings.history_seconds)
    if isinstance(model, Refusal):
        return replace(model, backtest=bt)
    return Ready(replace(model, upper_ratio=bt.upper_ratio), bt)
