"""Parity with the Kubernetes HPA, case by case from its own unit tests.

Every case names the test it comes from in kubernetes/kubernetes:
``pkg/controller/podautoscaler/horizontal_test.go`` (stabilization, rate limits,
bounds) and ``pkg/controller/podautoscaler/replica_calculator_test.go`` (pods not
ready). The HPA's numbers are mapped onto ``decide``:

- the HPA's "prenormalized desired replicas" is produced by an ``AverageValue``
  metric with target 1 (so the recommendation is the metric's value);
- a ``Pods`` scaling policy is ``maxStep.units``, a ``Percent`` policy
  ``maxStep.percent``, ``selectPolicy: Max`` our default;
- the HPA's scale events become ``History.events`` (signed: scale-down events are
  negative), its stored recommendations ``History`` windows filled through the
  policy's own ``with_recommendation``;
- pods not ready are ``Observations.starting``.

The cases where stackscaler differs on purpose are at the end, each with the
reason (docs/policy.md, "Differences from the HPA").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from stackscaler.model.spec import ScalingSpec
from stackscaler.policy import Direction, History, Limit, Observations, decide
from stackscaler.policy.types import MetricObservation
from tests.unit.policy_helpers import NO_LIMITS, NOW, at, metric, obs, scaling

T = NOW.timestamp()


def _rules(
    units: int | None = None,
    units_period: int = 60,
    percent: int | None = None,
    percent_period: int = 60,
    window: int = 0,
) -> dict[str, Any]:
    """HPA's generateScalingRules(pods, podsPeriod, percent, percentPeriod, window).

    The HPA gives each policy its own period; every case below uses one period per
    direction (or the same for both policies), which is what ``maxStep`` expresses.
    """
    periods = {p for p, v in ((units_period, units), (percent_period, percent)) if v}
    assert len(periods) <= 1, "one period per direction"
    step: dict[str, Any] = {"periodSeconds": periods.pop() if periods else 60}
    if units:
        step["units"] = units
    if percent:
        step["percent"] = percent
    return {"cooldownSeconds": 0, "stabilizationWindowSeconds": window, "maxStep": step}


def _uniform(changes: list[int], period: float) -> tuple[tuple[float, int], ...]:
    """HPA's generateEventsUniformDistribution: each event in the middle of its segment."""
    segment = period / len(changes)
    return tuple(
        (T - (period - segment * (i + 1) + segment / 2), change) for i, change in enumerate(changes)
    )


def _rate_spec(
    lo: int, hi: int, up: dict[str, Any] | None, down: dict[str, Any] | None
) -> ScalingSpec:
    return scaling(
        [metric("demand", 1, "AverageValue")],
        min_capacity=lo,
        max_capacity=hi,
        scale_out=up or dict(NO_LIMITS),
        scale_in=down or dict(NO_LIMITS),
    )


@dataclass(frozen=True)
class RateCase:
    name: str
    """The test case's name in TestScalingWithRules (horizontal_test.go)."""
    current: int
    desired: int
    lo: int
    hi: int
    expected: int
    up: dict[str, Any] | None = None
    down: dict[str, Any] | None = None
    up_events: tuple[tuple[float, int], ...] = ()
    down_events: tuple[tuple[float, int], ...] = field(default=())


# TestScalingWithRules calls convertDesiredReplicasWithBehaviorRate alone, so its
# scale-down stabilization windows (300 s) play no part; here they are 0.
RATE_CASES = [
    RateCase("scaleUp with pods policy larger than percent policy", 10, 500, 1, 1000, 110,
             up=_rules(100, 60, 100, 60)),
    RateCase("scaleUp with percent policy larger than pods policy", 10, 500, 1, 1000, 20,
             up=_rules(2, 60, 100, 60)),
    RateCase("scaleUp with spec MaxReplicas limitation with large pod policy", 10, 50, 1, 1000,
             50, up=_rules(100, 60)),
    RateCase("scaleUp with pod policy limitation", 10, 50, 1, 1000, 40, up=_rules(30, 60)),
    RateCase("scaleUp with percent policy limitation", 10, 50, 1, 1000, 30,
             up=_rules(percent=200, percent_period=60)),
    RateCase("scaleDown with percent policy larger than pod policy", 100, 2, 1, 1000, 80,
             down=_rules(20, 60, 1, 60)),
    RateCase("scaleDown with pod policy larger than percent policy", 100, 2, 1, 1000, 98,
             down=_rules(2, 60, 1, 60)),
    RateCase("scaleDown with spec MinReplicas limitation with large pod policy", 10, 0, 1, 1000,
             1, down=_rules(100, 60)),
    RateCase("scaleDown with spec MinReplicas limitation with large percent policy", 10, 2, 5,
             1000, 5, down=_rules(percent=100, percent_period=60)),
    RateCase("scaleDown with pod policy limitation", 10, 2, 1, 1000, 5, down=_rules(5, 60)),
    RateCase("scaleDown with percent policy limitation", 10, 5, 1, 1000, 5,
             down=_rules(percent=50, percent_period=60)),
    RateCase("scaleUp with spec MaxReplicas limitation with large pod policy and events", 100,
             500, 1, 200, 200, up=_rules(300, 60), up_events=_uniform([1, 5, 9], 120)),
    RateCase("scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of "
             "recent scale up events", 100, 500, 1, 1000, 100, up=_rules(5, 120),
             up_events=_uniform([1, 5, 9], 120)),
    RateCase("scaleUp with pod policy and previous scale up events", 100, 500, 1, 1000, 235,
             up=_rules(150, 120), up_events=_uniform([1, 5, 9], 120)),
    RateCase("scaleUp with percent policy and previous scale up events", 100, 500, 1, 1000, 255,
             up=_rules(percent=200, percent_period=120), up_events=_uniform([1, 5, 9], 120)),
    # Bug 2 of issue 11: the base is the capacity at the start of the period, 6 - 4 + 2 = 4,
    # so 300% allows 16 (the same-direction-only base of 2 allowed 8).
    RateCase("scaleUp with percent policy and previous scale up and down events", 6, 24, 1,
             1000, 16, up=_rules(percent=300, percent_period=300),
             up_events=_uniform([4], 120), down_events=_uniform([2], 120)),
    RateCase("scaleDown with spec MinReplicas limitation with large pod policy and previous "
             "events", 100, 0, 5, 1000, 5, down=_rules(130, 120),
             down_events=_uniform([1, 5, 9], 120)),
    RateCase("scaleDown with pod policy limitation and previous events", 100, 2, 1, 1000, 100,
             down=_rules(5, 120), down_events=_uniform([1, 5, 9], 120)),
    RateCase("scaleDown with percent policy limitation and previous events", 100, 0, 1, 1000,
             56, down=_rules(percent=50, percent_period=120),
             down_events=_uniform([2, 4, 6], 120)),
    # Bug 3 of issue 11: base 10 - 2 + 4 = 12, 50% of it may go: 6 (the old base 14 gave 7).
    RateCase("scaleDown with percent policy and previous scale up and down events", 10, 1, 1,
             1000, 6, down=_rules(percent=50, percent_period=180),
             up_events=_uniform([2], 120), down_events=_uniform([4], 120)),
    RateCase("scaleDown with previous events preventing further scale down", 100, 0, 1, 1000,
             100, down=_rules(percent=10, percent_period=120),
             down_events=_uniform([10, 10, 10], 120)),
    RateCase("scaleDown with with previous events still allowing more scale down", 10, 5, 1,
             1000, 5, down=_rules(percent=1000, percent_period=120),
             down_events=_uniform([10, 10, 10], 120)),
]  # fmt: skip


@pytest.mark.parametrize("case", RATE_CASES, ids=lambda c: c.name)
def test_rate_limits_match_hpa_test_scaling_with_rules(case: RateCase) -> None:
    """horizontal_test.go, TestScalingWithRules."""
    events = tuple(sorted(case.up_events + tuple((t, -n) for t, n in case.down_events)))
    history = History(events=events)
    spec = _rate_spec(case.lo, case.hi, case.up, case.down)
    d = decide(spec, obs(case.current, demand=case.desired), history, NOW)
    assert d.desired == case.expected


def test_a_scale_in_30s_ago_raises_the_base_of_a_burst() -> None:
    """Issue 11's example of bugs 2 and 3: after 10 -> 9 thirty seconds ago, a burst with
    100% per 60 s may go to 20 (the capacity at the start of the period was 10), not 18."""
    spec = _rate_spec(1, 1000, _rules(percent=100, percent_period=60), None)
    history = History(events=((T - 30, -1),), last_scale_in=T - 30)
    d = decide(spec, obs(9, demand=500), history, NOW)
    assert (d.desired, d.limited_by) == (20, Limit.SCALE_OUT_RATE_LIMIT)


def test_scale_in_base_counts_a_scale_out_in_the_period() -> None:
    """The mirror image: after 10 -> 12 thirty seconds ago, 50% per 60 s may remove half of
    the 10 the period started with (down to 5), not half of 12."""
    spec = _rate_spec(1, 1000, None, _rules(percent=50, percent_period=60))
    history = History(events=((T - 30, 2),), last_scale_out=T - 30)
    d = decide(spec, obs(12, demand=1), history, NOW)
    assert (d.desired, d.limited_by) == (5, Limit.SCALE_IN_RATE_LIMIT)


# --- stabilization ---------------------------------------------------------------------------


def _cpu_spec(lo: int, hi: int, in_window: int, out_window: int = 0) -> ScalingSpec:
    return scaling(
        min_capacity=lo,
        max_capacity=hi,
        scale_out={**NO_LIMITS, "stabilizationWindowSeconds": out_window},
        scale_in={**NO_LIMITS, "stabilizationWindowSeconds": in_window},
    )


def test_first_scale_in_window_of_a_new_resource() -> None:
    """Bug 1 of issue 11; horizontal_test.go, TestScaleDownStabilizeInitialSize.

    5 replicas at 28% CPU of a 50% target would be 2; with no recommendation recorded
    yet the HPA records the current size first, so the answer is 5 (ScaleDownStabilized).
    """
    spec = _cpu_spec(2, 6, in_window=300)
    d = decide(spec, obs(5, cpu=28), History(), NOW)
    assert (d.desired, d.direction) == (5, Direction.NONE)
    assert d.limited_by is Limit.SCALE_IN_STABILIZATION
    assert d.recommendation == 3  # ceil(5 x 28 / 50): still recorded, still reported
    # still inside the first window: hold; once it has passed, scale in
    assert decide(spec, obs(5, cpu=28), d.history, at(299)).desired == 5
    later = decide(spec, obs(5, cpu=28), d.history, at(301))
    assert later.desired == 3


def test_history_reset_is_a_new_first_window() -> None:
    """A history lost (or cleared) is a new first window, as for a new HPA."""
    spec = _cpu_spec(1, 20, in_window=600)
    assert decide(spec, obs(10, cpu=10), History.from_dict(None), NOW).desired == 10
    assert decide(spec, obs(10, cpu=10), History.from_dict({}), NOW).desired == 10


def test_first_window_without_a_scale_in_window_scales_in_at_once() -> None:
    """With stabilizationWindowSeconds 0 the first window is empty (horizontal_test.go,
    TestNormalizeDesiredReplicasWithBehavior, "no scale down stabilization")."""
    spec = _cpu_spec(1, 20, in_window=0)
    assert decide(spec, obs(10, cpu=10), History(), NOW).desired == 2


@pytest.mark.parametrize(
    ("name", "current", "expected", "lo", "hi"),
    [
        # horizontal_test.go, TestScaleRCImmediately: bounds act even in the first window
        ("scale down to max when above max replicas", 6, 5, 2, 5),
        ("scale up to min when below min replicas", 1, 2, 2, 6),
    ],
)
def test_bounds_win_in_the_first_window(
    name: str, current: int, expected: int, lo: int, hi: int
) -> None:
    spec = _cpu_spec(lo, hi, in_window=300)
    d = decide(spec, obs(current, cpu=50), History(), NOW)
    assert d.desired == expected, name


def test_first_window_does_not_delay_a_scale_out() -> None:
    spec = _cpu_spec(1, 20, in_window=300)
    assert decide(spec, obs(4, cpu=100), History(), NOW).desired == 8


@dataclass(frozen=True)
class StabilizationCase:
    name: str
    """The test case's name in TestNormalizeDesiredReplicasWithBehavior (horizontal_test.go)."""
    recommendations: tuple[tuple[float, int], ...]
    """(seconds ago, recommendation), oldest first."""
    current: int
    desired: int
    in_window: int
    out_window: int
    expected: int


STABILIZATION_CASES = [
    StabilizationCase("simple scale down stabilization", ((120, 4), (60, 5)), 100, 3, 180, 0, 5),
    StabilizationCase("simple scale up stabilization", ((120, 4), (60, 5)), 1, 7, 0, 300, 4),
    StabilizationCase("no scale down stabilization", ((120, 1), (60, 2)), 100, 3, 0, 300, 3),
    StabilizationCase("no scale up stabilization", ((120, 4), (60, 5)), 1, 3, 300, 0, 3),
    StabilizationCase(
        "scale down stabilization, reuse one of obsolete recommendation element",
        ((600, 10), (540, 9), (120, 5), (60, 4)), 100, 3, 180, 0, 5,
    ),
    StabilizationCase(
        "scale up and down stabilization, do not scale up when prenormalized rec goes down",
        ((6000, 2), (180, 3)), 2, 1, 300, 300, 2,
    ),
    StabilizationCase(
        "scale up and down stabilization, do not scale down when prenormalized rec goes up",
        ((6000, 2), (180, 1)), 2, 3, 300, 300, 2,
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", STABILIZATION_CASES, ids=lambda c: c.name)
def test_stabilization_matches_hpa(case: StabilizationCase) -> None:
    """horizontal_test.go, TestNormalizeDesiredReplicasWithBehavior."""
    spec = scaling(
        [metric("demand", 1, "AverageValue")],
        min_capacity=1,
        max_capacity=1000,
        scale_out={**NO_LIMITS, "stabilizationWindowSeconds": case.out_window},
        scale_in={**NO_LIMITS, "stabilizationWindowSeconds": case.in_window},
    )
    history = History()
    for ago, value in case.recommendations:  # the HPA's stored recommendations, in order
        history = history.with_recommendation(T - ago, value, in_window=7200, out_window=7200)
    d = decide(spec, obs(case.current, demand=case.desired), history, NOW)
    assert d.desired == case.expected


# --- pods not ready (units starting) ------------------------------------------------------------


def _starting(capacity: int, starting: int, **values: float) -> Observations:
    return Observations(
        capacity, {k: MetricObservation(v) for k, v in values.items()}, starting=starting
    )


def test_unready_pods_less_scale() -> None:
    """replica_calculator_test.go, TestReplicaCalcScaleUpUnreadyLessScale: 3 pods, one not
    ready, the 2 ready at 60% of a 30% target: 4 (the HPA counts the unready pod at 0%,
    which is ceil(2 x 60 / 30) = 4; counting all 3 at 60% would have said 6)."""
    spec = scaling([metric("cpu", 30)], max_capacity=100)
    d = decide(spec, _starting(3, 1, cpu=60), History(), NOW)
    assert d.desired == 4


def test_unready_pods_no_scale() -> None:
    """replica_calculator_test.go, TestReplicaCalcScaleUpUnreadyNoScale: 3 pods, 2 not
    ready, the ready one at 40% of a 30% target: the 3 already there cover it."""
    spec = scaling([metric("cpu", 30)], max_capacity=100)
    d = decide(spec, _starting(3, 2, cpu=40), History(), NOW)
    assert d.desired == 3


# --- documented differences (docs/policy.md, "Differences from the HPA") -------------------------


def test_difference_no_scale_in_while_units_are_starting() -> None:
    """replica_calculator_test.go, TestReplicaCalcScaleDownIgnoresUnreadyPods: 5 pods, 2 not
    ready, the 3 ready at 30% of a 50% target: the HPA ignores the unready pods and goes to
    2. stackscaler holds 5 until they are ready (AWS instance warm-up: scale-in waits for
    warm-up to end), because what they will carry is not yet known."""
    spec = scaling(min_capacity=1, max_capacity=100)
    d = decide(spec, _starting(5, 2, cpu=30), History(), NOW)
    assert (d.desired, d.limited_by) == (5, Limit.WARMUP)
    # with every unit ready it is the HPA's answer: ceil(5 x 30 / 50) = 3
    assert decide(spec, _starting(5, 0, cpu=30), History(), NOW).desired == 3


def test_difference_value_target_from_zero_goes_to_one() -> None:
    """The HPA's getUsageRatioReplicaCount (replica_calculator.go) scales an object or
    external Value metric from 0 replicas to ceil(value / target). A stackscaler Value
    target is a per-unit metric (CPU, requests per target), meaningless with no unit: it
    activates to 1 and sizes from what that unit reports. Totals use AverageValue, which
    goes from 0 to ceil(value / target) at once."""
    per_unit = scaling([metric("cpu", 50)], min_capacity=0)
    assert decide(per_unit, obs(0, cpu=500), History(), NOW).desired == 1
    total = scaling([metric("queue", 50, "AverageValue")], min_capacity=0)
    assert decide(total, obs(0, queue=500), History(), NOW).desired == 10
