"""Invariants of the forecasting core, checked with hypothesis.

- a periodic history (a smooth daily shape, weekday factors) is forecast near-exactly;
- scaling the history scales the forecast (and changes neither the back-test's error
  nor the decision to act);
- no peeking: changing the history after ``now`` never changes a forecast made at
  ``now``, nor its back-test;
- too short a history is refused;
- the floor is monotone in the forecast and within [min, max].
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackscaler.forecast import (
    Forecast,
    Ready,
    Refusal,
    RefusalReason,
    Series,
    build,
    capacity_floor,
    fit,
)
from stackscaler.forecast.season import weekday
from stackscaler.forecast.types import DAY
from stackscaler.model.spec import MetricTarget, TargetType, Tolerance
from tests.unit.forecast_helpers import MONDAY, daily_shape, make_series
from tests.unit.forecast_helpers import settings as predictive

SETTINGS = settings(max_examples=25, deadline=None)

harmonics = st.lists(
    st.tuples(st.floats(0.0, 0.3), st.floats(0.0, 2 * math.pi)), min_size=1, max_size=3
)
weekly_factors = st.lists(st.floats(0.3, 1.0), min_size=7, max_size=7)


@SETTINGS
@given(
    shape=harmonics,
    week=st.one_of(st.none(), weekly_factors),
    level=st.floats(1.0, 1e6),
    days=st.integers(8, 14),
    hour=st.integers(0, 23),
)
def test_a_periodic_history_is_forecast_near_exactly(
    shape: list[tuple[float, float]],
    week: list[float] | None,
    level: float,
    days: int,
    hour: int,
) -> None:
    p = daily_shape(shape)

    def load(t: float) -> float:
        w = 1.0 if week is None else week[weekday(int(t // DAY))]
        return level * w * p(t)

    now = MONDAY + days * DAY + hour * 3600
    series = make_series(load, days=days + 1, step=300.0)  # sampled past now: not read
    model = fit(series, now, 14 * DAY)
    assert not isinstance(model, Refusal)
    for h in range(0, 2 * 3600, 300):
        # within the 5-minute bin's spread of a smooth shape
        assert model.value_at(now + h) == pytest.approx(load(now + h), rel=0.02)


@st.composite
def histories(draw: st.DrawFn) -> tuple[Series, float]:
    """A noisy daily history (some gaps), 2-9 days, 5-minute samples, and a moment."""
    days = draw(st.integers(2, 9))
    p = daily_shape(draw(harmonics))
    noise = draw(st.floats(0.0, 0.5))
    rng = random.Random(draw(st.integers(0, 2**16)))
    values: list[float | None] = []
    for i in range(days * 288 + 288):
        if rng.random() < 0.02:
            values.append(None)
        else:
            values.append(max(0.0, 500 * p(i * 300) * (1 + noise * rng.gauss(0, 1))))
    start = MONDAY + draw(st.integers(0, 287)) * 300
    now = start + days * DAY + draw(st.integers(0, 287)) * 300
    return Series(start, 300.0, tuple(values)), now


@SETTINGS
@given(h=histories(), c=st.floats(1e-3, 1e3))
def test_scaling_the_history_scales_the_forecast(h: tuple[Series, float], c: float) -> None:
    series, now = h
    scaled = Series(
        series.start, series.step, tuple(None if v is None else c * v for v in series.values)
    )
    a, b = build(series, now, predictive()), build(scaled, now, predictive())
    assert type(a) is type(b)
    if isinstance(a, Refusal):
        assert isinstance(b, Refusal)
        assert a.reason == b.reason
        return
    assert isinstance(b, Ready)
    assert b.backtest.error == pytest.approx(a.backtest.error, rel=1e-9, abs=1e-12)
    assert b.model.upper_ratio == pytest.approx(a.model.upper_ratio, rel=1e-9)
    for dt in (0, 1800, 5400):
        fa, fb = a.model.forecast(now + dt), b.model.forecast(now + dt)
        assert fb.value == pytest.approx(c * fa.value, rel=1e-9, abs=1e-9)
        assert fb.upper == pytest.approx(c * fa.upper, rel=1e-9, abs=1e-9)


@SETTINGS
@given(h=histories(), seed=st.integers(0, 2**16), scale=st.floats(0.0, 100.0))
def test_no_peeking(h: tuple[Series, float], seed: int, scale: float) -> None:
    series, now = h
    rng = random.Random(seed)
    changed: list[float | None] = []
    for i, v in enumerate(series.values):
        if series.start + (i + 1) * series.step > now:  # not over by now: may change
            changed.append(None if rng.random() < 0.1 else scale * 500 * rng.random())
        else:
            changed.append(v)
    other = Series(series.start, series.step, tuple(changed))
    assert build(series, now, predictive()) == build(other, now, predictive())
    assert fit(series, now, 14 * DAY) == fit(other, now, 14 * DAY)


@SETTINGS
@given(
    hours=st.floats(0.0, 47.9),
    step=st.sampled_from([60.0, 300.0, 3600.0]),
    level=st.floats(0.0, 1e4),
)
def test_too_short_a_history_is_refused(hours: float, step: float, level: float) -> None:
    start = MONDAY + 7 * 3600
    n = int(hours * 3600 // step)
    series = Series(start, step, (level,) * n)
    now = start + n * step
    out = build(series, now, predictive())
    assert isinstance(out, Refusal)
    assert out.reason is RefusalReason.TOO_LITTLE_HISTORY
    if n * step < DAY:
        fitted = fit(series, now, 14 * DAY)
        assert isinstance(fitted, Refusal)
        assert fitted.reason is RefusalReason.TOO_LITTLE_HISTORY


targets = st.builds(
    MetricTarget, st.sampled_from(list(TargetType)), st.floats(0.1, 1e4, allow_nan=False)
)


@settings(max_examples=300, deadline=None)
@given(
    target=targets,
    a=st.floats(0.0, 1e7),
    b=st.floats(0.0, 1e7),
    lo=st.integers(0, 50),
    span=st.integers(0, 100),
    current=st.integers(0, 200),
    tolerance=st.sampled_from(
        [Tolerance.both(0.0), Tolerance.both(0.1), Tolerance(0.2, 0.1), Tolerance.both(0.5)]
    ),
)
def test_the_floor_is_monotone_and_within_the_bounds(
    *,
    target: MetricTarget,
    a: float,
    b: float,
    lo: int,
    span: int,
    current: int,
    tolerance: Tolerance,
) -> None:
    hi = lo + span
    small, large = sorted((a, b))
    for kw in ({}, {"current": current, "tolerance": tolerance}):
        f_small = capacity_floor(Forecast(0.0, small, small), target, lo, hi, **kw)  # type: ignore[arg-type]
        f_large = capacity_floor(Forecast(0.0, large, large), target, lo, hi, **kw)  # type: ignore[arg-type]
        assert lo <= f_small <= f_large <= hi


def test_a_periodic_history_makes_a_ready_forecast_that_knows_its_shape() -> None:
    series = make_series(daily_shape([(0.5, 0.0)]), days=14, step=300.0)
    out = build(series, series.end, predictive())
    assert isinstance(out, Ready)
    assert out.backtest.error < 0.01
    assert out.backtest.skill > 0.9
