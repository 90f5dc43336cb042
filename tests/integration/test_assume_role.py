"""Resources with ``roleArn``: STS AssumeRole through the client cache, against moto.

moto in server mode answers AssumeRole with working temporary credentials
(and GetCallerIdentity with the assumed-role ARN), so these tests run the
real path: the STS client, the refreshable credentials, the role's clients.
AssumeRole requests are observed on the wire from the STS client's
``before-send`` event: the form body botocore is about to send.

Hang guards: a call that has not finished within ``HANG`` seconds fails the
test (a deadlock), it never freezes pytest. No test asserts on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qs

import pytest

from stackscaler.actuators.asg import AsgActuator
from stackscaler.aws import AwsCaller, AwsSettings, RoleRef
from stackscaler.aws.clients import NAMESPACE_TAG
from stackscaler.errors import AccessDenied
from stackscaler.model.spec import Resource, parse_resource
from tests.integration.aws_faults import FaultProxy
from tests.integration.conftest import REGION, MotoServer

ROLE = "arn:aws:iam::123456789012:role/stackscaler-web"
OTHER_ROLE = "arn:aws:iam::123456789012:role/stackscaler-other"
HANG = 30.0
"""Seconds after which a call counts as hung (a guard, never a timing assertion)."""

T = TypeVar("T")


def _unstick(caller: AwsCaller) -> None:
    """Release locks a deadlocked worker holds, so a failing test cannot freeze pytest's exit."""
    lock_type = type(threading.Lock())
    found: list[Any] = []
    for value in vars(caller.clients).values():
        if isinstance(value, lock_type):
            found.append(value)
        elif isinstance(value, dict):
            found.extend(v for v in value.values() if isinstance(v, lock_type))
    for _ in range(200):
        for lock in found:
            if lock.locked():
                with contextlib.suppress(RuntimeError):
                    lock.release()
        time.sleep(0.01)


async def _guarded(caller: AwsCaller, *calls: Awaitable[T]) -> list[T]:
    """Await ``calls`` concurrently; a hang fails the test instead of freezing pytest."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        return list(await asyncio.wait_for(asyncio.gather(*tasks), HANG))
    except TimeoutError:
        await asyncio.to_thread(_unstick, caller)
        raise AssertionError(
            f"an AWS call did not finish within {HANG:g} s: the client cache deadlocked"
        ) from None


class AssumeRoleRequests:
    """The AssumeRole requests the caller's STS client sends, parsed from the wire body."""

    def __init__(self, caller: AwsCaller) -> None:
        self.sent: list[dict[str, list[str]]] = []
        sts = caller.clients.get("sts", REGION, None)
        sts.meta.events.register("before-send.sts.AssumeRole", self._record)

    def _record(self, request: Any, **_: Any) -> None:
        body = request.body
        text = body.decode() if isinstance(body, bytes) else str(body)
        self.sent.append(parse_qs(text))

    @staticmethod
    def tags(request: Mapping[str, list[str]]) -> dict[str, str]:
        out = {}
        for i in range(1, 51):
            key = request.get(f"Tags.member.{i}.Key")
            if key is None:
                break
            out[key[0]] = request.get(f"Tags.member.{i}.Value", [""])[0]
        return out


async def _identity(caller: AwsCaller, role: RoleRef | None) -> str:
    out = await caller.call("sts", "GetCallerIdentity", region=None, role=role, resource="me")
    return str(out["Arn"])


# --- finding 1: one roleArn froze every AWS call ----------------------------------


async def test_a_role_call_completes_and_does_not_block_other_calls(
    aws: AwsCaller, boto: Any
) -> None:
    boto("sqs").create_queue(QueueName="jobs")
    role = RoleRef(ROLE, "shop")
    with_role = asyncio.ensure_future(
        aws.call(
            "sqs", "GetQueueUrl", region=None, role=role, resource="queue jobs", QueueName="jobs"
        )
    )
    await asyncio.sleep(0)  # the role path is under way when the other call starts
    without_role = aws.call(
        "sqs", "GetQueueUrl", region=None, resource="queue jobs", QueueName="jobs"
    )
    plain, assumed = await _guarded(aws, without_role, with_role)
    assert plain["QueueUrl"].endswith("/jobs")
    assert assumed["QueueUrl"].endswith("/jobs")
    # and the role's calls keep working, many at once, next to calls without a role
    again = await _guarded(
        aws,
        *(
            aws.call(
                "sqs",
                "GetQueueUrl",
                region=None,
                role=role if i % 2 else None,
                resource="queue jobs",
                QueueName="jobs",
            )
            for i in range(16)
        ),
    )
    assert all(out["QueueUrl"].endswith("/jobs") for out in again)
    assert aws.clients.calls[("sts", "AssumeRole")] == 1


async def test_calls_run_as_the_role_assumed_for_the_namespace(aws: AwsCaller) -> None:
    mine, assumed = await _guarded(aws, _identity(aws, None), _identity(aws, RoleRef(ROLE, "shop")))
    assert ":assumed-role/" not in mine
    assert assumed.endswith(":assumed-role/stackscaler-web/stackscaler-shop")


async def test_credential_refresh_assumes_the_role_again_without_deadlock(
    moto: MotoServer,
) -> None:
    # Credentials of 900 s are inside botocore's advisory refresh window (15 min), so
    # every use of them refreshes: AssumeRole again, from inside the role's own call.
    caller = AwsCaller(
        AwsSettings(default_region=REGION, endpoint_url=moto.endpoint),
        assume_role_params=lambda role: {"DurationSeconds": 900},
    )
    try:
        requests = AssumeRoleRequests(caller)
        role = RoleRef(ROLE, "shop")
        first = await _guarded(caller, _identity(caller, role))
        rest = await _guarded(caller, *(_identity(caller, role) for _ in range(4)))
        assert {*first, *rest} == {first[0]}
        assert len(requests.sent) >= 2  # the first AssumeRole and at least one refresh
        assert all(r["DurationSeconds"] == ["900"] for r in requests.sent)
    finally:
        caller.close()


# --- tenancy: sessions per (role, namespace), AssumeRole parameters ----------------


async def test_default_assume_role_request_names_and_tags_the_namespace(aws: AwsCaller) -> None:
    requests = AssumeRoleRequests(aws)
    await _guarded(aws, _identity(aws, RoleRef(ROLE, "shop")))
    [sent] = requests.sent
    assert sent["RoleArn"] == [ROLE]
    assert sent["RoleSessionName"] == ["stackscaler-shop"]
    assert requests.tags(sent) == {NAMESPACE_TAG: "shop"}
    assert "ExternalId" not in sent


async def test_assume_role_params_reach_sts_and_their_keys_win(moto: MotoServer) -> None:
    def params(role: RoleRef) -> Mapping[str, Any]:
        return {
            "ExternalId": f"ext-{role.namespace}",
            "RoleSessionName": f"tenant-{role.namespace}",
            "Tags": [
                {"Key": NAMESPACE_TAG, "Value": role.namespace},
                {"Key": "team", "Value": "payments"},
            ],
            "TransitiveTagKeys": [NAMESPACE_TAG],
            "RoleArn": OTHER_ROLE,  # ignored: the session is always for the RoleRef's ARN
        }

    caller = AwsCaller(
        AwsSettings(default_region=REGION, endpoint_url=moto.endpoint), assume_role_params=params
    )
    try:
        requests = AssumeRoleRequests(caller)
        [arn] = await _guarded(caller, _identity(caller, RoleRef(ROLE, "payments")))
        [sent] = requests.sent
        assert sent["RoleArn"] == [ROLE]
        assert sent["ExternalId"] == ["ext-payments"]
        assert sent["RoleSessionName"] == ["tenant-payments"]
        assert requests.tags(sent) == {NAMESPACE_TAG: "payments", "team": "payments"}
        assert sent["TransitiveTagKeys.member.1"] == [NAMESPACE_TAG]
        assert arn.endswith(":assumed-role/stackscaler-web/tenant-payments")
    finally:
        caller.close()


async def test_one_role_in_two_namespaces_is_two_sessions(aws: AwsCaller) -> None:
    requests = AssumeRoleRequests(aws)
    shop, blog = RoleRef(ROLE, "shop"), RoleRef(ROLE, "blog")
    arns = await _guarded(
        aws, _identity(aws, shop), _identity(aws, blog), _identity(aws, shop), _identity(aws, blog)
    )
    assert arns[0] == arns[2] != arns[1] == arns[3]
    assert arns[1].endswith("/stackscaler-blog")
    assert len(requests.sent) == 2  # one session each, cached after that
    by_namespace = {requests.tags(r)[NAMESPACE_TAG]: r for r in requests.sent}
    assert by_namespace["shop"]["RoleSessionName"] == ["stackscaler-shop"]
    assert by_namespace["blog"]["RoleSessionName"] == ["stackscaler-blog"]
    assert set(aws.clients.roles) == {shop, blog}


def _tier(group: str, namespace: str, role: str | None) -> Resource:
    target: dict[str, Any] = {"kind": "AutoScalingGroup", "name": group, "region": REGION}
    if role:
        target["roleArn"] = role
    return parse_resource(
        {
            "apiVersion": "stackscaler.dev/v1alpha1",
            "kind": "WebTier",
            "metadata": {"name": group, "namespace": namespace, "uid": f"uid-{group}"},
            "spec": {
                "target": target,
                "minCapacity": 1,
                "maxCapacity": 10,
                "metrics": [
                    {
                        "name": "cpu",
                        "prometheus": {"serverAddress": "http://127.0.0.1:9", "query": "up"},
                        "target": {"type": "Value", "value": 50},
                    }
                ],
            },
        }
    )


@pytest.fixture
def groups(boto: Any) -> list[str]:
    asg = boto("autoscaling")
    asg.create_launch_configuration(
        LaunchConfigurationName="lc", ImageId="ami-12345678", InstanceType="t3.micro"
    )
    names = ["shop-a", "shop-b", "blog-a", "mine"]
    for name in names:
        asg.create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchConfigurationName="lc",
            MinSize=0,
            MaxSize=10,
            DesiredCapacity=2,
            AvailabilityZones=[f"{REGION}a"],
        )
    return names


async def test_batches_never_mix_namespaces_that_share_a_role(
    aws: AwsCaller, groups: list[str]
) -> None:
    actuator = AsgActuator(aws)
    tiers = [
        _tier("shop-a", "shop", ROLE),
        _tier("shop-b", "shop", ROLE),
        _tier("blog-a", "blog", ROLE),
        _tier("mine", "shop", None),
    ]
    capacities = await _guarded(aws, *(actuator.observe(t) for t in tiers))
    assert [c.current for c in capacities] == [2, 2, 2, 2]
    # (shop, role), (blog, role) and the operator's own identity: three calls
    assert aws.clients.calls[("autoscaling", "DescribeAutoScalingGroups")] == 3
    assert set(aws.clients.roles) == {RoleRef(ROLE, "shop"), RoleRef(ROLE, "blog")}


# --- a failed AssumeRole -----------------------------------------------------------


@pytest.fixture
async def proxy(moto: MotoServer) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(moto.endpoint)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def test_denied_assume_role_fails_that_resource_only_and_is_tried_again(
    proxy: FaultProxy, groups: list[str]
) -> None:
    caller = AwsCaller(AwsSettings(default_region=REGION, endpoint_url=proxy.endpoint))
    try:
        actuator = AsgActuator(caller)
        denied, good = _tier("shop-a", "shop", ROLE), _tier("mine", "blog", None)
        proxy.fail(
            "AccessDenied",
            status=403,
            operation="AssumeRole",
            message="not authorized to perform sts:AssumeRole (ExternalId mismatch)",
        )
        outcome = await _guarded(
            caller,
            asyncio.gather(
                actuator.observe(denied), actuator.observe(good), return_exceptions=True
            ),
        )
        err, capacity = outcome[0]
        assert isinstance(err, AccessDenied), err
        assert "sts:AssumeRole" in str(err)
        assert ROLE in str(err)
        assert "namespace shop" in str(err)
        assert "autoscaling:DescribeAutoScalingGroups" not in str(err)
        assert not isinstance(capacity, BaseException) and capacity.current == 2
        assert caller.clients.roles == []  # nothing cached for the role

        proxy.faults.clear()  # the trust policy is fixed: the next call assumes the role
        [recovered] = await _guarded(caller, actuator.observe(denied))
        assert recovered.current == 2
        assert proxy.received["AssumeRole"] == 2
        assert caller.clients.roles == [RoleRef(ROLE, "shop")]
    finally:
        caller.close()
