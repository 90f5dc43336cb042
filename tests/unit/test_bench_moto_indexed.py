"""bench.moto_indexed answers GetMetricData exactly as unpatched moto does, faster.

moto in-process (its own backend, no server): the same calls are made with
moto's method and with the narrowed one, and the answers compared whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from bench import moto_indexed
from moto import mock_aws
from moto.cloudwatch.models import CloudWatchBackend

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def cloudwatch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("cloudwatch", region_name="us-east-1")
        for g in range(30):
            client.put_metric_data(
                Namespace="AWS/EC2",
                MetricData=[
                    {
                        "MetricName": "CPUUtilization",
                        "Dimensions": [{"Name": "AutoScalingGroupName", "Value": f"g{g}"}],
                        "Timestamp": T0 + timedelta(seconds=60 * m + 5),
                        "Value": float(g + m),
                        "Unit": "Percent",
                    }
                    for m in range(4)
                ],
            )
        client.put_metric_data(
            Namespace="Custom",
            MetricData=[
                {
                    "MetricName": "CPUUtilization",  # the same name in another namespace
                    "Dimensions": [
                        {"Name": "AutoScalingGroupName", "Value": "g1"},
                        {"Name": "Tier", "Value": "web"},
                    ],
                    "Timestamp": T0 + timedelta(seconds=65),
                    "Value": 99.0,
                },
                {"MetricName": "Depth", "Timestamp": T0 + timedelta(seconds=70), "Value": 7.0},
                {"MetricName": "Depth", "Timestamp": T0 + timedelta(seconds=75), "Value": 9.0},
            ],
        )
        yield client


def stat(qid: str, namespace: str, name: str, dims: list[dict[str, str]], **more: Any) -> dict:
    metric: dict[str, Any] = {"Namespace": namespace, "MetricName": name}
    if dims:
        metric["Dimensions"] = dims
    return {
        "Id": qid,
        "MetricStat": {"Metric": metric, "Period": 60, "Stat": more.pop("Stat", "Average"), **more},
    }


def group(g: int) -> list[dict[str, str]]:
    return [{"Name": "AutoScalingGroupName", "Value": f"g{g}"}]


CALLS = [
    [stat(f"q{g}", "AWS/EC2", "CPUUtilization", group(g)) for g in range(30)],
    [
        stat("max", "AWS/EC2", "CPUUtilization", group(3), Stat="Maximum"),
        stat("unit", "AWS/EC2", "CPUUtilization", group(4), Unit="Percent"),
        stat("wrongunit", "AWS/EC2", "CPUUtilization", group(4), Unit="Count"),
        stat(
            "two",
            "Custom",
            "CPUUtilization",
            [{"Name": "Tier", "Value": "web"}, *group(1)],
        ),
        stat("nodims", "Custom", "Depth", [], Stat="Sum"),
        stat("missing", "AWS/EC2", "CPUUtilization", group(77)),
        {**stat("hidden", "AWS/EC2", "CPUUtilization", group(5)), "ReturnData": False},
    ],
    [
        stat("a", "AWS/EC2", "CPUUtilization", group(2)),
        {"Id": "e", "Expression": "a * 2"},  # an expression: moto unchanged
    ],
]


def answers(client: Any, queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = client.get_metric_data(
        MetricDataQueries=queries,
        StartTime=T0,
        EndTime=T0 + timedelta(minutes=5),
        ScanBy="TimestampDescending",
    )
    return out["MetricDataResults"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("queries", CALLS, ids=["wave", "shapes", "expression"])
def test_the_same_answers_as_unpatched_moto(cloudwatch: Any, queries: list[dict]) -> None:
    original = CloudWatchBackend.get_metric_data
    before = answers(cloudwatch, queries)
    try:
        moto_indexed.patch()
        assert CloudWatchBackend.get_metric_data is not original
        after = answers(cloudwatch, queries)
    finally:
        CloudWatchBackend.get_metric_data = original  # type: ignore[method-assign]
    assert after == before
    assert any(r["Values"] for r in before)  # the calls do find data: not empty == empty
