"""spec.predictive end to end: `stackscaler run` on the control plane, the history in moto.

A WebTier in ForecastOnly on a group whose CPU and GroupInServiceInstances have three
days of a web day's shape in moto's CloudWatch (moto takes past timestamps; it never
publishes an Auto Scaling group's metrics itself, so the test does). The operator reads
the history at its first tick, fits in the background and, at a later tick, writes
status.forecast: Ready, the floor for the next lead and the capacity it would have
raised the group to, with an Event and the floor's gauge, while the group stays where
the reactive policy keeps it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.conftest import Aws, Kube, cpu_web_tier, event_messages, eventually, suffix
from tests.integration.conftest import REGION

DAY = 86400


def web_day(t: float) -> float:
    """Total CPU (average % x instances): 200 at 04:00 UTC, 800 at 16:00."""
    return 500 - 300 * math.cos(2 * math.pi * ((t % DAY) / DAY - 4 / 24))


def put_history(aws: Aws, group: str, days: int) -> None:
    """Every 5 minutes of the last ``days``: CPUUtilization and GroupInServiceInstances,
    their product the web day (4 instances, CPU = load / 4)."""
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    end -= timedelta(minutes=end.minute % 5)
    dims = [{"Name": "AutoScalingGroupName", "Value": group}]
    cpu, units = [], []
    for i in range(days * 288):
        at = end - timedelta(minutes=5 * (i + 1)) + timedelta(seconds=30)
        cpu.append(
            {
                "MetricName": "CPUUtilization",
                "Dimensions": dims,
                "Timestamp": at,
                "Value": web_day(at.timestamp()) / 4,
            }
        )
        units.append(
            {
                "MetricName": "GroupInServiceInstances",
                "Dimensions": dims,
                "Timestamp": at,
                "Value": 4.0,
            }
        )
    for namespace, data in (("AWS/EC2", cpu), ("AWS/AutoScaling", units)):
        for i in range(0, len(data), 40):  # moto cannot read botocore's gzipped bodies
            aws.cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[i : i + 40])


def test_forecast_only_writes_the_forecast_and_what_it_would_have_done(
    aws: Aws, kube: Kube, operator: Any, namespace: str
) -> None:
    group = f"web-{suffix()}"
    aws.group_with_template(group, desired=2, max_size=50)
    put_history(aws, group, days=3)
    aws.cpu(group, 50.0)  # now: on target, the reactive policy holds 2
    web = cpu_web_tier(
        namespace,
        group,
        maxCapacity=20,
        pollIntervalSeconds=5,
        warmupSeconds=0,
        predictive={"mode": "ForecastOnly", "metric": "cpu", "historyDays": 3, "leadSeconds": 600},
    )
    web["spec"]["target"]["region"] = REGION
    kube.apply(web)
    op = operator(namespace)

    def ready() -> dict[str, Any]:
        forecast = kube.status("WebTier", namespace, "web").get("forecast") or {}
        assert forecast.get("state") == "Ready", forecast
        return dict(forecast)

    f = eventually(ready, what="status.forecast Ready")
    assert (f["mode"], f["metric"], f["reason"], f["leadSeconds"]) == (
        "ForecastOnly",
        "cpu",
        "Ready",
        600,
    )
    assert f["message"].startswith("back-test error ")
    assert f["message"].endswith("; history: cpu x GroupInServiceInstances")
    assert 71 <= f["historyHours"] <= 72
    now = datetime.now(UTC).timestamp()
    assert 0.9 * web_day(now) / 50 <= f["floor"] <= 1.1 * web_day(now + 700) / 50 + 1
    assert f["wouldRaiseTo"] == f["floor"] > 2
    status = kube.status("WebTier", namespace, "web")
    assert status["desiredCapacity"] == 2 and aws.desired(group) == 2
    assert [
        m.split(":")[0] for m in event_messages(kube, "WebTier", namespace, "web", "ForecastReady")
    ] == ["cpu forecast (ForecastOnly)"]
    gauge = op.sample(
        "stackscaler_forecast_floor", {"kind": "WebTier", "namespace": namespace, "name": "web"}
    )
    assert gauge is not None and gauge >= 2
    assert op.sample("stackscaler_forecast_refreshes_total", {"outcome": "Ready"}) == 1
    assert not op.problems()
