"""The forecast's history reads against moto in server mode (real HTTP on loopback).

moto 5.2.5 takes PutMetricData datapoints with any past timestamp (AWS takes them up to
two weeks old), answers GetMetricData MetricStat queries over any window with the
standard statistics, and never pages. Its metric math only evaluates an expression that
is an id, so the SQS backlog's ``m0 + m1``, pagination and CloudWatch's per-query
messages are tested with a scripted caller (tests/unit/test_predictive_operator.py).
moto scans every datapoint of the window for each period of each query, so these tests
keep their histories to hours, not days (the bench reads 14 days).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stackscaler.actuators.base import Capacity
from stackscaler.aws import AwsCaller
from stackscaler.metrics.cloudwatch import align_down
from stackscaler.model.spec import Resource, parse_resource
from stackscaler.predictive import Forecasts
from stackscaler.predictive.cloudwatch import CloudWatchHistory, HistoryRequest
from stackscaler.predictive.history import STEP, bin_of
from stackscaler.predictive.plan import CloudWatchRead, plan_for
from tests.integration.conftest import REGION

GMD = ("cloudwatch", "GetMetricData")


def tier(name: str, *, metric: str = "cpu") -> Resource:
    return parse_resource(
        {
            "apiVersion": "stackscaler.dev/v1alpha1",
            "kind": "WebTier",
            "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}"},
            "spec": {
                "target": {"kind": "AutoScalingGroup", "name": name},
                "maxCapacity": 20,
                "metrics": [
                    {
                        "name": "cpu",
                        "cloudWatch": {
                            "namespace": "AWS/EC2",
                            "metricName": "CPUUtilization",
                            "dimensions": [{"name": "AutoScalingGroupName", "value": name}],
                        },
                        "target": {"value": 50},
                    },
                    {
                        "name": "requests",
                        "cloudWatch": {
                            "namespace": "AWS/ApplicationELB",
                            "metricName": "RequestCount",
                            "dimensions": [{"name": "TargetGroup", "value": name}],
                            "statistic": "Sum",
                        },
                        "target": {"type": "AverageValue", "value": 1000},
                    },
                ],
                "predictive": {"mode": "ForecastOnly", "metric": metric, "historyDays": 2},
            },
        }
    )


def put(boto: Any, namespace: str, metric: str, dim: tuple[str, str], points: list[Any]) -> None:
    """Datapoints (timestamp, value), 40 a call (botocore gzips larger bodies, which the
    moto server cannot read)."""
    cw = boto("cloudwatch", REGION)
    data = [
        {
            "MetricName": metric,
            "Dimensions": [{"Name": dim[0], "Value": dim[1]}],
            "Timestamp": at,
            "Value": value,
        }
        for at, value in points
    ]
    for i in range(0, len(data), 40):
        cw.put_metric_data(Namespace=namespace, MetricData=data[i : i + 40])


@pytest.fixture
def end() -> datetime:
    """The end of the last complete 5 minutes, an hour ago (every datapoint is past)."""
    return align_down(datetime.now(UTC) - timedelta(hours=1), STEP)


def request(r: Resource, start: datetime, end: datetime) -> HistoryRequest:
    read = plan_for(r).read
    assert isinstance(read, CloudWatchRead)
    return HistoryRequest(r.key, read, start.timestamp(), end.timestamp(), f"{r.key} history")


async def test_the_load_of_a_per_unit_metric_is_it_times_the_units_in_service(
    aws: AwsCaller, boto: Any, end: datetime
) -> None:
    five = timedelta(minutes=5)
    t = [end - (6 - i) * five for i in range(6)]  # six periods
    put(
        boto,
        "AWS/EC2",
        "CPUUtilization",
        ("AutoScalingGroupName", "web"),
        [
            (t[0] + timedelta(seconds=10), 40.0),
            (t[0] + timedelta(seconds=70), 60.0),  # one period: its Average, 50
            (t[1] + timedelta(seconds=5), 30.0),
            (t[2] + timedelta(seconds=5), 80.0),  # no units known: missing, never 0
            (t[4] + timedelta(seconds=5), 25.0),
            (end + timedelta(seconds=5), 99.0),  # after the window's end
        ],
    )
    put(
        boto,
        "AWS/AutoScaling",
        "GroupInServiceInstances",
        ("AutoScalingGroupName", "web"),
        [(t[i] + timedelta(seconds=20), units) for i, units in ((0, 4.0), (1, 6.0), (4, 8.0))],
    )
    points = await CloudWatchHistory(aws, quiet=0.01, window=0.05).read(
        request(tier("web"), t[0], end)
    )
    k = bin_of(t[0].timestamp())
    assert points == [(k, 200.0), (k + 1, 180.0), (k + 4, 200.0)]
    assert aws.clients.calls[GMD] == 1


async def test_a_per_period_sum_is_read_per_5_minutes_and_scaled_back(
    aws: AwsCaller, boto: Any, end: datetime
) -> None:
    start = end - timedelta(minutes=10)
    put(
        boto,
        "AWS/ApplicationELB",
        "RequestCount",
        ("TargetGroup", "web"),
        [(start + timedelta(minutes=m, seconds=5), 600.0) for m in range(10)],
    )
    points = await CloudWatchHistory(aws, quiet=0.01, window=0.05).read(
        request(tier("web", metric="requests"), start, end)
    )
    # 5 minutes of 600 a minute: the 5-minute Sum is 3,000, the metric (per minute) 600
    assert [v for _, v in points] == [600.0, 600.0]


async def test_reads_of_600_resources_share_three_calls(
    aws: AwsCaller, boto: Any, end: datetime
) -> None:
    resources = [tier(f"web-{i}") for i in range(600)]
    start = end - timedelta(hours=1, minutes=5)
    for name, value in (("web-0", 10.0), ("web-599", 70.0)):
        put(
            boto,
            "AWS/EC2",
            "CPUUtilization",
            ("AutoScalingGroupName", name),
            [(end - timedelta(minutes=3), value)],
        )
        put(
            boto,
            "AWS/AutoScaling",
            "GroupInServiceInstances",
            ("AutoScalingGroupName", name),
            [(end - timedelta(minutes=3), 2.0)],
        )
    history = CloudWatchHistory(aws, quiet=0.2, window=5.0)
    results = await asyncio.gather(*(history.read(request(r, start, end)) for r in resources))
    k = bin_of((end - timedelta(minutes=5)).timestamp())
    assert results[0] == [(k, 20.0)] and results[599] == [(k, 140.0)]
    assert all(p == [] for p in results[1:599])
    # 600 reads of 2 queries (the metric, the group's units): 250 a call
    assert aws.clients.calls[GMD] == 3


async def test_forecasts_read_the_whole_window_once_then_what_is_new(
    aws: AwsCaller, boto: Any
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    forecasts = Forecasts(CloudWatchHistory(aws, quiet=0.05, window=1.0), None)
    resources = [tier(f"web-{i}") for i in range(3)]
    try:
        for r in resources:
            forecasts.at_tick(f"uid-{r.name}", r, Capacity(2, 2), now)
        await forecasts.idle()
        assert aws.clients.calls[GMD] == 1  # three first reads of 2 days, one call
        for r in resources:
            o = forecasts.at_tick(f"uid-{r.name}", r, Capacity(2, 2), now + timedelta(seconds=30))
            assert (o.state, o.reason) == ("Refused", "TooLittleHistory")
            assert o.message == (
                "no history: cpu x GroupInServiceInstances has no datapoints over the last 2 days"
            )
        await forecasts.idle()
        assert aws.clients.calls[GMD] == 1  # not due again before the hour
        later = now + timedelta(hours=1)
        for r in resources:
            forecasts.at_tick(f"uid-{r.name}", r, Capacity(2, 2), later)
        await forecasts.idle()
        assert aws.clients.calls[GMD] == 2
    finally:
        await forecasts.close()
