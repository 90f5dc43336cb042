"""`make bench`: the forecast refresh of 1,000 tiers, in GetMetricData calls.

Through the operator's own path (``stackscaler.predictive.Forecasts`` with its
``CloudWatchHistory`` on an ``AwsCaller``), against moto's server on loopback (with
bench/moto_indexed.py's narrowing, moto's answers in less time): N WebTiers with
``spec.predictive`` on their CPU (a per-unit target on an Auto Scaling group, so each
read also returns the group's GroupInServiceInstances), ticking as the scheduler ticks
them (sub-waves of 500, a couple of seconds apart). First refresh: every tier's whole
history (14 days at 300 s); then, at the next hour, the refresh that reads what is new.
A second fleet forecasts a total (``AverageValue``: one series per read). The calls are
counted by the AwsCaller (each page counts; moto never pages). The count depends on the
windows and the batch limits, not on how many datapoints moto holds: each tier gets the
last hour's datapoints only (moto scans every datapoint of a window for every period).

    python -m bench.forecast_reads [--tiers 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from bench.moto_launcher import indexed_moto
from stackscaler.actuators.base import Capacity
from stackscaler.aws import AwsCaller, AwsSettings
from stackscaler.demo.processes import FAKE_ACCESS_KEY, FAKE_SECRET_KEY, start_moto
from stackscaler.model.spec import Resource, parse_resource
from stackscaler.predictive import Forecasts
from stackscaler.predictive.cloudwatch import CloudWatchHistory
from stackscaler.scheduler import WAVE_SIZE

REGION = "us-east-1"
GMD = ("cloudwatch", "GetMetricData")
SUB_WAVE_GAP = 2.0
"""Seconds between sub-waves (the scheduler's are interval / waves apart: 15 s at 30 s)."""


def tier(i: int, *, per_unit: bool) -> Resource:
    name = f"tier-{i:04d}"
    metric: dict[str, Any] = (
        {
            "name": "cpu",
            "cloudWatch": {
                "namespace": "AWS/EC2",
                "metricName": "CPUUtilization",
                "dimensions": [{"name": "AutoScalingGroupName", "value": name}],
            },
            "target": {"type": "Value", "value": 50},
        }
        if per_unit
        else {
            "name": "cpu",
            "cloudWatch": {
                "namespace": "AWS/ApplicationELB",
                "metricName": "RequestCount",
                "dimensions": [{"name": "TargetGroup", "value": name}],
                "statistic": "Sum",
            },
            "target": {"type": "AverageValue", "value": 1000},
        }
    )
    return parse_resource(
        {
            "apiVersion": "stackscaler.dev/v1alpha1",
            "kind": "WebTier",
            "metadata": {"name": name, "namespace": f"team-{i % 20}", "uid": f"uid-{i}"},
            "spec": {
                "target": {"kind": "AutoScalingGroup", "name": name},
                "maxCapacity": 100,
                "metrics": [metric],
                "predictive": {"mode": "ForecastOnly", "metric": "cpu"},
            },
        }
    )


def put_last_hour(endpoint: str, n: int, *, per_unit: bool, now: datetime) -> None:
    """One datapoint of each series a tier's read returns, 20 minutes ago."""
    cw = boto3.client("cloudwatch", region_name=REGION, endpoint_url=endpoint)
    at = now - timedelta(minutes=20)

    def point(metric: str, dim: str, name: str, value: float) -> dict[str, Any]:
        dims = [{"Name": dim, "Value": name}]
        return {"MetricName": metric, "Dimensions": dims, "Timestamp": at, "Value": value}

    names = [f"tier-{i:04d}" for i in range(n)]
    batches: dict[str, list[dict[str, Any]]] = {}
    if per_unit:
        batches["AWS/EC2"] = [point("CPUUtilization", "AutoScalingGroupName", x, 40) for x in names]
        batches["AWS/AutoScaling"] = [
            point("GroupInServiceInstances", "AutoScalingGroupName", x, 3) for x in names
        ]
    else:
        batches["AWS/ApplicationELB"] = [
            point("RequestCount", "TargetGroup", x, 900) for x in names
        ]
    for namespace, data in batches.items():
        for i in range(0, len(data), 40):  # moto cannot read botocore's gzipped bodies
            cw.put_metric_data(Namespace=namespace, MetricData=data[i : i + 40])


async def refresh(forecasts: Forecasts, resources: Sequence[Resource], now: datetime) -> None:
    """One refresh as the scheduler's sub-waves tick the fleet."""
    for k in range(0, len(resources), WAVE_SIZE):
        if k:
            await asyncio.sleep(SUB_WAVE_GAP)
        for r in resources[k : k + WAVE_SIZE]:
            forecasts.at_tick(str(r.uid), r, Capacity(3, 3), now)
    await forecasts.idle()


async def measure(
    endpoint: str, resources: Sequence[Resource], now: datetime
) -> tuple[int, int, float, float]:
    caller = AwsCaller(AwsSettings(default_region=REGION, endpoint_url=endpoint))
    forecasts = Forecasts(CloudWatchHistory(caller), None)
    try:
        t0 = time.monotonic()
        await refresh(forecasts, resources, now)
        full = caller.clients.calls[GMD]
        t1 = time.monotonic()
        held = sum(
            forecasts.at_tick(str(r.uid), r, Capacity(3, 3), now).history_hours > 0
            for r in resources
        )
        if held != len(resources):  # every read must have come back with its datapoint
            raise RuntimeError(f"only {held} of {len(resources)} tiers read their history")
        await refresh(forecasts, resources, now + timedelta(hours=1))
        incremental = caller.clients.calls[GMD] - full
        t2 = time.monotonic()
    finally:
        await forecasts.close()
        caller.close()
    return full, incremental, t1 - t0, t2 - t1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.forecast_reads", description=__doc__)
    parser.add_argument("--tiers", type=int, default=1000)
    args = parser.parse_args(argv)
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = (
        FAKE_ACCESS_KEY,
        FAKE_SECRET_KEY,
    )
    os.environ.pop("AWS_SESSION_TOKEN", None)
    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="bench-forecast-reads-") as tmp:
        workdir = Path(tmp)
        moto, endpoint = start_moto(indexed_moto(workdir), workdir, REGION)
        print(f"forecast refresh of {args.tiers:,} tiers: GetMetricData calls (moto, loopback)")
        try:
            for per_unit, what in (
                (True, "per-unit CPU x the group's GroupInServiceInstances (2 series a read)"),
                (False, "a total, RequestCount Sum (1 series a read)"),
            ):
                request = urllib.request.Request(endpoint + "/moto-api/reset", method="POST")
                urllib.request.urlopen(request, timeout=10).close()
                put_last_hour(endpoint, args.tiers, per_unit=per_unit, now=now)
                resources = [tier(i, per_unit=per_unit) for i in range(args.tiers)]
                full, incremental, took_full, took_next = asyncio.run(
                    measure(endpoint, resources, now)
                )
                print(f"  {what}:")
                print(
                    f"    first refresh (14 days at 300 s each): {full:5d} calls"
                    f"  ({took_full:.1f} s with moto)"
                )
                print(
                    f"    next refresh (what is new):            {incremental:5d} calls"
                    f"  ({took_next:.1f} s with moto)"
                )
        finally:
            moto.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
