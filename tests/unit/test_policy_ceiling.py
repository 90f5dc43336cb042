"""A metric with a ceiling (CPU in percent): the tolerance band never reaches past it.

Before the ceiling, a 90% CPU target with the default tolerance 0.2 waited for 108%,
which a saturated CPU never reads: the tier held its capacity while every unit ran at
100% (in `make bench` the bench tier at 90% stayed at one instance through the whole
ramp trace, 15,125 of 30,240 minutes short).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from bench.run import bench_tier_doc
from hypothesis import given, settings
from hypothesis import strategies as st

from stackscaler.errors import InvalidSpec
from stackscaler.model.spec import (
    CloudWatchSource,
    MetricTarget,
    PrometheusSource,
    Resource,
    TargetType,
    Tolerance,
    known_ceiling,
    parse_resource,
)
from stackscaler.policy import History, decide
from stackscaler.policy.rules import ceiling_edge, target_tracking, utilization_need, within
from stackscaler.sim.run import RunConfig, run
from stackscaler.sim.trace import Trace
from tests.unit.policy_helpers import NOW, metric, obs, scaling

SETTINGS = settings(max_examples=300, deadline=None)
BAND = Tolerance.both(0.2)


def _cpu_tier(target: float, *, tolerance: float = 0.2) -> Resource:
    """The bench tier (an Auto Scaling group on AWS/EC2 CPUUtilization) at ``target``%."""
    doc = bench_tier_doc()
    doc["spec"]["metrics"][0]["target"]["value"] = target
    doc["spec"]["tolerance"] = tolerance
    return parse_resource(doc)


# --- where the ceiling comes from -------------------------------------------------


def test_a_cloudwatch_cpu_metric_has_the_ceiling_100() -> None:
    target = _cpu_tier(90).scaling.metrics[0].target
    assert target is not None and target.ceiling == 100.0


def test_known_ceiling_by_unit_namespace_and_source() -> None:
    def cw(namespace: str | None, name: str | None, unit: str | None = None) -> CloudWatchSource:
        return CloudWatchSource(namespace, name, (), "Average", unit, None, (), 60, None, None)

    assert known_ceiling(cw("AWS/ElastiCache", "EngineCPUUtilization")) == 100.0
    assert known_ceiling(cw("Shop/Web", "BusyWorkers", unit="Percent")) == 100.0
    # the same name outside AWS/ is the user's own metric: nothing known
    assert known_ceiling(cw("Shop/Web", "CPUUtilization")) is None
    assert known_ceiling(cw("AWS/ApplicationELB", "RequestCountPerTarget")) is None
    expression = replace(cw(None, None), expression="m1 / m2 * 100")
    assert known_ceiling(expression) is None
    assert known_ceiling(PrometheusSource("http://p:9090", "cpu", 5)) is None
    assert known_ceiling(None) is None


def test_an_explicit_ceiling_is_kept_and_a_prometheus_metric_has_none_without_it() -> None:
    assert scaling([metric("cpu", 85)]).metrics[0].target == MetricTarget(
        TargetType.VALUE, 85.0, None
    )
    explicit = {**metric("busy", 85), "target": {"value": 85, "ceiling": 100}}
    target = scaling([explicit]).metrics[0].target
    assert target == MetricTarget(TargetType.VALUE, 85.0, 100.0)


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ({"type": "AverageValue", "value": 100, "ceiling": 1000}, "applies to a Value target"),
        ({"type": "Value", "value": 100, "ceiling": 100}, "greater than value"),
        ({"type": "Value", "value": 50, "ceiling": 0}, "ceiling"),
    ],
)
def test_a_ceiling_that_cannot_hold_is_refused_naming_the_field(
    target: dict[str, Any], why: str
) -> None:
    with pytest.raises(InvalidSpec) as err:
        scaling([{**metric("busy"), "target": target}])
    text = str(err.value)
    assert "spec.metrics[0].target" in text and "ceiling" in text and why in text


# --- what it changes ----------------------------------------------------------------


def test_a_saturated_cpu_at_a_90_percent_target_scales_out() -> None:
    """100% is 1.11x a 90% target: inside tolerance 0.2, beyond the ceiling's edge (95)."""
    spec = _cpu_tier(90).scaling
    d = decide(spec, obs(4, cpu=100), History(), NOW)
    assert d.desired == 5  # ceil(4 x 100 / 90)
    assert "halfway to the ceiling 100" in d.metrics[0].detail
    # without the ceiling (a Prometheus metric) the same reading holds: the old trap
    blind = scaling([metric("cpu", 90)], tolerance=0.2)
    held = decide(blind, obs(4, cpu=100), History(), NOW)
    assert held.desired == 4 and "within tolerance 0.2" in held.metrics[0].detail


def test_the_edge_is_halfway_to_the_ceiling_and_only_when_nearer_than_the_tolerance() -> None:
    t90 = MetricTarget(TargetType.VALUE, 90.0, 100.0)
    assert ceiling_edge(t90) == pytest.approx(95 / 90)
    assert within(94.9 / 90, t90, BAND) and not within(95.1 / 90, t90, BAND)
    t50 = MetricTarget(TargetType.VALUE, 50.0, 100.0)
    # at 50% the edge (75%) lies beyond the band's 60%: the tolerance alone decides
    assert within(60 / 50, t50, BAND) and not within(60.1 / 50, t50, BAND)
    assert ceiling_edge(MetricTarget(TargetType.AVERAGE_VALUE, 90.0, 100.0)) is None
    assert ceiling_edge(MetricTarget(TargetType.VALUE, 100.0, 100.0)) is None


@SETTINGS
@given(
    target=st.floats(min_value=1, max_value=99),
    tolerance=st.floats(min_value=0, max_value=0.99),
    current=st.integers(1, 500),
)
def test_a_saturated_metric_always_asks_for_more_capacity(
    target: float, tolerance: float, current: int
) -> None:
    """Reading the ceiling, a target below it never holds, whatever the tolerance."""
    t = MetricTarget(TargetType.VALUE, target, 100.0)
    assert target_tracking(current, 100.0, t, Tolerance.both(tolerance)) > current
    assert utilization_need(current, current, 100.0, t, Tolerance.both(tolerance)) > current


@SETTINGS
@given(
    target=st.floats(min_value=1, max_value=99),
    tolerance=st.floats(min_value=0, max_value=0.99),
    below=st.floats(min_value=0, max_value=0.99),
    value=st.floats(min_value=0, max_value=100),
    current=st.integers(0, 500),
)
def test_a_ceiling_beyond_the_band_changes_nothing(
    target: float, tolerance: float, below: float, value: float, current: int
) -> None:
    """Where 1 + tolerance lies inside the edge (every default 50-60% target), the
    decisions are exactly those without a ceiling."""
    with_c = MetricTarget(TargetType.VALUE, target, 100.0)
    without = MetricTarget(TargetType.VALUE, target, None)
    edge = ceiling_edge(with_c)
    assert edge is not None
    band = Tolerance(tolerance, below)
    if 1 + tolerance <= edge:
        assert target_tracking(current, value, with_c, band) == target_tracking(
            current, value, without, band
        )
    # and a ceiling never scales in where no ceiling would not
    assert target_tracking(current, value, with_c, band) >= target_tracking(
        current, value, without, band
    )


def test_the_bench_tier_at_90_percent_follows_a_ramp() -> None:
    """The simulator through the product's spec: the bench tier (AWS/EC2 CPUUtilization)
    at a 90% target on a ramp from 1 to 20 instances' worth of requests."""
    tier = _cpu_tier(90)
    per_unit = 2400.0
    demand = tuple(per_unit * (1 + 19 * m / 600) for m in range(720))
    ramp, cfg = Trace("ramp", 60.0, demand), RunConfig(capacity_per_unit=per_unit)
    rep = run(tier, ramp, "default", cfg)
    assert rep.peak_capacity >= 20
    assert rep.under_provisioned_minutes < 0.2 * rep.total_minutes
    (cpu,) = tier.scaling.metrics
    assert cpu.target is not None and cpu.target.ceiling == 100.0  # from AWS/EC2 CPUUtilization
    no_ceiling = replace(cpu, target=replace(cpu.target, ceiling=None))
    blind = replace(tier, scaling=replace(tier.scaling, metrics=(no_ceiling,)))
    stuck = run(blind, ramp, "default", cfg)
    assert stuck.peak_capacity < rep.peak_capacity
