"""How long a new unit counts as starting: until it serves, then until a datapoint includes it."""

from __future__ import annotations

from typing import Any

from stackscaler.model.spec import metric_lag, parse_resource, warmup
from tests.unit.test_reconcile import body


def cw(name: str, period: int, type_: str = "Value") -> dict[str, Any]:
    return {
        "name": name,
        "target": {"type": type_, "value": 50},
        "cloudWatch": {
            "namespace": "AWS/EC2",
            "metricName": "CPUUtilization",
            "periodSeconds": period,
        },
    }


def test_a_default_warm_up_waits_for_the_first_datapoint_that_includes_the_unit() -> None:
    r = parse_resource(body(metrics=[cw("cpu", 60)]))
    assert metric_lag(r) == 120  # the 60 s period + 60 s of CloudWatch delivery
    w = warmup(r)
    assert w.seconds == 180 + 120
    assert "180 s to serve" in w.source and "120 s until a datapoint" in w.source


def test_the_longest_per_unit_period_counts_and_totals_add_no_lag() -> None:
    r = parse_resource(body(metrics=[cw("cpu", 60), cw("cpu5", 300)]))
    assert metric_lag(r) == 360
    totals = parse_resource(body(metrics=[cw("rpm", 300, "AverageValue")]))
    assert metric_lag(totals) == 0 and warmup(totals).seconds == 180


def test_an_explicit_warm_up_or_the_groups_own_is_taken_as_written() -> None:
    r = parse_resource(body(metrics=[cw("cpu", 60)], warmupSeconds=240))
    assert warmup(r).seconds == 240
    r = parse_resource(body(metrics=[cw("cpu", 60)]))
    assert warmup(r, target_setting=(90, "DefaultInstanceWarmup")).seconds == 90
