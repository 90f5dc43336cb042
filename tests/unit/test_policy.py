"""The policy core, rule by rule (table-driven)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from stackscaler.model.spec import (
    MetricTarget,
    TargetType,
    Tolerance,
    backlog_per_worker_for_latency,
)
from stackscaler.policy import (
    Direction,
    History,
    Limit,
    MetricObservation,
    MetricState,
    Observations,
    decide,
)
from stackscaler.policy.rules import rate_limit, target_tracking
from tests.unit.policy_helpers import NO_LIMITS, NOW, at, metric, obs, scaling

# --- target tracking ----------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "value", "expected"),
    [
        (3, 90, 6),  # HPA parity: 3 replicas at 90% CPU, target 50% -> 6
        (3, 54, 3),  # ratio 1.08: within the 10% tolerance -> unchanged
        (3, 46, 3),  # ratio 0.92: within tolerance
        (3, 56, 4),  # ratio 1.12: ceil(3.36)
        (10, 20, 4),  # scale in: ceil(10 x 0.4)
        (4, 50, 4),  # exactly on target
        (1, 100, 2),
        (5, 0, 1),  # idle: down to the minimum
    ],
)
def test_target_tracking_value(current: int, value: float, expected: int) -> None:
    d = decide(scaling(), obs(current, cpu=value), History(), NOW)
    assert d.desired == expected


def test_hpa_parity_reasons_explain_the_ratio() -> None:
    d = decide(scaling(), obs(3, cpu=90), History(), NOW)
    assert d.direction is Direction.OUT
    assert d.limited_by is None
    assert any("cpu: 90 vs target 50 (ratio 1.80) -> 6" in r for r in d.reasons)
    within = decide(scaling(), obs(3, cpu=54), History(), NOW)
    assert within.direction is Direction.NONE
    assert any("within tolerance" in r for r in within.reasons)


@pytest.mark.parametrize(
    ("current", "total", "expected"),
    [
        (10, 1500, 15),  # the AWS SQS recipe: 1500 messages, 100 per worker -> 15
        (15, 1500, 15),
        (10, 1050, 10),  # 1.05 of the per-unit target: within tolerance
        (10, 200, 2),
        (0, 1, 1),
        (0, 0, 1),  # min 1 applies
    ],
)
def test_target_tracking_total_per_unit(current: int, total: float, expected: int) -> None:
    spec = scaling([metric("backlog", 100, "AverageValue")])
    assert decide(spec, obs(current, backlog=total), History(), NOW).desired == expected


def test_sqs_latency_recipe() -> None:
    assert backlog_per_worker_for_latency(10, 0.1) == pytest.approx(100)
    with pytest.raises(ValueError):
        backlog_per_worker_for_latency(0, 1)


def test_custom_tolerance() -> None:
    spec = scaling(tolerance=0.0)
    assert decide(spec, obs(3, cpu=54), History(), NOW).desired == 4


def test_target_tracking_ignores_float_noise() -> None:
    t = MetricTarget(TargetType.AVERAGE_VALUE, 0.1)
    assert target_tracking(0, 0.30000000000000004, t, Tolerance.both(0.0)) == 3


# --- several metrics -----------------------------------------------------------


def test_scale_out_if_any_metric_asks() -> None:
    spec = scaling([metric("cpu", 50), metric("rpm", 1000, "AverageValue")])
    d = decide(spec, obs(4, cpu=30, rpm=9000), History(), NOW)
    assert d.desired == 9
    assert {m.name: m.recommendation for m in d.metrics} == {"cpu": 3, "rpm": 9}


def test_scale_in_only_as_far_as_all_allow() -> None:
    spec = scaling([metric("cpu", 50), metric("rpm", 1000, "AverageValue")])
    d = decide(spec, obs(10, cpu=10, rpm=6000), History(), NOW)
    assert d.desired == 6


# --- step scaling ----------------------------------------------------------------

STEPS = {
    "adjustmentType": "ChangeInCapacity",
    "steps": [
        {"upperBound": 30, "adjustment": -1},
        {"lowerBound": 70, "upperBound": 85, "adjustment": 1},
        {"lowerBound": 85, "adjustment": 3},
    ],
}


def _stepped(**over: object) -> dict[str, object]:
    m = metric("cpu")
    del m["target"]
    m["stepScaling"] = {**STEPS, **over}
    return m


@pytest.mark.parametrize(
    ("value", "expected"),
    [(10, 4), (29.9, 4), (30, 5), (50, 5), (70, 6), (84.9, 6), (85, 8), (100, 8)],
)
def test_step_scaling_bands(value: float, expected: int) -> None:
    d = decide(scaling([_stepped()]), obs(5, cpu=value), History(), NOW)
    assert d.desired == expected


@pytest.mark.parametrize(
    ("current", "adjustment", "magnitude", "expected"),
    [
        (10, 50, None, 15),
        (3, 50, None, 4),  # 1.5 truncates to 1
        (1, 10, None, 2),  # 0.1 -> at least one unit
        (10, 10, 3, 13),  # minAdjustmentMagnitude
        (10, -25, None, 8),  # -2.5 truncates toward zero
    ],
)
def test_step_scaling_percent(
    current: int, adjustment: int, magnitude: int | None, expected: int
) -> None:
    steps: dict[str, object] = {
        "adjustmentType": "PercentChangeInCapacity",
        "steps": [{"lowerBound": 0, "adjustment": adjustment}],
    }
    if magnitude:
        steps["minAdjustmentMagnitude"] = magnitude
    d = decide(scaling([_stepped(**steps)]), obs(current, cpu=50), History(), NOW)
    assert d.desired == expected


def test_step_scaling_exact_capacity() -> None:
    m = _stepped(adjustmentType="ExactCapacity", steps=[{"lowerBound": 90, "adjustment": 20}])
    assert decide(scaling([m]), obs(5, cpu=95), History(), NOW).desired == 20
    assert decide(scaling([m]), obs(5, cpu=50), History(), NOW).desired == 5


# --- bounds and schedules ------------------------------------------------------


def test_clamped_to_max_reports_the_limit() -> None:
    d = decide(scaling(max_capacity=8), obs(4, cpu=200), History(), NOW)
    assert (d.desired, d.limited_by) == (8, Limit.MAX_CAPACITY)
    at_max = decide(scaling(max_capacity=8), obs(8, cpu=200), History(), NOW)
    assert (at_max.desired, at_max.direction, at_max.limited_by) == (
        8,
        Direction.NONE,
        Limit.MAX_CAPACITY,
    )


def test_clamped_to_min() -> None:
    d = decide(scaling(min_capacity=3), obs(5, cpu=1), History(), NOW)
    assert (d.desired, d.limited_by) == (3, Limit.MIN_CAPACITY)


def test_capacity_outside_bounds_is_corrected_even_in_cooldown() -> None:
    spec = scaling(max_capacity=10, scale_in={**NO_LIMITS, "cooldownSeconds": 600})
    hist = History(last_scale_in=NOW.timestamp() - 10)
    assert decide(spec, obs(14, cpu=50), hist, NOW).desired == 10
    assert decide(scaling(min_capacity=4), obs(2, cpu=50), History(), NOW).desired == 4


BUSINESS_HOURS = {
    "name": "business-hours",
    "cron": "0 8 * * MON-FRI",
    "timeZone": "America/New_York",
    "durationSeconds": 36000,
    "minCapacity": 6,
}


@pytest.mark.parametrize(
    ("when", "active"),
    [
        ("2026-11-26T13:00:00+00:00", True),  # Thu 08:00 EST: window opens
        ("2026-11-26T12:59:00+00:00", False),  # 07:59 EST
        ("2026-11-26T22:59:00+00:00", True),  # 17:59 EST
        ("2026-11-26T23:00:00+00:00", False),  # 18:00 EST: closed
        ("2026-11-28T15:00:00+00:00", False),  # Saturday
    ],
)
def test_schedule_window(when: str, active: bool) -> None:
    spec = scaling(min_capacity=2, schedules=[BUSINESS_HOURS])
    d = decide(spec, obs(2, cpu=10), History(), datetime.fromisoformat(when))
    assert d.min_capacity == (6 if active else 2)
    assert d.desired == (6 if active else 2)
    assert d.active_schedules == (("business-hours",) if active else ())


def test_schedule_across_dst_change() -> None:
    # 2026-03-09 is the first Monday after the US spring-forward: 08:00 EDT = 12:00 UTC
    spec = scaling(min_capacity=2, schedules=[BUSINESS_HOURS])
    d = decide(spec, obs(2, cpu=50), History(), datetime.fromisoformat("2026-03-09T12:00:00+00:00"))
    assert d.min_capacity == 6


def test_highest_active_schedule_wins_and_can_lower_max() -> None:
    night = {"name": "night", "cron": "0 0 * * *", "durationSeconds": 86400, "maxCapacity": 5}
    peak = {**BUSINESS_HOURS, "minCapacity": 8, "maxCapacity": 30}
    spec = scaling(min_capacity=1, max_capacity=20, schedules=[night, peak])
    d = decide(
        spec, obs(3, cpu=500), History(), datetime.fromisoformat("2026-11-26T14:00:00+00:00")
    )
    assert (d.min_capacity, d.max_capacity) == (8, 30)
    assert (d.desired, d.limited_by) == (30, None)  # ceil(3 x 500 / 50), the peak's max


def test_schedule_that_lowers_max_only() -> None:
    night = {"name": "night", "cron": "0 0 * * *", "durationSeconds": 86400, "maxCapacity": 5}
    spec = scaling(min_capacity=1, max_capacity=20, schedules=[night])
    d = decide(spec, obs(3, cpu=500), History(), NOW)
    assert (d.max_capacity, d.desired, d.limited_by) == (5, 5, Limit.MAX_CAPACITY)


# --- activation (scale to and from zero) -----------------------------------------


def _queue_spec(threshold: float = 5) -> object:
    return scaling(
        [metric("backlog", 100, "AverageValue", activationThreshold=threshold)], min_capacity=0
    )


@pytest.mark.parametrize(
    ("current", "backlog", "expected"),
    [
        (0, 0, 0),  # idle stays at zero
        (0, 5, 0),  # at the threshold: not active
        (0, 6, 1),  # above: 0 -> 1
        (0, 450, 5),  # straight to the per-worker answer
        (3, 0, 0),  # empty queue: back to zero
        (3, 4, 0),  # below the activation threshold: zero even though ceil(4/100) = 1
    ],
)
def test_activation(current: int, backlog: float, expected: int) -> None:
    d = decide(_queue_spec(), obs(current, backlog=backlog), History(), NOW)  # type: ignore[arg-type]
    assert d.desired == expected


def test_unknown_never_deactivates() -> None:
    d = decide(_queue_spec(), obs(3, backlog=None), History(), NOW)  # type: ignore[arg-type]
    assert d.desired == 3
    assert d.metrics_available is False


# --- cooldowns --------------------------------------------------------------------


def test_scale_out_cooldown() -> None:
    spec = scaling(scale_out={**NO_LIMITS, "cooldownSeconds": 60})
    first = decide(spec, obs(2, cpu=100), History(), NOW)
    assert first.desired == 4
    blocked = decide(spec, obs(4, cpu=100), first.history, at(59))
    assert (blocked.desired, blocked.limited_by) == (4, Limit.SCALE_OUT_COOLDOWN)
    after = decide(spec, obs(4, cpu=100), first.history, at(60))
    assert after.desired == 8


def test_scale_in_cooldown_counts_from_scale_in_and_scale_out() -> None:
    spec = scaling(scale_in={**NO_LIMITS, "cooldownSeconds": 300})
    out = decide(spec, obs(2, cpu=100), History(), NOW)
    assert out.desired == 4
    blocked = decide(spec, obs(4, cpu=10), out.history, at(299))
    assert (blocked.desired, blocked.limited_by) == (4, Limit.SCALE_IN_COOLDOWN)
    scaled_in = decide(spec, obs(4, cpu=10), out.history, at(300))
    assert scaled_in.desired == 1
    again = decide(spec, obs(8, cpu=10), scaled_in.history, at(400))
    assert again.limited_by is Limit.SCALE_IN_COOLDOWN


def test_scale_out_is_not_blocked_by_scale_in_cooldown() -> None:
    spec = scaling(scale_in={**NO_LIMITS, "cooldownSeconds": 300})
    d = decide(spec, obs(4, cpu=100), History(last_scale_in=NOW.timestamp() - 5), NOW)
    assert d.desired == 8


# --- stabilization ------------------------------------------------------------------


def test_scale_in_follows_highest_recommendation_of_window() -> None:
    spec = scaling(scale_in={**NO_LIMITS, "stabilizationWindowSeconds": 300})
    h = History()
    d = decide(spec, obs(10, cpu=50), h, NOW)  # recommends 10
    d = decide(spec, obs(10, cpu=40), d.history, at(60))  # 8
    d = decide(spec, obs(10, cpu=10), d.history, at(120))  # 2, but 10 is in the window
    assert (d.desired, d.limited_by) == (10, Limit.SCALE_IN_STABILIZATION)
    d = decide(spec, obs(10, cpu=10), d.history, at(301))  # 10 has left; 8 (t=60) remains
    assert d.desired == 8
    d = decide(spec, obs(8, cpu=10), d.history, at(361))  # only 2s remain
    assert d.desired == 2


def test_scale_out_stabilization_follows_lowest() -> None:
    spec = scaling(scale_out={**NO_LIMITS, "stabilizationWindowSeconds": 120})
    d = decide(spec, obs(4, cpu=50), History(), NOW)
    d = decide(spec, obs(4, cpu=100), d.history, at(60))  # wants 8; 4 is in the window
    assert (d.desired, d.limited_by) == (4, Limit.SCALE_OUT_STABILIZATION)
    d = decide(spec, obs(4, cpu=100), d.history, at(121))
    assert d.desired == 8


# --- rate limits ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "current", "expected"),
    [
        ({"units": 4, "percent": 100}, 2, 6),  # max(4, 100% of 2)
        ({"units": 4, "percent": 100}, 10, 20),  # max(4, 100% of 10)
        ({"units": 4, "percent": 100, "select": "Min"}, 10, 14),
        ({"units": 2}, 0, 2),
        ({"percent": 50}, 0, 1),  # never frozen at zero: at least one unit
    ],
)
def test_scale_out_rate_limit(step: dict[str, object], current: int, expected: int) -> None:
    spec = scaling(
        [metric("rpm", 1, "AverageValue")],
        scale_out={**NO_LIMITS, "maxStep": step},
        min_capacity=0,
        max_capacity=1000,
    )
    d = decide(spec, obs(current, rpm=5000), History(), NOW)
    assert (d.desired, d.limited_by) == (expected, Limit.SCALE_OUT_RATE_LIMIT)


def test_rate_limit_spans_the_period() -> None:
    spec = scaling(scale_out={**NO_LIMITS, "maxStep": {"units": 4, "periodSeconds": 60}})
    d1 = decide(spec, obs(2, cpu=5000), History(), NOW)
    assert d1.desired == 6
    d2 = decide(spec, obs(6, cpu=5000), d1.history, at(30))  # +4 already in this period
    assert (d2.desired, d2.limited_by) == (6, Limit.SCALE_OUT_RATE_LIMIT)
    d3 = decide(spec, obs(6, cpu=5000), d1.history, at(61))
    assert d3.desired == 10


def test_scale_in_rate_limit() -> None:
    spec = scaling(scale_in={**NO_LIMITS, "maxStep": {"units": 1, "percent": 25}})
    d = decide(spec, obs(20, cpu=1), History(), NOW)
    assert (d.desired, d.limited_by) == (15, Limit.SCALE_IN_RATE_LIMIT)
    assert rate_limit(2, 0, spec.behavior.scale_in.max_step, increase=False) == 1  # type: ignore[arg-type]


# --- unknown metrics and fallback -------------------------------------------------------


def test_unknown_metric_never_scales_in() -> None:
    spec = scaling([metric("cpu"), metric("rpm", 1000, "AverageValue")])
    d = decide(spec, obs(10, cpu=None, rpm=100), History(), NOW)
    assert (d.desired, d.limited_by) == (10, Limit.UNKNOWN_METRICS)
    assert d.metrics_available is False
    states = {m.name: m.state for m in d.metrics}
    assert states == {"cpu": MetricState.UNKNOWN, "rpm": MetricState.KNOWN}


def test_scale_out_on_remaining_metrics() -> None:
    spec = scaling([metric("cpu"), metric("rpm", 1000, "AverageValue")])
    d = decide(spec, obs(4, cpu=None, rpm=9000), History(), NOW)
    assert d.desired == 9


def test_missing_metric_is_unknown_not_zero() -> None:
    d = decide(scaling(), Observations(6, {}), History(), NOW)
    assert d.desired == 6
    assert "not observed" in d.metrics[0].detail


def test_stale_sample_is_unknown() -> None:
    spec = scaling([metric("cpu", staleAfterSeconds=120)])
    old = MetricObservation(5.0, NOW - timedelta(seconds=121))
    d = decide(spec, Observations(6, {"cpu": old}), History(), NOW)
    assert d.desired == 6
    assert d.metrics[0].state is MetricState.STALE
    fresh = MetricObservation(5.0, NOW - timedelta(seconds=119))
    assert decide(spec, Observations(6, {"cpu": fresh}), History(), NOW).desired == 1


def test_fallback_after_failure_threshold() -> None:
    spec = scaling(
        min_capacity=1,
        max_capacity=20,
        onMetricsUnavailable={"failureThreshold": 3, "action": "Fallback", "fallbackCapacity": 8},
    )
    h = History()
    desired = []
    for i in range(4):
        d = decide(spec, obs(2, cpu=None), h, at(30 * i))
        h = d.history
        desired.append(d.desired)
    assert desired == [2, 2, 8, 8]
    assert d.fallback_active and d.limited_by is Limit.FALLBACK
    assert h.consecutive_failures == 3  # counted up to the threshold: more changes nothing
    assert "after 3 or more failed tick(s)" in " ".join(d.reasons)
    recovered = decide(spec, obs(8, cpu=50), h, at(200))
    assert recovered.history.consecutive_failures == 0
    assert not recovered.fallback_active


def test_fallback_never_lowers_capacity() -> None:
    spec = scaling(
        max_capacity=20,
        onMetricsUnavailable={"failureThreshold": 1, "action": "Fallback", "fallbackCapacity": 3},
    )
    assert decide(spec, obs(12, cpu=None), History(), NOW).desired == 12


def test_hold_keeps_capacity() -> None:
    spec = scaling(onMetricsUnavailable={"failureThreshold": 1, "action": "Hold"})
    d = decide(spec, obs(7, cpu=None), History(), NOW)
    assert d.desired == 7
    assert any("holding" in r for r in d.reasons)


# --- history, determinism, inputs ----------------------------------------------------------


def test_history_round_trips_through_status() -> None:
    spec = scaling(
        scale_in={**NO_LIMITS, "stabilizationWindowSeconds": 300, "maxStep": {"units": 2}}
    )
    d = decide(spec, obs(10, cpu=20), History(), NOW)
    d = decide(spec, obs(8, cpu=None), d.history, at(30))
    restored = History.from_dict(d.history.to_dict())
    assert restored == d.history
    assert d.history.to_dict()["consecutiveFailures"] == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"version": 99},
        {"lastScaleOut": "yesterday"},
        {"scaleInWindow": [["2026-11-26T12:00:00Z", "ten"]]},
        {"events": "none"},
        {"consecutiveFailures": -1},
    ],
)
def test_malformed_history_is_a_value_error(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        History.from_dict(bad)


def test_history_stays_bounded() -> None:
    spec = scaling(scale_in={**NO_LIMITS, "stabilizationWindowSeconds": 3600}, max_capacity=1000)
    h = History()
    for i in range(500):
        d = decide(spec, obs(1000 - i, cpu=49 - (i % 40)), h, at(i))
        h = d.history
    assert len(h.scale_in_window) <= 64 and len(h.scale_out_window) <= 64
    assert len(h.events) <= 64


def test_same_inputs_same_decision() -> None:
    spec = scaling()
    h = History(last_scale_out=NOW.timestamp() - 30)
    assert decide(spec, obs(3, cpu=90), h, NOW) == decide(spec, obs(3, cpu=90), h, NOW)


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(scaling(), obs(3, cpu=90), History(), NOW.replace(tzinfo=None))


def test_decision_to_dict() -> None:
    d = decide(scaling(), obs(3, cpu=90), History(), NOW).to_dict()
    assert d["desired"] == 6 and d["direction"] == "Out"
    assert d["metrics"] == [
        {"name": "cpu", "state": "Known", "value": 90, "target": 50.0, "recommendation": 6}
    ]


def test_history_if_held_keeps_observations_but_not_the_action() -> None:
    spec = scaling(scale_in={**NO_LIMITS, "stabilizationWindowSeconds": 300})
    d = decide(spec, obs(3, cpu=90), History(), NOW)
    assert d.history.last_scale_out == NOW.timestamp()
    held = d.history_if_held
    assert held.last_scale_out is None and held.events == ()
    assert held.scale_in_window == d.history.scale_in_window  # the recommendation is kept


# --- capacity in flight (units starting, units leaving) -------------------------------------


def inflight(capacity: int, starting: int = 0, leaving: int = 0, **values: float) -> Observations:
    return Observations(
        capacity,
        {k: MetricObservation(v) for k, v in values.items()},
        starting=starting,
        leaving=leaving,
    )


def test_value_need_is_computed_over_the_ready_units() -> None:
    d = decide(scaling(), inflight(12, 2, cpu=70), History(), NOW)
    assert (d.desired, d.direction, d.limited_by) == (14, Direction.OUT, None)
    assert d.metrics[0].recommendation == 14  # ceil(10 x 70 / 50); 12 x 70 / 50 would be 17
    assert (
        "2 of 12 units starting: cpu computed over the 10 ready -> 14; 12 already ordered"
        in d.reasons
    )


def test_units_starting_are_capacity_already_ordered() -> None:
    spec = scaling()
    first = decide(spec, inflight(5, cpu=100), History(), NOW)
    assert first.desired == 10
    # the 5 new units are warming up; the 5 ready ones still run at 100%: nothing more
    again = decide(spec, inflight(10, 5, cpu=100), first.history, at(30))
    assert (again.desired, again.direction) == (10, Direction.NONE)
    assert any("5 of 10 units starting" in r and "10 already ordered" in r for r in again.reasons)
    # demand grows while they warm up: order only what the ready units say is missing
    more = decide(spec, inflight(10, 5, cpu=150), first.history, at(60))
    assert more.desired == 15


def test_no_scale_in_while_units_are_starting() -> None:
    d = decide(scaling(), inflight(10, 2, cpu=10), History(), NOW)
    assert (d.desired, d.direction, d.limited_by) == (10, Direction.NONE, Limit.WARMUP)
    assert d.recommendation == 2  # the need is still computed and reported
    assert "no scale-in while 2 of 10 units are starting" in d.reasons[-2]
    assert "no scale-in while 2 of 10 units are starting" in d.headline
    ready = decide(scaling(), inflight(10, 0, cpu=10), History(), NOW)
    assert ready.desired == 2


def test_need_within_tolerance_of_what_is_ordered_orders_nothing() -> None:
    # 10 ready at 62.5% of 50%: ratio 1.25 is outside the 10% tolerance, but the need of
    # 12.5 units is within 10% of the 12 already ordered (the HPA's rule for unready pods)
    d = decide(scaling(), inflight(12, 2, cpu=62.5), History(), NOW)
    assert d.desired == 12
    assert "within tolerance" in d.metrics[0].detail
    # why it is needed: 10 ready at 54% (ratio 1.08) hold 10; the same demand with 2 of
    # them still starting reads 67.5% on 8 (ratio 1.35), a need of 10.8: still 10, or
    # more units starting would order more for the same demand
    assert decide(scaling(), inflight(10, 0, cpu=54), History(), NOW).desired == 10
    assert decide(scaling(), inflight(10, 2, cpu=67.5), History(), NOW).desired == 10


def test_no_unit_ready_says_nothing_about_demand() -> None:
    d = decide(scaling(), inflight(4, 4, cpu=100), History(), NOW)
    assert (d.desired, d.direction) == (4, Direction.NONE)
    assert any("none ready" in r for r in d.reasons)
    low = decide(scaling(), inflight(4, 4, cpu=0), History(), NOW)
    assert low.desired == 4


def test_totals_are_unchanged_by_units_starting() -> None:
    spec = scaling([metric("backlog", 100, "AverageValue")])
    for starting in (0, 3, 10):
        d = decide(spec, inflight(10, starting, backlog=3000), History(), NOW)
        assert d.desired == 30
        assert d.metrics[0].recommendation == 30
    # a backlog is demand itself, whoever serves it: it scales in while workers start
    shrink = decide(spec, inflight(10, 3, backlog=200), History(), NOW)
    assert (shrink.desired, shrink.limited_by) == (2, None)
    mixed = scaling([metric("backlog", 100, "AverageValue"), metric("cpu", 50)])
    held = decide(mixed, inflight(10, 3, backlog=200, cpu=10), History(), NOW)
    assert (held.desired, held.limited_by) == (10, Limit.WARMUP)  # a per-unit metric: wait


AWS_STEPS = {
    "adjustmentType": "PercentChangeInCapacity",
    "steps": [
        {"lowerBound": 60, "upperBound": 70, "adjustment": 10},
        {"lowerBound": 70, "adjustment": 30},
    ],
}


def test_step_scaling_counts_units_starting_as_ordered() -> None:
    """AWS's own example (Step and simple scaling policies, Instance warmup): at 60 a group
    of 10 adds 10% (1). At 62 while that instance warms up, 10% of the 10 counted is 1
    again, already ordered: nothing. At 70 it is 30% of 10 = 3: 2 more, 13."""
    spec = scaling([_stepped(**AWS_STEPS)])
    first = decide(spec, inflight(10, cpu=60), History(), NOW)
    assert first.desired == 11
    again = decide(spec, inflight(11, 1, cpu=62), first.history, at(30))
    assert again.desired == 11
    assert any("cpu steps from the 10 ready -> 11; 11 already ordered" in r for r in again.reasons)
    more = decide(spec, inflight(11, 1, cpu=70), first.history, at(60))
    assert more.desired == 13


def test_step_scale_in_waits_for_units_starting() -> None:
    d = decide(scaling([_stepped()]), inflight(5, 1, cpu=10), History(), NOW)
    assert (d.desired, d.limited_by) == (5, Limit.WARMUP)


def test_bounds_win_while_units_are_starting() -> None:
    d = decide(scaling(max_capacity=10), inflight(12, 3, cpu=10), History(), NOW)
    assert (d.desired, d.limited_by) == (10, Limit.MAX_CAPACITY)


def test_units_leaving_are_reported_not_counted() -> None:
    spec = scaling()
    d = decide(spec, inflight(8, 0, 2, cpu=90), History(), NOW)
    base = decide(spec, inflight(8, cpu=90), History(), NOW)
    assert (d.desired, d.limited_by, d.history) == (base.desired, base.limited_by, base.history)
    assert any("2 leaving" in r for r in d.reasons)
    assert (d.leaving, d.starting) == (2, 0)


def test_starting_is_clamped_to_capacity() -> None:
    d = decide(scaling(), inflight(3, 7, cpu=100), History(), NOW)
    assert (d.desired, d.starting) == (3, 3)
    assert decide(scaling(), inflight(3, -2, cpu=100), History(), NOW).desired == 6


def test_all_ready_is_todays_decision_to_the_letter() -> None:
    spec = scaling([metric("cpu"), metric("rpm", 1000, "AverageValue")])
    a = decide(spec, obs(6, cpu=80, rpm=3000), History(), NOW)
    b = decide(spec, inflight(6, 0, cpu=80, rpm=3000), History(), NOW)
    assert a == b
    assert not any("starting" in r for r in a.reasons)


def test_decision_to_dict_reports_units() -> None:
    d = decide(scaling(), inflight(12, 2, 1, cpu=70), History(), NOW).to_dict()
    assert (d["starting"], d["ready"], d["leaving"]) == (2, 10, 1)
