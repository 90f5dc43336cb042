"""Faults on the real wire: throttling for 30 s and AccessDenied, through a proxy
in front of moto that answers with the error documents AWS sends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stackscaler.actuators.asg import AsgActuator
from stackscaler.aws import AwsCaller, AwsSettings, RateLimit
from stackscaler.errors import AccessDenied, Throttled
from stackscaler.model.spec import Resource, parse_resource
from tests.integration.aws_faults import FaultProxy
from tests.integration.conftest import REGION, MotoServer

THROTTLE_SECONDS = 30.0
RATE, BURST = 2.0, 2


@pytest.fixture
async def proxy(moto: MotoServer) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(moto.endpoint)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


def _asg(boto: Any, name: str = "web", desired: int = 2) -> None:
    ec2 = boto("ec2")
    lt = ec2.create_launch_template(
        LaunchTemplateName=f"{name}-lt",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
    )["LaunchTemplate"]["LaunchTemplateId"]
    boto("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=name,
        MinSize=1,
        MaxSize=10,
        DesiredCapacity=desired,
        LaunchTemplate={"LaunchTemplateId": lt, "Version": "$Latest"},
        AvailabilityZones=[f"{REGION}a"],
    )


def _tier(name: str = "web") -> Resource:
    return parse_resource(
        {
            "apiVersion": "stackscaler.dev/v1alpha1",
            "kind": "WebTier",
            "metadata": {"name": name, "namespace": "shop", "uid": "u-1"},
            "spec": {
                "target": {"kind": "AutoScalingGroup", "name": name},
                "minCapacity": 1,
                "maxCapacity": 10,
                "metrics": [
                    {
                        "name": "cpu",
                        "target": {"value": 50},
                        "prometheus": {"serverAddress": "http://p:9090", "query": "x"},
                    }
                ],
            },
        }
    )


async def test_throttled_for_30s_retries_stay_in_the_limiter_and_set_once(
    boto: Any, proxy: FaultProxy
) -> None:
    _asg(boto)
    caller = AwsCaller(
        AwsSettings(
            default_region=REGION,
            endpoint_url=proxy.endpoint,
            max_attempts=3,
            limits={"autoscaling": RateLimit(RATE, BURST)},
        )
    )
    actuator = AsgActuator(caller)
    tier = _tier()
    proxy.fail("Throttling", seconds=THROTTLE_SECONDS)
    started = time.monotonic()
    throttled: list[Throttled] = []
    done = False
    try:
        # a reconciler's retries, compressed: try every second for the whole outage
        while not done and time.monotonic() - started < THROTTLE_SECONDS + 30:
            try:
                observed = await actuator.observe(tier)
                if observed.current == 5:
                    done = True
                    break
                await actuator.apply(tier, 5, observed)
            except Throttled as exc:  # anything else fails the test
                throttled.append(exc)
                assert exc.delay > 0 and exc.temporary
            await asyncio.sleep(1.0)
    finally:
        await actuator.close()
        caller.close()
    assert done, "the desired capacity was never set after the throttling ended"
    assert throttled, "the proxy never throttled"
    # every attempt, botocore's retries included, went through the token bucket:
    window_end = started + THROTTLE_SECONDS
    during = [t for t, _ in proxy.times if t < window_end]
    assert len(during) <= BURST + RATE * THROTTLE_SECONDS + 1
    assert sum(caller.clients.attempts.values()) == sum(proxy.received.values())
    assert caller.clients.attempts[("autoscaling", "DescribeAutoScalingGroups")] > len(throttled)
    # no duplicate SetDesiredCapacity reached AWS
    assert proxy.forwarded["SetDesiredCapacity"] == 1
    group = boto("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["web"])[
        "AutoScalingGroups"
    ][0]
    assert group["DesiredCapacity"] == 5


async def test_access_denied_names_the_iam_action(boto: Any, proxy: FaultProxy) -> None:
    _asg(boto)
    caller = AwsCaller(AwsSettings(default_region=REGION, endpoint_url=proxy.endpoint))
    actuator = AsgActuator(caller)
    proxy.fail(
        "AccessDenied",
        status=403,
        operation="SetDesiredCapacity",
        message="User is not authorized to perform: autoscaling:SetDesiredCapacity",
    )
    try:
        observed = await actuator.observe(_tier())
        with pytest.raises(AccessDenied) as info:
            await actuator.apply(_tier(), 4, observed)
    finally:
        await actuator.close()
        caller.close()
    message = str(info.value)
    assert "autoscaling:SetDesiredCapacity" in message and "web" in message
    assert not info.value.temporary
    assert proxy.answered["SetDesiredCapacity"] == 1  # permanent: not retried


async def test_access_denied_over_the_json_protocol(boto: Any, proxy: FaultProxy) -> None:
    url = boto("sqs").create_queue(QueueName="jobs")["QueueUrl"]
    caller = AwsCaller(AwsSettings(default_region=REGION, endpoint_url=proxy.endpoint))
    proxy.fail("AccessDenied", status=400, operation="GetQueueAttributes", message="not authorized")
    try:
        with pytest.raises(AccessDenied) as info:
            await caller.call(
                "sqs",
                "GetQueueAttributes",
                region=None,
                resource="queue jobs",
                QueueUrl=url,
                AttributeNames=["ApproximateNumberOfMessages"],
            )
        ok = await caller.call(
            "sqs", "GetQueueUrl", region=None, resource="queue jobs", QueueName="jobs"
        )
    finally:
        caller.close()
    assert "sqs:GetQueueAttributes" in str(info.value)
    assert ok["QueueUrl"] == url  # other calls are unaffected
