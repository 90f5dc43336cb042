"""A metric source outage: the real Prometheus stopped, then started again.

While the metric is unknown the capacity never goes down (scale-in is
otherwise immediate in this spec: no cooldown, no stabilization), after
failureThreshold ticks Fallback raises it, and once Prometheus is back the
capacity follows the metric again.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.conftest import (
    API_VERSION,
    Aws,
    Kube,
    PrometheusServer,
    Recorder,
    Tick,
    assert_desired_exposed,
    assert_spec_untouched,
    condition,
    event_messages,
    eventually,
    generations,
    suffix,
)
from tests.integration.conftest import REGION
from tests.integration.prometheus_fixtures import Exporter

pytestmark = pytest.mark.controlplane

QUERY = 'web_requests_per_minute{job="exporter"}'


def test_prometheus_outage_holds_falls_back_and_recovers(
    *,
    aws: Aws,
    kube: Kube,
    operator: Any,
    recorder: Any,
    namespace: str,
    exporter: Exporter,
    prometheus_server: PrometheusServer,
) -> None:
    group = f"web-{suffix()}"
    aws.group_with_template(group, desired=3, max_size=20)
    exporter.requests.set(300)  # 100 per instance: 3 is on target
    prometheus_server.start()

    def scraped() -> None:
        result = prometheus_server.query(QUERY)
        assert [float(r["value"][1]) for r in result] == [300.0], result

    eventually(scraped, what="Prometheus has the exporter's value")
    threshold, fallback = 3, 6
    kube.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "WebTier",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "target": {"kind": "AutoScalingGroup", "name": group, "region": REGION},
                "minCapacity": 1,
                "maxCapacity": 10,
                "metrics": [
                    {
                        "name": "requests",
                        "prometheus": {
                            "serverAddress": prometheus_server.url,
                            "query": QUERY,
                            "timeoutSeconds": 2,
                        },
                        "target": {"type": "AverageValue", "value": 100},
                    }
                ],
                "behavior": {  # a low reading would scale in at once
                    "scaleOut": {"cooldownSeconds": 0, "maxStep": {"units": 100}},
                    "scaleIn": {
                        "cooldownSeconds": 0,
                        "stabilizationWindowSeconds": 0,
                        "maxStep": {"units": 100},
                    },
                },
                "onMetricsUnavailable": {
                    "failureThreshold": threshold,
                    "action": "Fallback",
                    "fallbackCapacity": fallback,
                },
                "pollIntervalSeconds": 5,
            },
        }
    )
    before = generations(kube, namespace, [("WebTier", "web")])
    rec: Recorder = recorder("WebTier", namespace, "web", probe=lambda: aws.desired(group))
    op = operator(namespace)

    def steady() -> Tick:
        tick = rec.wait_ticks(1, after=0, what="a decision")[-1]
        assert tick.metric("requests").get("value") == 300, tick.decision
        assert (tick.current, tick.desired, tick.direction) == (3, 3, "None")
        assert condition(tick.status, "MetricsAvailable")["status"] == "True"
        return tick

    eventually(steady, what="holding 3 on a known metric")

    # the outage
    prometheus_server.stop()
    stopped = time.time()

    def in_fallback() -> None:
        ticks = rec.since(stopped)
        assert any(condition(t.status, "Fallback")["status"] == "True" for t in ticks), [
            t.decision.get("reasons") for t in ticks
        ]
        assert aws.desired(group) == fallback
        assert rec.probed()[-1] == fallback

    eventually(in_fallback, what="Fallback after the outage", timeout=90)
    unknown = [t for t in rec.since(stopped) if t.metric("requests")["state"] != "Known"]
    assert [t.history.get("consecutiveFailures") for t in unknown[:threshold]] == [1, 2, 3]
    for t in unknown[: threshold - 1]:  # unknown is not zero: nothing scales in
        assert (t.current, t.desired, t.direction) == (3, 3, "None"), t.decision
        available = condition(t.status, "MetricsAvailable")
        assert (available["status"], available["reason"]) == ("False", "MetricsUnknown")
        assert condition(t.status, "Fallback")["status"] == "False"
    started = unknown[threshold - 1]
    assert (started.current, started.desired, started.limited_by) == (3, fallback, "fallback")
    assert rec.probed_since(stopped) == [3, fallback]  # never below 3
    assert len(event_messages(kube, "WebTier", namespace, "web", "FallbackStarted")) == 1
    assert "FallbackEnded" not in kube.reasons("WebTier", namespace, "web")

    # Prometheus back on the same address (a fresh TSDB): the metric drives again
    prometheus_server.start()
    restarted = time.time()

    def recovered() -> None:
        ticks = rec.since(restarted)
        assert ticks, "no tick since Prometheus is back"
        status = ticks[-1].status
        assert condition(status, "Fallback")["status"] == "False", status.get("conditions")
        assert condition(status, "MetricsAvailable")["status"] == "True"
        assert aws.desired(group) == 3
        assert rec.probed()[-1] == 3

    eventually(recovered, what="scaling on the metric after recovery", timeout=90)
    known = [t for t in rec.since(restarted) if t.metric("requests")["state"] == "Known"]
    assert (known[0].current, known[0].desired, known[0].direction) == (fallback, 3, "In")
    assert known[0].metric("requests")["value"] == 300
    assert rec.probed_since(restarted) == [fallback, 3]
    assert len(event_messages(kube, "WebTier", namespace, "web", "FallbackEnded")) == 1
    scaled = [
        m.split(":")[0]
        for e in ("ScaledOut", "ScaledIn")
        for m in event_messages(kube, "WebTier", namespace, "web", e)
    ]
    assert scaled == [f"3 -> {fallback}", f"{fallback} -> 3"]
    assert_desired_exposed(op, kube, "WebTier", namespace, "web")
    assert_spec_untouched(kube, namespace, [("WebTier", "web")], before)
    assert not op.problems()
