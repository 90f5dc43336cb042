"""A TableCapacity's decisions: spending the decrease budget, throttling as a signal.

``decide`` with ``Observations.decreases`` (rule 9, policy/decreases.py) and a
throttle metric (rule 3). Hypothesis drives ``decide`` through whole days
against AWS's rule kept over the full history of decreases.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackscaler.forecast.floor import raise_to_floor
from stackscaler.model.spec import ScalingSpec, parse_resource
from stackscaler.policy import (
    DecreaseBudget,
    Direction,
    History,
    Limit,
    MetricObservation,
    Observations,
    decide,
)
from stackscaler.policy.budget import HOUR_SECONDS, MAX_DECREASES_PER_DAY, utc_day
from stackscaler.policy.decreases import throttled_need
from tests.unit.policy_helpers import scaling

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
T = NOW.timestamp()
SETTINGS = settings(max_examples=60, deadline=None)


def table(
    *,
    min_capacity: int = 1,
    max_capacity: int = 1000,
    scale_in: dict[str, Any] | None = None,
    scale_out: dict[str, Any] | None = None,
    tolerance: float | None = None,
) -> ScalingSpec:
    spec: dict[str, Any] = {
        "target": {"kind": "Table", "name": "shop-sessions", "dimension": "Read"},
        "minCapacity": min_capacity,
        "maxCapacity": max_capacity,
    }
    behavior: dict[str, Any] = {}
    if scale_in is not None:
        behavior["scaleIn"] = scale_in
    if scale_out is not None:
        behavior["scaleOut"] = scale_out
    if behavior:
        spec["behavior"] = behavior
    if tolerance is not None:
        spec["tolerance"] = tolerance
    doc = {
        "apiVersion": "stackscaler.dev/v1alpha1",
        "kind": "TableCapacity",
        "metadata": {"name": "sessions-read", "namespace": "shop"},
        "spec": spec,
    }
    return parse_resource(doc).scaling


# Scale-in at once on the need (no window, no cooldown, no tolerance): the budget alone decides.
EAGER = table(
    scale_in={"cooldownSeconds": 0, "stabilizationWindowSeconds": 0},
    scale_out={"cooldownSeconds": 0, "stabilizationWindowSeconds": 0},
    tolerance=0.0,
)


def observe(
    capacity: int,
    consumed: float | None,
    throttles: float | None = 0.0,
    budget: DecreaseBudget | None = None,
) -> Observations:
    metrics = {
        "consumed": MetricObservation.unknown("down")
        if consumed is None
        else MetricObservation(consumed),
        "throttles": MetricObservation.unknown("down")
        if throttles is None
        else MetricObservation(throttles),
    }
    return Observations(capacity, metrics, decreases=budget)


def at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


# --- rule 9: spending a decrease ------------------------------------------------


def test_with_none_left_no_scale_in_until_the_next_is_earned() -> None:
    budget = DecreaseBudget(4, T - 600)  # the day's four spent, the last 10 min ago
    d = decide(EAGER, observe(100, 14.0, budget=budget), History(), NOW)
    assert d.desired == 100
    assert d.limited_by is Limit.DECREASE_BUDGET
    assert "no scale-in to 20 until the next decrease is earned at 12:50:00 UTC" in d.reasons[-2]
    assert d.headline.startswith("hold 100: decrease budget spent (4 today)")
    assert d.decrease_held == 20  # what a decrease of the other dimension could take along
    # An hour after the last one the decrease is spent, straight down to the need.
    later = decide(EAGER, observe(100, 14.0, budget=budget), History(), at(T + 3000))
    assert later.desired == 20
    assert later.direction is Direction.IN


def test_a_paced_decrease_goes_straight_to_the_need() -> None:
    d = decide(
        EAGER, observe(100, 35.0, budget=DecreaseBudget(6, T - 2 * HOUR_SECONDS)), History(), NOW
    )
    assert d.desired == 50
    assert any(
        r.startswith("spending a decrease (1 decrease(s) left now, 6 spent today)")
        for r in d.reasons
    )


def test_a_paced_decrease_is_not_spent_on_a_small_step() -> None:
    d = decide(EAGER, observe(100, 65.1, budget=DecreaseBudget(0, None)), History(), NOW)
    assert d.desired == 100  # need 94: 6 %
    assert d.limited_by is Limit.DECREASE_SAVED
    assert "saving a decrease" in d.reasons[-2]


def test_a_quick_decrease_needs_a_quarter_and_keeps_a_reserve() -> None:
    last = T - 600  # within the hour: a quick decrease
    # 2 of the day's 4 left: a step of 30 % is spent (one stays in hand).
    two = decide(EAGER, observe(100, 49.0, budget=DecreaseBudget(2, last)), History(), NOW)
    assert two.desired == 70
    assert any("spending a quick decrease" in r for r in two.reasons)
    # a step of 20 % is saved for the next paced decrease
    small = decide(EAGER, observe(100, 56.0, budget=DecreaseBudget(2, last)), History(), NOW)
    assert small.desired == 100
    assert small.limited_by is Limit.DECREASE_SAVED
    assert (
        "a quick decrease needs a step of 25%; next paced decrease at 12:50:00 UTC"
        in small.reasons[-2]
    )
    # 1 left: the reserve, kept for a fall of half or more
    kept = decide(EAGER, observe(100, 49.0, budget=DecreaseBudget(3, last)), History(), NOW)
    assert kept.desired == 100
    assert "keeping 1 quick decrease(s) for a fall of 50% or more" in kept.reasons[-2]
    fall = decide(EAGER, observe(100, 28.0, budget=DecreaseBudget(3, last)), History(), NOW)
    assert fall.desired == 40


def test_the_quick_ones_left_are_spent_in_the_last_hour_of_the_utc_day() -> None:
    late = datetime(2026, 11, 26, 23, 20, tzinfo=UTC)
    budget = DecreaseBudget(3, late.timestamp() - 600)
    d = decide(EAGER, observe(100, 56.0, budget=budget), History(), late)
    assert d.desired == 80


def test_without_a_budget_the_same_inputs_scale_in_as_before() -> None:
    d = decide(EAGER, observe(100, 56.0), History(), NOW)
    assert d.desired == 80
    assert not any("decrease" in r for r in d.reasons)


def test_a_capacity_above_max_waits_for_a_decrease_too() -> None:
    spec = table(max_capacity=50, scale_in={"cooldownSeconds": 0, "stabilizationWindowSeconds": 0})
    budget = DecreaseBudget(27, T - 60)
    d = decide(spec, observe(80, 30.0, budget=budget), History(), NOW)
    assert d.desired == 80  # DynamoDB would refuse it: the 27 of the day are spent
    assert d.limited_by is Limit.DECREASE_BUDGET
    assert "00:00:00 UTC" in d.reasons[-2]


# --- rule 3: throttling as a signal -------------------------------------------


def test_throttling_scales_out_at_once_past_the_window_and_cooldown() -> None:
    spec = table(scale_out={"cooldownSeconds": 600, "stabilizationWindowSeconds": 300})
    history = decide(spec, observe(100, 60.0), History(), at(T - 120)).history
    history = History(
        last_scale_out=T - 30,
        scale_in_window=history.scale_in_window,
        scale_out_window=history.scale_out_window,
    )
    # Without throttling the same consumed capacity waits for the window and the cooldown.
    calm = decide(spec, observe(100, 80.0), history, NOW)
    assert calm.desired == 100
    # 600 events refused in the minute: 10 units/s more than the 70 served.
    hot = decide(spec, observe(100, 70.0, throttles=600.0), history, NOW)
    assert hot.desired == 115  # ceil((70 + 10) / 0.7)
    assert any(r.startswith("throttled: throttles 600 in 60s (10/s refused") for r in hot.reasons)


def test_throttling_with_consumed_unknown_adds_the_refused_units() -> None:
    d = decide(EAGER, observe(100, None, throttles=30.0), History(), NOW)
    assert d.desired == 101  # 0.5 units/s refused: at least one unit more


def test_one_throttle_datapoint_read_at_every_tick_raises_the_capacity_once() -> None:
    """DynamoDB publishes throttles once a minute; a tick every 5 s reads the same
    datapoint again. Only a sample whose whole period came after the last scale-out adds
    the refused units to the current capacity again; an older one gets the level rule."""
    spec = table(
        max_capacity=40_000, scale_out={"cooldownSeconds": 0, "stabilizationWindowSeconds": 0}
    )
    sample_end = T - 90  # the minute [T - 150, T - 90): 13,370 events refused, 400/s served
    sample = {
        "consumed": MetricObservation(400.0, at(sample_end)),
        "throttles": MetricObservation(13_370.0, at(sample_end)),
    }
    capacity, history = 1886, History()
    steps = []
    for i in range(12):
        d = decide(spec, Observations(capacity, sample), history, at(T + 5 * i))
        steps.append(d.desired)
        capacity, history = d.desired, d.history
    assert steps[0] == 1886 + 223  # the refused 222.8 units/s on top of what there was
    assert set(steps[1:]) == {steps[0]}  # the same datapoint does not step again
    assert any("a sample from before the last scale-out" in r for r in d.reasons)
    # a minute wholly after the scale-out that still throttles is new evidence
    newer = {
        "consumed": MetricObservation(400.0, at(T + 120)),
        "throttles": MetricObservation(600.0, at(T + 120)),
    }
    d = decide(spec, Observations(capacity, newer), history, at(T + 130))
    assert d.desired == capacity + 10


def test_throttled_need_from_a_sample_older_than_the_last_scale_out() -> None:
    assert throttled_need(100, 600.0, 60.0, [], fresh=False) == 100
    assert throttled_need(100, 600.0, 60.0, [(70.0, 0.7)], fresh=False) == 115
    assert throttled_need(200, 600.0, 60.0, [(70.0, 0.7)], fresh=False) == 200


def test_throttled_need() -> None:
    assert throttled_need(10, 0.5, 60.0, []) == 11
    assert throttled_need(10, 600.0, 60.0, []) == 20
    assert throttled_need(100, 600.0, 60.0, [(70.0, 0.7)]) == 115
    assert throttled_need(100, 60.0, 60.0, [(10.0, 0.7)]) == 101


# --- properties ---------------------------------------------------------------


def aws_allows(history: list[float], t: float) -> bool:
    today = [x for x in history if utc_day(x) == utc_day(t)]
    if len(today) >= MAX_DECREASES_PER_DAY:
        return False
    return len(today) < 4 or t - max(today) >= HOUR_SECONDS


def described(history: list[float]) -> DecreaseBudget:
    if not history:
        return DecreaseBudget(0, None)
    last = history[-1]
    return DecreaseBudget(sum(1 for x in history if utc_day(x) == utc_day(last)), last)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), eager=st.booleans(), tick=st.sampled_from([60, 120, 300]))
def test_a_table_never_decreases_without_budget_nor_more_than_27_a_day(
    seed: int, eager: bool, tick: int
) -> None:
    """Two days of wild demand through decide, told DescribeTable's budget each tick."""
    rng = random.Random(seed)
    spec = EAGER if eager else table()
    history = History()
    decreases: list[float] = []
    capacity = 50
    t = T - 12 * HOUR_SECONDS + rng.randrange(0, 3600)
    end = t + 2 * 24 * HOUR_SECONDS
    consumed = 30.0
    while t < end:
        consumed = max(0.0, consumed * rng.choice([0.3, 0.7, 0.9, 1.0, 1.1, 1.5, 3.0]))
        consumed = min(consumed, 600.0) if consumed > 0.5 else rng.uniform(0, 50)
        throttles = rng.choice([0.0, 0.0, 0.0, 0.0, rng.uniform(1, 500)])
        d = decide(
            spec, observe(capacity, consumed, throttles, described(decreases)), history, at(t)
        )
        if d.desired < capacity:
            assert aws_allows(decreases, t), (d.reasons, decreases[-5:])
            decreases.append(t)
        if throttles > 0:
            assert d.desired > capacity or capacity >= d.max_capacity
        history = d.history
        capacity = d.desired
        t += tick
    per_day: dict[int, int] = {}
    for x in decreases:
        per_day[utc_day(x)] = per_day.get(utc_day(x), 0) + 1
    assert max(per_day.values(), default=0) <= MAX_DECREASES_PER_DAY


budgets = st.builds(
    DecreaseBudget,
    st.integers(0, 30),
    st.one_of(st.none(), st.floats(T - 2 * 86_400, T, allow_nan=False)),
)
values = st.one_of(st.none(), st.floats(0, 2000, allow_nan=False))


@SETTINGS
@given(
    capacity=st.integers(1, 1000),
    consumed=values,
    throttles=st.one_of(st.none(), st.just(0.0), st.floats(0.001, 1e5, allow_nan=False)),
    budget=budgets,
    eager=st.booleans(),
)
def test_increases_are_unaffected_by_the_budget(
    capacity: int,
    consumed: float | None,
    throttles: float | None,
    budget: DecreaseBudget,
    eager: bool,
) -> None:
    spec = EAGER if eager else table()
    free = decide(spec, observe(capacity, consumed, throttles), History(), NOW)
    held = decide(spec, observe(capacity, consumed, throttles, budget), History(), NOW)
    if free.desired >= capacity:
        assert held.desired == free.desired
        assert held.limited_by == free.limited_by
    else:  # a scale-in is carried out as without the budget, or held at the current capacity
        assert held.desired in (free.desired, capacity)
        if held.desired == capacity:
            assert held.limited_by in (Limit.DECREASE_BUDGET, Limit.DECREASE_SAVED)
            assert held.decrease_held == free.desired
    if held.decrease_held is None:
        assert held.desired == free.desired
    if held.desired < capacity:
        assert budget.left(T) > 0


@SETTINGS
@given(
    capacity=st.integers(1, 1000),
    consumed=values,
    throttles=st.floats(0.001, 1e5, allow_nan=False),
    budget=st.one_of(st.none(), budgets),
    eager=st.booleans(),
)
def test_throttling_never_lowers_capacity(
    capacity: int,
    consumed: float | None,
    throttles: float,
    budget: DecreaseBudget | None,
    eager: bool,
) -> None:
    spec = EAGER if eager else table()
    d = decide(spec, observe(capacity, consumed, throttles, budget), History(), NOW)
    assert d.desired >= capacity
    assert d.desired > capacity or capacity == d.max_capacity


@SETTINGS
@given(
    cpu=st.one_of(st.none(), st.floats(0, 500, allow_nan=False)),
    capacity=st.integers(0, 40),
)
def test_other_kinds_never_speak_of_decreases_or_throttling(
    cpu: float | None, capacity: int
) -> None:
    spec = scaling(min_capacity=0, max_capacity=30)
    o = Observations(
        capacity, {"cpu": MetricObservation.unknown("x") if cpu is None else MetricObservation(cpu)}
    )
    d = decide(spec, o, History(), NOW)
    assert d.limited_by not in (Limit.DECREASE_BUDGET, Limit.DECREASE_SAVED)
    assert not any("decrease" in r or "throttled" in r for r in d.reasons)


@pytest.mark.parametrize("hours", [0.5, 3, 23.9])
def test_next_earned_in_the_reason_is_the_budgets(hours: float) -> None:
    t = T + hours * HOUR_SECONDS
    budget = DecreaseBudget(4, t - 60)
    d = decide(EAGER, observe(100, 14.0, budget=budget), History(), at(t))
    expected = at(budget.next_earned(t)).strftime("%H:%M:%S UTC")
    assert expected in d.reasons[-2]
    assert timedelta(seconds=budget.next_earned(t) - t) <= timedelta(hours=1)


def test_the_last_decrease_for_an_hour_waits_for_a_fall_to_settle() -> None:
    spec = table(scale_in={"cooldownSeconds": 0, "stabilizationWindowSeconds": 900})
    budget = DecreaseBudget(3, T - 2000)  # one quick decrease left: after it, none for an hour
    h = decide(spec, observe(100, 70.0, budget=budget), History(), at(T - 1000)).history_if_held
    h = decide(spec, observe(100, 35.0, budget=budget), h, at(T - 600)).history_if_held
    assert h.max_in_window(T, 900) == 50  # the window opened at 100 more than 900 s ago
    # 10 minutes later demand has fallen to 7 units/s: need 10, the window still holds 50.
    d = decide(spec, observe(100, 7.0, budget=budget), h, NOW)
    assert d.desired == 100
    assert d.limited_by is Limit.DECREASE_SAVED
    assert (
        "the need is still falling (the last 300s ask for 10, the window still holds"
        in (d.reasons[-2])
    )
    # Once the window has let the older need go, the one decrease goes all the way down.
    h = d.history_if_held
    for s in (60, 120, 180, 240):
        h = decide(spec, observe(100, 7.0, budget=budget), h, at(T + s)).history_if_held
    later = decide(spec, observe(100, 7.0, budget=budget), h, at(T + 302))
    assert later.desired == 10
    # With decreases to spare the same fall is followed at once to the window's level.
    spare = decide(
        spec, observe(100, 7.0, budget=DecreaseBudget(1, T - 2000)), d.history_if_held, NOW
    )
    assert spare.desired == 50


def test_a_forecast_floor_bounds_the_decrease_held_back() -> None:
    d = decide(EAGER, observe(100, 14.0, budget=DecreaseBudget(4, T - 600)), History(), NOW)
    assert (d.desired, d.decrease_held) == (100, 20)
    assert raise_to_floor(d, 70, EAGER, NOW, "forecast").decrease_held == 70
    assert raise_to_floor(d, 10, EAGER, NOW, "forecast").decrease_held == 20
    up = raise_to_floor(d, 130, EAGER, NOW, "forecast")
    assert (up.desired, up.decrease_held) == (130, None)
