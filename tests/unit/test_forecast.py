"""The forecasting core, case by case: fit, back-test, refusals, floor, the join with
the reactive decision. Invariants are in test_forecast_properties.py."""

from __future__ import annotations

import math

import pytest

from stackscaler.errors import InvalidSpec
from stackscaler.forecast import (
    Forecast,
    PredictiveMode,
    PredictiveSettings,
    Ready,
    Refusal,
    RefusalReason,
    Series,
    build,
    capacity_floor,
    fit,
    load_of,
    raise_to_floor,
    units_for_load,
)
from stackscaler.forecast.season import Bins, fit_shape, to_bins, truncate, weekday
from stackscaler.forecast.types import DAY
from stackscaler.model.spec import MetricTarget, ScalingSpec, TargetType, Tolerance
from stackscaler.policy import Decision, Direction, History, Limit, Observations, decide
from tests.unit.forecast_helpers import MONDAY, make_series, settings, web_day
from tests.unit.policy_helpers import NOW, at, metric, obs, scaling

CPU = MetricTarget(TargetType.VALUE, 50.0)
RPM = MetricTarget(TargetType.AVERAGE_VALUE, 1200.0)


def _ready(out: Ready | Refusal) -> Ready:
    assert isinstance(out, Ready), out
    return out


# --- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("history_seconds", DAY, "predictive.historySeconds"),
        ("history_seconds", 15 * DAY, "predictive.historySeconds"),
        ("lead_seconds", -1, "predictive.leadSeconds"),
        ("refresh_seconds", 60, "predictive.refreshSeconds"),
        ("backtest_days", 0, "predictive.backtestDays"),
        ("max_error", math.nan, "predictive.maxError"),
        ("min_skill", 1.0, "predictive.minSkill"),
        ("quantile", 1.0, "predictive.quantile"),
        ("metric", "", "predictive.metric"),
    ],
)
def test_settings_refuse_out_of_range_values_with_their_path(
    field: str, value: object, path: str
) -> None:
    with pytest.raises(InvalidSpec) as exc:
        settings(**{field: value})
    assert [e.path for e in exc.value.errors] == [path]


def test_settings_defaults_are_aws_like() -> None:
    s = PredictiveSettings(PredictiveMode.FORECAST_ONLY, "cpu")
    assert s.history_seconds == 14 * DAY
    assert s.lead_seconds is None  # the target's warm-up
    assert s.refresh_seconds == 3600
    assert s.problems() == []


# --- binning and truncation -----------------------------------------------------------


def test_truncate_never_reads_a_sample_that_ends_after_now() -> None:
    s = Series(0.0, 60.0, tuple(float(i) for i in range(100)))
    cut = truncate(s, now=90 * 60 + 30, history_seconds=10 * 60)
    # the sample of [89 min, 90 min) ends by now; [90 min, 91 min) does not
    assert cut.values == tuple(float(i) for i in range(81, 90))
    assert cut.start == 81 * 60


def test_bins_average_present_samples_and_leave_empty_bins_missing() -> None:
    values: list[float | None] = [1.0, 3.0, None, None, None, None, None, None, None, None]
    values += [float("nan")] * 5
    s = Series(600.0, 60.0, tuple(values))
    b = to_bins(s, 300)
    assert b == Bins(300, 2, (2.0, None, None))


def test_bins_of_unaligned_samples_go_by_their_start() -> None:
    s = Series(270.0, 120.0, (1.0, 2.0, 3.0))  # starts 270, 390, 510
    assert to_bins(s, 300).means == (1.0, 2.5)


def test_weekday_of_the_epoch() -> None:
    assert weekday(int(MONDAY // DAY)) == 0
    assert weekday(0) == 3  # 1970-01-01 was a Thursday


# --- the fit --------------------------------------------------------------------------


def test_a_daily_cycle_is_forecast_within_two_percent() -> None:
    series = make_series(lambda t: 1000 * web_day(t), days=3)
    now = series.end
    model = fit(series, now, 14 * DAY)
    assert not isinstance(model, Refusal)
    for h in range(0, 6 * 3600, 600):
        want = 1000 * web_day(now + h)
        assert model.value_at(now + h) == pytest.approx(want, rel=0.02)
    assert not model.shape.has_weekly  # 3 days: no weekly factors


def test_weekly_factors_from_eight_days() -> None:
    weekend = {5: 0.5, 6: 0.4}

    def load(t: float) -> float:
        return 1000 * web_day(t) * weekend.get(weekday(int(t // DAY)), 1.0)

    seven = fit(make_series(load, days=7), MONDAY + 7 * DAY, 14 * DAY)
    eight = fit(make_series(load, days=8), MONDAY + 8 * DAY, 14 * DAY)
    assert not isinstance(seven, Refusal) and not isinstance(eight, Refusal)
    assert not seven.shape.has_weekly
    w = eight.shape.weekly
    assert w[5] / w[0] == pytest.approx(0.5, rel=1e-6)
    assert w[6] / w[0] == pytest.approx(0.4, rel=1e-6)
    assert eight.shape.growth == pytest.approx(0.0, abs=1e-9)
    # Friday evening forecasts Saturday at half a weekday
    fri = MONDAY + 11 * DAY + 20 * 3600  # the second Friday
    model = fit(make_series(load, days=12), fri, 14 * DAY)
    assert not isinstance(model, Refusal)
    sat_noon = MONDAY + 12 * DAY + 12 * 3600
    assert model.value_at(sat_noon) == pytest.approx(load(sat_noon), rel=0.02)


def test_trend_carries_the_level_forward() -> None:
    growth = math.log(1.1)  # +10% a day

    def load(t: float) -> float:
        return 1000 * web_day(t) * math.exp(growth * (t - MONDAY) / DAY)

    series = make_series(load, days=10)
    model = fit(series, series.end, 14 * DAY)
    assert not isinstance(model, Refusal)
    assert model.shape.growth == pytest.approx(growth, rel=0.02)
    for h in (0, 3600, 4 * 3600):
        assert model.value_at(series.end + h) == pytest.approx(load(series.end + h), rel=0.02)


def test_gaps_are_missing_not_zero() -> None:
    day = make_series(lambda t: 1000 * web_day(t), days=4)
    # a six-hour gap yesterday afternoon
    gap = (MONDAY + 2 * DAY + 12 * 3600, MONDAY + 2 * DAY + 18 * 3600)
    holed = make_series(lambda t: 1000 * web_day(t), days=4, gaps=[gap])
    a, b = fit(day, day.end, 14 * DAY), fit(holed, holed.end, 14 * DAY)
    assert not isinstance(a, Refusal) and not isinstance(b, Refusal)
    for h in range(0, 3 * 3600, 900):
        assert b.value_at(day.end + h) == pytest.approx(a.value_at(day.end + h), rel=0.01)


def test_an_outage_day_sets_no_trend() -> None:
    def load(t: float) -> float:
        outage = MONDAY + 5 * DAY <= t < MONDAY + 6 * DAY
        return 0.0 if outage else 1000 * web_day(t)

    series = make_series(load, days=10)
    model = fit(series, series.end, 14 * DAY)
    assert not isinstance(model, Refusal)
    assert model.shape.growth == pytest.approx(0.0, abs=1e-6)
    assert model.shape.days == 9


def test_a_history_of_zeros_forecasts_zero() -> None:
    series = make_series(lambda t: 0.0, days=3)
    model = fit(series, series.end, 14 * DAY)
    assert not isinstance(model, Refusal)
    assert model.value_at(series.end + 60) == 0.0
    assert fit_shape(to_bins(series, 300)) is None


@pytest.mark.parametrize("hours", [0, 1, 23.9])
def test_fit_refuses_less_than_a_day(hours: float) -> None:
    series = make_series(lambda t: 100.0, days=hours / 24) if hours else Series(MONDAY, 60, ())
    out = fit(series, MONDAY + hours * 3600, 14 * DAY)
    assert isinstance(out, Refusal)
    assert out.reason is RefusalReason.TOO_LITTLE_HISTORY
    assert "24 h" in out.message


def test_fit_refuses_without_a_recent_sample() -> None:
    series = make_series(lambda t: 100.0, days=3)
    out = fit(series, series.end + 4 * 3600, 14 * DAY)
    assert isinstance(out, Refusal)
    assert out.reason is RefusalReason.TOO_LITTLE_HISTORY
    assert "last 3 h" in out.message


# --- build: back-test and refusals ------------------------------------------------------


def test_build_refuses_before_a_day_to_fit_and_a_day_to_back_test() -> None:
    series = make_series(lambda t: 1000 * web_day(t), days=1.9)
    out = build(series, series.end, settings())
    assert isinstance(out, Refusal)
    assert out.reason is RefusalReason.TOO_LITTLE_HISTORY
    assert out.message.startswith("too little history: 45.6 h")
    assert out.backtest is None


def test_a_daily_cycle_with_noise_is_ready_and_its_backtest_says_how_good() -> None:
    series = make_series(lambda t: 1000 * web_day(t), days=14, noise=0.05)
    out = _ready(build(series, series.end, settings()))
    bt = out.backtest
    assert bt.days == 2
    assert bt.error < 0.05  # 5% noise per minute; less on 5-minute means
    assert bt.naive_error > 2 * bt.error  # the shape beats holding the last hour's level
    assert bt.samples == 2 * 1440
    assert 1.0 <= bt.upper_ratio < 1.05  # the median ratio (the default quantile)
    assert out.model.upper_ratio == bt.upper_ratio
    assert "back-test error" in out.describe()


def test_a_higher_quantile_provisions_for_more_of_the_error() -> None:
    series = make_series(lambda t: 1000 * web_day(t), days=5, noise=0.1)
    median = _ready(build(series, series.end, settings()))
    q90 = _ready(build(series, series.end, settings(quantile=0.9)))
    assert q90.model.upper_ratio > median.model.upper_ratio
    assert q90.model.upper_ratio == pytest.approx(1 + 0.1 * 1.28, rel=0.1)  # N(0,1)'s q90
    t = series.end + 600
    assert q90.model.forecast(t).value == median.model.forecast(t).value


def test_flat_noise_has_no_shape_to_forecast() -> None:
    series = make_series(lambda t: 1000.0, days=14, noise=0.2, seed=7)
    out = build(series, series.end, settings())
    assert isinstance(out, Refusal)
    assert out.reason is RefusalReason.NO_SKILL
    assert out.backtest is not None
    assert "does not beat holding the last hour's level" in out.message


def test_a_history_that_changed_shape_has_too_high_an_error() -> None:
    # five days of a daytime peak, then the peak moves to the night: the back-test sees it
    def load(t: float) -> float:
        night = t >= MONDAY + 5 * DAY
        return 1000 * web_day(t + (DAY / 2 if night else 0))

    series = make_series(load, days=7)
    out = build(series, series.end, settings())
    assert isinstance(out, Refusal)
    assert out.reason is RefusalReason.ERROR_TOO_HIGH
    assert out.backtest is not None and out.backtest.error > 0.25
    assert "above the limit of 25%" in out.message


def test_build_on_a_coarse_history() -> None:
    series = make_series(lambda t: 1000 * web_day(t), days=7, step=3600.0)
    out = _ready(build(series, series.end, settings()))
    assert out.model.shape.bin_seconds == 3600
    assert out.model.value_at(series.end + 1800) == pytest.approx(
        1000 * web_day(series.end), rel=0.1
    )


# --- the floor ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("load", "target", "units"),
    [
        (0.0, CPU, 0),
        (300.0, CPU, 6),  # six units at 50% exactly: not seven
        (300.0 + 1e-8, CPU, 6),  # floating noise is not a unit
        (301.0, CPU, 7),
        (1500.0, MetricTarget(TargetType.AVERAGE_VALUE, 100.0), 15),  # the AWS SQS recipe
        (1201.0, RPM, 2),
    ],
)
def test_units_for_load(load: float, target: MetricTarget, units: int) -> None:
    assert units_for_load(load, target) == units


def test_load_of_a_per_unit_metric_is_its_sum_over_the_units() -> None:
    assert load_of(60.0, 5, CPU) == 300.0
    assert load_of(6000.0, 5, RPM) == 6000.0
    # the floor of the load the reactive rule reads agrees with target tracking
    assert units_for_load(load_of(60.0, 5, CPU), CPU) == 6


@pytest.mark.parametrize(
    ("upper", "lo", "hi", "floor"),
    [(300.0, 2, 40, 6), (300.0, 8, 40, 8), (3000.0, 2, 40, 40), (0.0, 0, 40, 0)],
)
def test_capacity_floor_is_within_the_bounds(upper: float, lo: int, hi: int, floor: int) -> None:
    assert capacity_floor(Forecast(0.0, upper / 2, upper), CPU, lo, hi) == floor


@pytest.mark.parametrize(
    ("upper", "target", "floor"),
    [
        (550.0, CPU, 10),  # 55% on each of 10: within the 0.2 band, the policy holds 10
        (650.0, CPU, 13),  # 65%: beyond the band, ceil(650 / 50)
        (300.0, CPU, 6),  # 30%: below the band (the caller's max keeps the reactive's)
        (13000.0, RPM, 10),  # 1,300 per unit on 10 at 1,200: within the band
        (15000.0, RPM, 13),
    ],
)
def test_the_floor_is_the_policys_recommendation_at_the_current_capacity(
    upper: float, target: MetricTarget, floor: int
) -> None:
    f = Forecast(0.0, upper, upper)
    assert capacity_floor(f, target, 2, 40, current=10, tolerance=Tolerance.both(0.2)) == floor
    # the same as target tracking reading the forecast's load on 10 units, all ready
    value = upper / 10 if target.type is TargetType.VALUE else upper
    assert (
        floor
        == decide(
            scaling(
                [metric("x", target.value, str(target.type))],
                min_capacity=2,
                max_capacity=40,
                tolerance=0.2,
            ),
            obs(10, x=value),
            History(),
            NOW,
        )
        .metrics[0]
        .recommendation
    )


def _decision(current: int, cpu: float) -> tuple[ScalingSpec, Decision]:
    """A decision of a tier with no cooldown, window or rate limit, 2-20 units."""
    spec = scaling([metric("cpu", 50)], min_capacity=2, max_capacity=20)
    return spec, decide(spec, obs(current, cpu=cpu), History(), NOW)


def test_raise_to_floor_scales_out_where_the_reactive_policy_holds() -> None:
    spec, d = _decision(10, 50.0)
    assert d.direction is Direction.NONE
    raised = raise_to_floor(d, 15, spec, NOW, "rpm forecast")
    assert (raised.desired, raised.direction, raised.limited_by) == (15, Direction.OUT, None)
    assert raised.headline == "10 -> 15: forecast floor 15: rpm forecast"
    assert raised.reasons[-2:] == ("forecast floor 15: rpm forecast", "10 -> 15")
    assert raised.history.last_scale_out == NOW.timestamp()
    assert raised.history.net_change_in_period(NOW.timestamp(), 60) == 5


def test_raise_to_floor_never_lowers() -> None:
    spec, d = _decision(10, 90.0)
    assert d.desired == 18
    assert raise_to_floor(d, 12, spec, NOW, "x") is d


def test_raise_to_floor_stops_at_max() -> None:
    spec, d = _decision(10, 50.0)
    raised = raise_to_floor(d, 35, spec, NOW, "x")
    assert (raised.desired, raised.limited_by) == (20, Limit.MAX_CAPACITY)


def test_raise_to_floor_softens_a_scale_in() -> None:
    spec, d = _decision(10, 20.0)
    assert d.desired == 4
    raised = raise_to_floor(d, 7, spec, NOW, "x")
    assert (raised.desired, raised.direction) == (7, Direction.IN)
    assert raised.history.last_scale_in == NOW.timestamp()
    # the next decision sees the scale-in the floor made, not the reactive one
    nxt = decide(spec, Observations(7), raised.history, at(30))
    assert nxt.current == 7
