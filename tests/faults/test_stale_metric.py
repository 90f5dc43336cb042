"""Stale is unknown: a metric whose publisher stopped never scales in on its last value.

The CPU metric was published until two minutes ago, at 10 % (a value that
asks for 1 instance of the 5), and then the publisher stopped. The newest
complete period's datapoint is therefore older than staleAfterSeconds (60):
every tick says so, holds 5 and exposes no value, though scale-in is
otherwise immediate in this spec. When the publisher comes back with the
same 10 %, the same spec scales in at once: only the staleness held it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import (
    Aws,
    Kube,
    Recorder,
    assert_spec_untouched,
    event_messages,
    eventually,
    generations,
    suffix,
)
from tests.faults.support import cpu, web_tier

pytestmark = pytest.mark.controlplane


def test_a_stale_metric_is_unknown_and_never_scales_in(
    aws: Aws, kube: Kube, operator: Any, recorder: Any, namespace: str
) -> None:
    group = f"web-{suffix()}"
    aws.group_with_template(group, desired=5, max_size=20)
    # Datapoints for the minutes m-3 and m-2 only. The operator asks for the 3
    # complete periods before the current minute: until m+2 it sees the one of
    # m-2, whose period ended at m-1, so it is 60 to 180 s old: older than 60 s.
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    aws.cloudwatch.put_metric_data(
        Namespace="AWS/EC2",
        MetricData=[
            {
                "MetricName": "CPUUtilization",
                "Dimensions": [{"Name": "AutoScalingGroupName", "Value": group}],
                "Timestamp": minute - timedelta(minutes=k, seconds=-5),
                "Value": 10.0,
                "Unit": "Percent",
            }
            for k in (3, 2)
        ],
    )
    kube.apply(
        web_tier(
            namespace,
            "web",
            group,
            metrics=[cpu(group, stale_after=60)],
            min_capacity=1,
            max_capacity=10,
            onMetricsUnavailable={"failureThreshold": 100, "action": "Hold"},
        )
    )
    before = generations(kube, namespace, [("WebTier", "web")])
    rec: Recorder = recorder("WebTier", namespace, "web", probe=lambda: aws.desired(group))
    op = operator(namespace)
    labels = {"kind": "WebTier", "namespace": namespace, "name": "web", "metric": "cpu"}

    ticks = rec.wait_ticks(3, after=0, what="three decisions on a stale metric")
    stale = []
    for t in ticks:
        assert (t.current, t.desired, t.direction) == (5, 5, "None"), t.decision
        metric = t.metric("cpu")
        assert metric["state"] != "Known" and "value" not in metric, metric
        available = t.condition("MetricsAvailable")
        assert (available["status"], available["reason"]) == ("False", "MetricsUnknown")
        if "newest sample is" in available["message"]:
            assert "staleAfterSeconds 60" in available["message"], available
            stale.append(t)
    # the first ticks see the old datapoint (it stays visible for at least a minute)
    assert stale and stale[0] is ticks[0], [t.condition("MetricsAvailable") for t in ticks]
    assert op.sample("stackscaler_metric_known", labels) == 0
    assert op.samples("stackscaler_metric_value", labels) == []
    assert rec.probed() == [5]
    assert kube.reasons("WebTier", namespace, "web") == []

    # the publisher is back, with the same 10 %: now it is fresh, and it scales in
    aws.cpu(group, 10.0, past_minutes=2)

    def scaled_in() -> None:
        assert aws.desired(group) == 1
        assert rec.probed()[-1] == 1  # the recorder has seen it too

    eventually(scaled_in, what="scale-in once the metric is fresh")
    assert rec.probed() == [5, 1]
    scaled = event_messages(kube, "WebTier", namespace, "web", "ScaledIn")
    assert [m.split(":")[0] for m in scaled] == ["5 -> 1"]
    assert_spec_untouched(kube, namespace, [("WebTier", "web")], before)
    assert not op.problems()
