"""Batching across resources, proven by counting API calls against moto."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from stackscaler.actuators.registry import Actuators
from stackscaler.aws import AwsCaller
from stackscaler.metrics.registry import MetricSources
from stackscaler.model.spec import Resource, parse_resource
from tests.integration.conftest import REGION

TIERS = 250


def _tier(i: int) -> Resource:
    return parse_resource(
        {
            "apiVersion": "stackscaler.dev/v1alpha1",
            "kind": "WebTier",
            "metadata": {"name": f"web-{i}", "namespace": "shop", "uid": f"uid-{i}"},
            "spec": {
                "target": {"kind": "AutoScalingGroup", "name": f"web-{i}"},
                "minCapacity": 1,
                "maxCapacity": 20,
                "metrics": [
                    {
                        "name": "cpu",
                        "target": {"value": 50},
                        "cloudWatch": {
                            "namespace": "AWS/EC2",
                            "metricName": "CPUUtilization",
                            "dimensions": [{"name": "AutoScalingGroupName", "value": f"web-{i}"}],
                        },
                    }
                ],
            },
        }
    )


def _arrange(boto: Any, now: datetime) -> None:
    ec2, asg, cw = boto("ec2"), boto("autoscaling"), boto("cloudwatch")
    lt = ec2.create_launch_template(
        LaunchTemplateName="web",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
    )["LaunchTemplate"]["LaunchTemplateId"]
    minute = now.replace(second=0, microsecond=0) - timedelta(minutes=2)
    data = []
    for i in range(TIERS):
        asg.create_auto_scaling_group(
            AutoScalingGroupName=f"web-{i}",
            MinSize=0,
            MaxSize=20,
            DesiredCapacity=0,
            LaunchTemplate={"LaunchTemplateId": lt, "Version": "$Latest"},
            AvailabilityZones=[f"{REGION}a"],
        )
        data.append(
            {
                "MetricName": "CPUUtilization",
                "Timestamp": minute,
                "Value": float(i % 100),
                "Dimensions": [{"Name": "AutoScalingGroupName", "Value": f"web-{i}"}],
            }
        )
    for start in range(0, len(data), 20):  # small bodies: moto cannot read gzipped ones
        cw.put_metric_data(Namespace="AWS/EC2", MetricData=data[start : start + 20])


async def test_250_tiers_in_one_tick_cost_1_getmetricdata_and_3_describes(
    aws: AwsCaller, boto: Any
) -> None:
    now = datetime.now(UTC)
    _arrange(boto, now)
    tiers = [_tier(i) for i in range(TIERS)]
    sources, actuators = MetricSources(aws), Actuators(aws, None)
    aws.clients.calls.clear()
    try:

        async def tick(tier: Resource) -> tuple[int, float | None]:
            readings, capacity = await asyncio.gather(
                sources.observe_all(tier, now), actuators.for_target(tier.target).observe(tier)
            )
            return capacity.current, readings["cpu"][0].value

        results = await asyncio.gather(*(tick(t) for t in tiers))
    finally:
        await sources.close()
        await actuators.close()
    assert aws.clients.calls[("cloudwatch", "GetMetricData")] == 1
    assert aws.clients.calls[("autoscaling", "DescribeAutoScalingGroups")] == 3
    assert [value for _, value in results] == [float(i % 100) for i in range(TIERS)]
    assert all(current == 0 for current, _ in results)
