"""Empty is unknown: a CloudWatch metric without datapoints never scales in.

The group runs 5 instances; its CPU metric has never been published (a typo
in a dimension, an agent that is not running), so GetMetricData answers with
no datapoints. Scale-in is otherwise immediate in this spec (no cooldown, no
window, no rate limit): reading the empty answer as 0 % would take the group
to 1 on the first tick. Instead every tick holds 5, says the metric is
unknown and why, exposes no value for it, and after failureThreshold ticks
says it is holding (and stops rewriting its status every tick: the count of
failures stops at the threshold). Once the metric is published (asking for 1), the same
spec scales in at once: only the unknown held it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import (
    Aws,
    Kube,
    Recorder,
    assert_spec_untouched,
    decision_probe,
    decisions_logged,
    event_messages,
    eventually,
    generations,
    suffix,
)
from tests.faults.support import cpu, web_tier

pytestmark = pytest.mark.controlplane


def test_an_empty_cloudwatch_answer_is_unknown_and_never_scales_in(
    aws: Aws, kube: Kube, operator: Any, recorder: Any, namespace: str
) -> None:
    group = f"web-{suffix()}"
    aws.group_with_template(group, desired=5, max_size=20)
    threshold = 2
    kube.apply(
        web_tier(
            namespace,
            "web",
            group,
            metrics=[cpu(group)],
            min_capacity=1,
            max_capacity=10,
            onMetricsUnavailable={"failureThreshold": threshold, "action": "Hold"},
        )
    )
    before = generations(kube, namespace, [("WebTier", "web")])
    rec: Recorder = recorder("WebTier", namespace, "web", probe=lambda: aws.desired(group))
    op = operator(namespace)
    labels = {"kind": "WebTier", "namespace": namespace, "name": "web", "metric": "cpu"}

    # a status for each tick up to the threshold: the count of failures is material
    ticks = rec.wait_ticks(threshold, after=0, what="decisions on an empty metric")
    assert len(ticks) >= threshold
    for t in ticks:
        assert (t.current, t.desired, t.direction) == (5, 5, "None"), t.decision
        metric = t.metric("cpu")
        assert metric["state"] == "Unknown" and "value" not in metric, metric  # never 0
        available = t.condition("MetricsAvailable")
        assert (available["status"], available["reason"]) == ("False", "MetricsUnknown")
        assert "no datapoints" in available["message"], available
        assert t.condition("Ready")["status"] == "True"  # an unknown metric is not a failure
    assert [t.history.get("consecutiveFailures") for t in ticks[:threshold]] == [1, 2]
    assert any(f"holding after {threshold}" in r for r in ticks[threshold - 1].decision["reasons"])
    # past it more failures change nothing material, so the status is not rewritten every
    # tick (a refresh at most): the operator's /metrics show it goes on deciding to hold 5
    log = recorder(
        "WebTier", namespace, "web", probe=decision_probe(op, "WebTier", namespace, "web")
    )
    held = decisions_logged(log, 2, what="two more decisions holding 5")
    assert all(d.desired == 5 for d in held), held
    assert kube.status("WebTier", namespace, "web")["history"]["consecutiveFailures"] == threshold
    assert op.sample("stackscaler_metric_known", labels) == 0
    assert op.samples("stackscaler_metric_value", labels) == []  # no series, not a 0
    assert rec.probed() == [5]
    assert aws.desired(group) == 5
    # unknown is temporary: no Warning Event for it, and nothing scaled
    assert kube.reasons("WebTier", namespace, "web") == []

    # the metric appears and asks for 1 instance (10 % of 5 at a 50 % target)
    aws.cpu(group, 10.0)

    def scaled_in() -> None:
        assert aws.desired(group) == 1
        assert rec.probed()[-1] == 1  # the recorder has seen it too

    eventually(scaled_in, what="scale-in once the metric is known")
    assert rec.probed() == [5, 1]
    assert [
        m.split(":")[0] for m in event_messages(kube, "WebTier", namespace, "web", "ScaledIn")
    ] == ["5 -> 1"]
    assert op.sample("stackscaler_metric_known", labels) == 1
    assert_spec_untouched(kube, namespace, [("WebTier", "web")], before)
    assert not op.problems()
