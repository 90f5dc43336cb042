"""Target sweeps and the iso-quality selection of `make bench`."""

from __future__ import annotations

from typing import Any

import pytest

from stackscaler.model.spec import Resource, parse_resource
from stackscaler.sim.run import Report, RunConfig
from stackscaler.sim.sweep import (
    Point,
    beats,
    cheapest,
    frontier,
    frontier_count,
    iso_quality,
    retarget,
    sweep,
)
from stackscaler.sim.trace import Trace


def tier() -> Resource:
    doc: dict[str, Any] = {
        "apiVersion": "stackscaler.dev/v1alpha1",
        "kind": "WebTier",
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {
            "target": {"kind": "AutoScalingGroup", "name": "asg"},
            "minCapacity": 1,
            "maxCapacity": 100,
            "metrics": [
                {
                    "name": "cpu",
                    "cloudWatch": {"namespace": "AWS/EC2", "metricName": "CPUUtilization"},
                    "target": {"type": "Value", "value": 50},
                },
                {
                    "name": "rpm",
                    "prometheus": {"serverAddress": "http://p:9090", "query": "q"},
                    "target": {"type": "AverageValue", "value": 1200},
                },
            ],
        },
    }
    return parse_resource(doc)


def report(unit_hours: float, under: float) -> Report:
    return Report(
        policy="x",
        tier="t",
        trace="tr",
        step_seconds=60,
        warmup_seconds=180,
        capacity_per_unit=1,
        target_utilization=0.5,
        total_minutes=1000,
        capacity_unit_hours=unit_hours,
        demand_unit_hours=1,
        oracle_capacity_unit_hours=1,
        over_provisioning=0,
        under_provisioned_minutes=under,
        worst_deficit_units=0,
        p95_utilization=0.5,
        peak_capacity=1,
        scale_actions=0,
        reversals=0,
        max_backlog=None,
        price_per_unit_hour=0.1,
        cost=0,
    )


def pt(policy: str, target: float, unit_hours: float, under: float) -> Point:
    return Point(policy, target, report(unit_hours, under))


POINTS = [
    pt("a", 0.3, 200, 0),
    pt("a", 0.5, 150, 10),
    pt("a", 0.7, 100, 40),
    pt("b", 0.3, 180, 2),
    pt("b", 0.5, 140, 10),
    pt("b", 0.6, 140, 8),  # as cheap as 0.5 and safer
    pt("b", 0.9, 90, 100),
]


def test_cheapest_within_a_budget() -> None:
    assert cheapest(POINTS, "a", 10) == POINTS[1]
    assert cheapest(POINTS, "a", 9.9) == POINTS[0]
    assert cheapest(POINTS, "a", 1000) == POINTS[2]
    assert cheapest(POINTS, "b", 10) == POINTS[5]  # tie on unit-hours: the safer one
    assert cheapest(POINTS, "b", 1) is None  # no setting that safe
    assert cheapest(POINTS, "c", 1000) is None


def test_iso_quality_and_who_beats_whom() -> None:
    iq = iso_quality(POINTS, ["a", "b"], 10)
    assert iq.best == {"a": POINTS[1], "b": POINTS[5]}
    assert iq.winner() == "b"
    assert not beats(POINTS[1], iq.best["b"])
    assert beats(POINTS[5], iq.best["a"])
    assert beats(POINTS[0], None)  # the other has no setting this safe
    assert iso_quality(POINTS, ["a", "b"], -1).winner() is None


def test_frontier_count_judges_every_setting_of_the_other_policy() -> None:
    a_vs_b = frontier_count(POINTS, "a", "b")
    # b@0.3 (180 at 2 min) against a@0.3 (200); b@0.5 against a@0.5 (150 vs 140);
    # b@0.6 (140 at 8 min) against a@0.3 (200, the cheapest a as safe); b@0.9 against a@0.7
    assert (a_vs_b.as_cheap, a_vs_b.dearer, a_vs_b.none_as_safe) == (0, 4, 0)
    assert a_vs_b.worst == pytest.approx(200 / 140)
    b_vs_a = frontier_count(POINTS, "b", "a")
    # a@0.3 (0 min): no b that safe; a@0.5: b at 140 <= 150; a@0.7 (100 at 40): b 140
    assert (b_vs_a.as_cheap, b_vs_a.dearer, b_vs_a.none_as_safe) == (1, 1, 1)
    assert b_vs_a.total == 3 and b_vs_a.worst == pytest.approx(1.4)


def test_frontier_drops_dominated_settings() -> None:
    assert frontier(POINTS, "b") == [POINTS[6], POINTS[5], POINTS[3]]
    f = frontier(POINTS, "a")
    assert [p.target for p in f] == [0.7, 0.5, 0.3]


def test_retarget_moves_every_target_to_one_utilization() -> None:
    r = retarget(tier(), 0.7, 2400)
    targets = [m.target.value for m in r.scaling.metrics if m.target]
    assert targets == pytest.approx([70, 0.7 * 2400])
    assert r.scaling.min_capacity == 1 and r.name == "t"
    assert retarget(tier(), 0.5, 2400) == tier()  # the tier's own setting
    with pytest.raises(ValueError, match="within"):
        retarget(tier(), 0, 2400)


def test_sweep_runs_every_policy_at_every_target_against_one_oracle() -> None:
    trace = Trace("j", 60.0, tuple([2000.0] * 30 + [20000.0] * 60))
    cfg = RunConfig(capacity_per_unit=2400)
    pts = sweep(tier(), trace, ["default", "hpa"], [0.3, 0.5, 0.9], cfg)
    assert [(p.policy, p.target) for p in pts] == [
        (pol, u) for pol in ("default", "hpa") for u in (0.3, 0.5, 0.9)
    ]
    assert len({p.report.oracle_capacity_unit_hours for p in pts}) == 1
    assert [p.own for p in pts] == [False, True, False] * 2
    by = {(p.policy, p.target): p for p in pts}
    # more headroom costs more
    assert by["hpa", 0.3].unit_hours > by["hpa", 0.9].unit_hours
    assert by["default", 0.3].unit_hours > by["default", 0.9].unit_hours
