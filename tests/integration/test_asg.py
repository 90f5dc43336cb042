"""The Auto Scaling group actuator against moto in server mode (real HTTP on loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber

from stackscaler.actuators.asg import AsgActuator
from stackscaler.actuators.base import Capacity
from stackscaler.aws import AwsCaller, AwsSettings
from stackscaler.errors import TargetNotFound, Throttled
from stackscaler.model.spec import Resource, parse_resource
from tests.integration.aws_faults import FaultProxy
from tests.integration.conftest import REGION, MotoServer

DESCRIBE = ("autoscaling", "DescribeAutoScalingGroups")
SET_DESIRED = ("autoscaling", "SetDesiredCapacity")
UPDATE = ("autoscaling", "UpdateAutoScalingGroup")
DESCRIBE_INSTANCES = ("ec2", "DescribeInstances")


def at(moment: datetime) -> Callable[[], datetime]:
    """A clock stopped at ``moment``: the actuator's idea of now, injected."""
    return lambda: moment


LATER = at(datetime.now(UTC) + timedelta(days=1))
"""Long after every instance a test launches: each InService one is past its warm-up."""


def web(
    group: str,
    *,
    name: str | None = None,
    sync: bool = False,
    min_capacity: int = 1,
    max_capacity: int = 10,
    warmup: int | None = None,
) -> Resource:
    spec: dict[str, Any] = {
        "target": {
            "kind": "AutoScalingGroup",
            "name": group,
            "region": REGION,
            "syncMinMax": sync,
        },
        "minCapacity": min_capacity,
        "maxCapacity": max_capacity,
        "metrics": [
            {
                "name": "cpu",
                "prometheus": {"serverAddress": "http://127.0.0.1:9", "query": "up"},
                "target": {"type": "Value", "value": 50},
            }
        ],
    }
    if warmup is not None:
        spec["warmupSeconds"] = warmup
    return parse_resource(
        {
            "apiVersion": "stackscaler.dev/v1alpha1",
            "kind": "WebTier",
            "metadata": {"name": name or group, "namespace": "shop", "uid": f"uid-{group}"},
            "spec": spec,
        }
    )


@pytest.fixture
def asg(boto: Any) -> Any:
    client = boto("autoscaling")
    client.create_launch_configuration(
        LaunchConfigurationName="lc", ImageId="ami-12345678", InstanceType="t3.micro"
    )
    return client


def make_group(asg: Any, name: str, *, desired: int, min_size: int, max_size: int) -> None:
    asg.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchConfigurationName="lc",
        MinSize=min_size,
        MaxSize=max_size,
        DesiredCapacity=desired,
        AvailabilityZones=[f"{REGION}a"],
    )


def group(asg: Any, name: str) -> dict[str, Any]:
    return asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[  # type: ignore[no-any-return]
        "AutoScalingGroups"
    ][0]


async def test_observe_counts_in_service_and_reports_desired_and_bounds(
    aws: AwsCaller, asg: Any
) -> None:
    make_group(asg, "shop-web", desired=3, min_size=1, max_size=10)
    # moto launches every instance straight to InService; Standby is the one other
    # state it has: an instance in Standby is neither serving nor being added.
    standby = group(asg, "shop-web")["Instances"][0]["InstanceId"]
    asg.enter_standby(
        AutoScalingGroupName="shop-web", InstanceIds=[standby], ShouldDecrementDesiredCapacity=True
    )

    cap = await AsgActuator(aws, clock=LATER).observe(web("shop-web"))

    assert (cap.current, cap.ready, cap.pending, cap.removing) == (2, 2, 0, 0)
    assert (cap.minimum, cap.maximum, cap.busy) == (1, 10, None)
    assert "1 in other states" in cap.detail
    assert aws.clients.calls[DESCRIBE] == 1


async def test_observe_classifies_pending_and_terminating_instances(
    aws: AwsCaller, asg: Any
) -> None:
    make_group(asg, "shop-web", desired=6, min_size=1, max_size=10)
    # moto never reports Pending* or Terminating* lifecycle states (its instances are
    # InService at once), so this one DescribeAutoScalingGroups answer is moto's own
    # group with the states a real group shows while it scales, served by Stubber.
    answer = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["shop-web"])
    answer.pop("ResponseMetadata")
    states = [
        "InService",
        "Pending",
        "Pending:Wait",
        "Pending:Proceed",
        "Terminating:Wait",
        "Standby",
    ]
    for instance, state in zip(answer["AutoScalingGroups"][0]["Instances"], states, strict=True):
        instance["LifecycleState"] = state
    with Stubber(aws.clients.get("autoscaling", REGION, None)) as stub:
        stub.add_response(
            "describe_auto_scaling_groups",
            answer,
            {"AutoScalingGroupNames": ["shop-web"], "MaxRecords": 100},
        )
        cap = await AsgActuator(aws, clock=LATER).observe(web("shop-web"))
        stub.assert_no_pending_responses()

    assert (cap.current, cap.ready, cap.pending, cap.removing) == (6, 1, 3, 1)
    assert cap.starting == 5  # the 3 pending, and 2 of the 6 not launched yet (6 - 4)


async def test_apply_sets_desired_capacity_only_when_it_changes(aws: AwsCaller, asg: Any) -> None:
    make_group(asg, "shop-web", desired=2, min_size=1, max_size=10)
    actuator = AsgActuator(aws)
    resource = web("shop-web")

    observed = await actuator.observe(resource)
    same = await actuator.apply(resource, 2, observed)
    assert (same.requested, same.changed, same.clamped) == (2, False, None)
    assert aws.clients.calls[SET_DESIRED] == 0

    out = await actuator.apply(resource, 5, observed)
    assert (out.requested, out.changed, out.clamped) == (5, True, None)
    assert aws.clients.calls[SET_DESIRED] == 1
    assert group(asg, "shop-web")["DesiredCapacity"] == 5
    assert (await actuator.observe(resource)).current == 5


async def test_apply_clamps_to_the_groups_own_bounds_and_says_so(aws: AwsCaller, asg: Any) -> None:
    make_group(asg, "shop-web", desired=4, min_size=2, max_size=10)
    actuator = AsgActuator(aws)
    resource = web("shop-web", max_capacity=20)

    high = await actuator.apply(resource, 12, await actuator.observe(resource))
    assert (high.requested, high.changed) == (10, True)
    assert high.clamped == "desired 12 clamped to the group's MaxSize 10"
    assert group(asg, "shop-web")["DesiredCapacity"] == 10

    # Clamped to what the group already has: nothing to send.
    again = await actuator.apply(resource, 15, await actuator.observe(resource))
    assert (again.requested, again.changed) == (10, False)
    assert again.clamped == "desired 15 clamped to the group's MaxSize 10"

    low = await actuator.apply(resource, 0, await actuator.observe(resource))
    assert (low.requested, low.changed) == (2, True)
    assert low.clamped == "desired 0 clamped to the group's MinSize 2"
    found = group(asg, "shop-web")
    assert (found["MinSize"], found["MaxSize"], found["DesiredCapacity"]) == (2, 10, 2)
    assert aws.clients.calls[SET_DESIRED] == 2
    assert aws.clients.calls[UPDATE] == 0


async def test_sync_min_max_updates_the_group_bounds_then_the_desired_capacity(
    aws: AwsCaller, asg: Any
) -> None:
    make_group(asg, "shop-web", desired=1, min_size=1, max_size=5)
    actuator = AsgActuator(aws)
    resource = web("shop-web", sync=True, min_capacity=2, max_capacity=20)

    out = await actuator.apply(resource, 8, await actuator.observe(resource))

    assert (out.requested, out.changed, out.clamped) == (8, True, None)
    found = group(asg, "shop-web")
    assert (found["MinSize"], found["MaxSize"], found["DesiredCapacity"]) == (2, 20, 8)
    assert aws.clients.calls[UPDATE] == 1
    assert aws.clients.calls[SET_DESIRED] == 1

    # In sync and at the desired capacity: no call at all.
    again = await actuator.apply(resource, 8, await actuator.observe(resource))
    assert again.changed is False
    assert aws.clients.calls[UPDATE] == 1
    assert aws.clients.calls[SET_DESIRED] == 1


async def test_250_groups_observed_together_cost_three_describe_calls(
    aws: AwsCaller, asg: Any
) -> None:
    for i in range(250):
        make_group(asg, f"g{i:03d}", desired=0, min_size=0, max_size=i + 1)
    actuator = AsgActuator(aws)

    caps = await asyncio.gather(*(actuator.observe(web(f"g{i:03d}")) for i in range(250)))

    assert aws.clients.calls[DESCRIBE] == 3  # ceil(250 / 100)
    assert [c.maximum for c in caps] == [i + 1 for i in range(250)]  # each its own group


async def test_unknown_group_fails_alone_in_its_batch(aws: AwsCaller, asg: Any) -> None:
    make_group(asg, "shop-web", desired=2, min_size=1, max_size=10)
    make_group(asg, "shop-workers", desired=3, min_size=0, max_size=50)
    actuator = AsgActuator(aws)

    results = await asyncio.gather(
        actuator.observe(web("shop-web")),
        actuator.observe(web("shop-gone")),
        actuator.observe(web("shop-workers")),
        actuator.observe(web("shop-web", name="web-again")),  # two resources, one group
        return_exceptions=True,
    )

    assert aws.clients.calls[DESCRIBE] == 1
    web_cap, gone, workers, web_again = results
    assert isinstance(web_cap, Capacity) and web_cap.current == 2
    assert isinstance(workers, Capacity) and (workers.current, workers.maximum) == (3, 50)
    assert web_again == web_cap
    assert isinstance(gone, TargetNotFound)
    assert "shop-gone" in str(gone) and REGION in str(gone)


def launch_times(boto: Any, asg: Any, name: str) -> dict[str, datetime]:
    """The group's instances and their EC2 LaunchTime, as moto set them (at creation)."""
    ids = [i["InstanceId"] for i in group(asg, name)["Instances"]]
    found = boto("ec2").describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i["LaunchTime"] for r in found for i in r["Instances"]}


async def test_in_service_instances_in_their_warm_up_are_starting_not_ready(
    aws: AwsCaller, asg: Any, boto: Any
) -> None:
    make_group(asg, "shop-web", desired=3, min_size=1, max_size=10)
    launched = max(launch_times(boto, asg, "shop-web").values())
    resource = web("shop-web")  # no warmupSeconds, no DefaultInstanceWarmup: 180 s

    early = await AsgActuator(aws, clock=at(launched + timedelta(seconds=179))).observe(resource)
    late = await AsgActuator(aws, clock=at(launched + timedelta(seconds=180))).observe(resource)

    assert (early.current, early.ready, early.warming, early.starting) == (3, 0, 3, 3)
    assert early.warmup_seconds == 180
    assert "3 in warm-up (180 s, the default for AutoScalingGroup targets)" in early.detail
    assert (late.current, late.ready, late.warming, late.starting) == (3, 3, 0, 0)
    # the resource's own warm-up wins over the default
    short = web("shop-web", warmup=30)
    cap = await AsgActuator(aws, clock=at(launched + timedelta(seconds=60))).observe(short)
    assert (cap.ready, cap.warmup_seconds) == (3, 30)
    assert "spec.warmupSeconds" in cap.detail


async def test_launch_times_are_read_once_per_instance_and_batched(
    aws: AwsCaller, asg: Any
) -> None:
    for i in range(150):
        make_group(asg, f"g{i:03d}", desired=1, min_size=0, max_size=5)
    actuator = AsgActuator(aws, clock=LATER)

    first = await asyncio.gather(*(actuator.observe(web(f"g{i:03d}")) for i in range(150)))
    assert aws.clients.calls[DESCRIBE] == 2  # ceil(150 / 100)
    assert aws.clients.calls[DESCRIBE_INSTANCES] == 2  # 150 new instances, 100 per call
    assert {(c.current, c.ready) for c in first} == {(1, 1)}

    # known launch times are not read again; a new instance's is, in one call
    asg.set_desired_capacity(AutoScalingGroupName="g000", DesiredCapacity=2)
    again = await asyncio.gather(*(actuator.observe(web(f"g{i:03d}")) for i in range(150)))
    assert aws.clients.calls[DESCRIBE_INSTANCES] == 3
    assert (again[0].current, again[0].ready) == (2, 2)


async def test_no_launch_times_are_read_without_a_warm_up(aws: AwsCaller, asg: Any) -> None:
    make_group(asg, "shop-web", desired=2, min_size=1, max_size=10)

    cap = await AsgActuator(aws).observe(web("shop-web", warmup=0))

    assert (cap.current, cap.ready, cap.starting) == (2, 2, 0)
    assert aws.clients.calls[DESCRIBE_INSTANCES] == 0


async def test_the_groups_default_instance_warmup_applies_when_the_spec_sets_none(
    aws: AwsCaller, asg: Any, boto: Any
) -> None:
    make_group(asg, "shop-web", desired=2, min_size=1, max_size=10)
    launched = max(launch_times(boto, asg, "shop-web").values())
    # moto 5.2.5 neither stores nor returns DefaultInstanceWarmup: its own describe
    # answer with the field a group that sets it has, served by Stubber. The launch
    # times still come from moto (ec2:DescribeInstances goes to another client).
    answer = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["shop-web"])
    answer.pop("ResponseMetadata")
    answer["AutoScalingGroups"][0]["DefaultInstanceWarmup"] = 600
    five_minutes = at(launched + timedelta(seconds=300))

    with Stubber(aws.clients.get("autoscaling", REGION, None)) as stub:
        for _ in range(2):
            stub.add_response(
                "describe_auto_scaling_groups",
                answer,
                {"AutoScalingGroupNames": ["shop-web"], "MaxRecords": 100},
            )
        group_says = await AsgActuator(aws, clock=five_minutes).observe(web("shop-web"))
        spec_says = await AsgActuator(aws, clock=five_minutes).observe(web("shop-web", warmup=120))
        stub.assert_no_pending_responses()

    assert (group_says.ready, group_says.warming, group_says.warmup_seconds) == (0, 2, 600)
    assert "the group's DefaultInstanceWarmup" in group_says.detail
    assert (spec_says.ready, spec_says.warmup_seconds) == (2, 120)


async def test_a_failed_batch_names_only_each_resources_own_group(
    moto: MotoServer, asg: Any
) -> None:
    """Groups of several namespaces share a describe; its error must not tell one
    namespace the names of another's groups (found by the throttling fault scenario)."""
    for name in ("shop-web", "blog-web", "team-web"):
        make_group(asg, name, desired=2, min_size=1, max_size=10)
    proxy = FaultProxy(moto.endpoint)
    await proxy.start()
    caller = AwsCaller(AwsSettings(default_region=REGION, endpoint_url=proxy.endpoint))
    try:
        proxy.fail("Throttling", status=400, operation="DescribeAutoScalingGroups")
        actuator = AsgActuator(caller)
        names = ("shop-web", "blog-web", "team-web")
        errors = await asyncio.gather(
            *(actuator.observe(web(n)) for n in names), return_exceptions=True
        )
    finally:
        caller.close()
        await proxy.stop()
    assert proxy.received["DescribeAutoScalingGroups"] >= 1
    for name, err in zip(names, errors, strict=True):
        assert isinstance(err, Throttled), err
        others = [n for n in names if n != name]
        assert str(err).startswith(f"Auto Scaling group {name}: ")
        assert not any(o in str(err) for o in others), str(err)
