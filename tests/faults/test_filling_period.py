"""A period still filling: the operator reads only complete CloudWatch periods.

Requests arrive steadily, 5 every half second: each complete 10 s period sums
to 100, 25 per instance for the 4 instances, right on target. The current
period is still filling: a reader that took it would see somewhere between 0
and 100 and, with the immediate scale-in of this spec, drop the group on the
first tick that lands early in a period (ticks land at its start and half-way,
when it holds at most half of its requests) (the test shows moto holding such a
partial sum). Ticks land at every phase of the period (every 5 s, two per
period), and every one of them reads 100 and holds 4.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.conftest import (
    Aws,
    Kube,
    Recorder,
    assert_spec_untouched,
    decision_probe,
    decisions_logged,
    eventually,
    generations,
    suffix,
)
from tests.faults.support import Feeder, period_start, requests_per_unit, web_tier

pytestmark = pytest.mark.controlplane

PERIOD = 10
NAMESPACE, METRIC = "Shop/Web", "Requests"


def test_the_period_still_filling_is_never_read(
    aws: Aws, kube: Kube, operator: Any, recorder: Any, namespace: str
) -> None:
    group = f"web-{suffix()}"
    aws.group_with_template(group, desired=4, max_size=20)
    dims = {"AutoScalingGroupName": group}
    feeder = Feeder(
        aws.cloudwatch,
        namespace=NAMESPACE,
        metric=METRIC,
        dimensions=dims,
        every=0.5,
        value=lambda _slot: 5.0,
        backfill=6 * PERIOD,
    ).start()
    try:
        kube.apply(
            web_tier(
                namespace,
                "web",
                group,
                metrics=[
                    requests_per_unit(
                        dims, namespace=NAMESPACE, metric=METRIC, period=PERIOD, per_unit=25
                    )
                ],
                min_capacity=1,
                max_capacity=10,
                tolerance=0.1,
            )
        )
        before = generations(kube, namespace, [("WebTier", "web")])
        rec: Recorder = recorder("WebTier", namespace, "web", probe=lambda: aws.desired(group))
        op = operator(namespace)
        log = recorder(
            "WebTier", namespace, "web", probe=decision_probe(op, "WebTier", namespace, "web")
        )

        # the trap is real: the current period holds a partial sum
        partial = eventually(
            lambda: _partial_sum(aws, dims), what="a partial sum early in a period"
        )
        assert 0 < partial < 80, partial

        # every decision (a status is written only when something material changed:
        # the operator's /metrics show each one)
        phases = set()
        for d in decisions_logged(log, 6, what="six decisions, three periods"):
            assert (d.current, d.desired, d.direction) == (4, 4, "None"), d
            # 100, or 95 when the feeder was a little late with a period's last point
            value = d.value("requests")
            assert value is not None and value >= 90, d
            phases.add(int(d.time) % PERIOD < PERIOD / 2)
        assert phases == {True, False}, "ticks landed early and late in a period"
        ticks = rec.snapshot()  # the statuses written meanwhile
        assert ticks
        for t in ticks:
            assert (t.current, t.desired, t.direction) == (4, 4, "None"), t.decision
            assert t.metric("requests")["value"] >= 90, t.decision
            assert t.metric("requests")["recommendation"] == 4
        assert rec.probed() == [4]
        assert aws.desired(group) == 4
        assert "ScaledIn" not in kube.reasons("WebTier", namespace, "web")
        assert not feeder.errors
        assert_spec_untouched(kube, namespace, [("WebTier", "web")], before)
        assert not op.problems()
    finally:
        feeder.stop()


def _partial_sum(aws: Aws, dims: dict[str, str]) -> float:
    """The Sum of the period still filling, read early in it (before its end)."""
    now = time.time()
    start = period_start(now, PERIOD)
    assert 1.5 <= now - start <= 4, "not early in a period"
    out = aws.cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "q",
                "MetricStat": {
                    "Metric": {
                        "Namespace": NAMESPACE,
                        "MetricName": METRIC,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                    },
                    "Period": PERIOD,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=datetime.fromtimestamp(start, UTC),
        EndTime=datetime.fromtimestamp(start + PERIOD, UTC),
    )
    assert time.time() < start + PERIOD, "the period ended while reading it"
    values = out["MetricDataResults"][0]["Values"]
    assert values, out["MetricDataResults"]
    return float(values[0])
