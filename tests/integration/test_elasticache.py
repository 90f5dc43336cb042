"""The ElastiCache actuator against moto in server mode (real HTTP on loopback).

moto 5.2.5 implements CreateReplicationGroup, DescribeReplicationGroups and
DeleteReplicationGroup, but not IncreaseReplicaCount or DecreaseReplicaCount
(moto/elasticache/responses.py has no handler for them). Those two calls,
and only those, are answered by botocore's Stubber activated on the client
the operator's AwsCaller uses; the Stubber checks their exact parameters, and
any call it was not told to expect fails the test. Calls the Stubber answers
never reach the AwsCaller's call counter. moto also never reports a group as
``modifying`` or with PendingModifiedValues, nor a node other than
``available``; the tests that need those states serve moto's own describe
answers, changed so, the same way.

moto lists a group's member clusters but does not create them, so
DescribeCacheClusters does not know them; the helpers create them with
CreateCacheCluster under the member ids (available, created now), as AWS has
them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber

from stackscaler.actuators.elasticache import WAITING, ElastiCacheActuator
from stackscaler.aws import AwsCaller
from stackscaler.errors import TargetNotFound
from stackscaler.model.spec import Resource, parse_resource
from tests.integration.conftest import REGION

INCREASE = ("elasticache", "IncreaseReplicaCount")
DESCRIBE = ("elasticache", "DescribeReplicationGroups")
DESCRIBE_CLUSTERS = ("elasticache", "DescribeCacheClusters")


def at(moment: datetime) -> Callable[[], datetime]:
    """A clock stopped at ``moment``: the actuator's idea of now, injected."""
    return lambda: moment


LATER = at(datetime.now(UTC) + timedelta(days=1))
"""Long after every node a test creates: each available one is past its warm-up."""


def cache(group: str, node_group_id: str | None = None, *, warmup: int | None = None) -> Resource:
    target: dict[str, Any] = {"kind": "ReplicationGroup", "name": group, "region": REGION}
    if node_group_id:
        target["nodeGroupId"] = node_group_id
    spec: dict[str, Any] = {
        "target": target,
        "minCapacity": 0,
        "maxCapacity": 5,
        "metrics": [
            {
                "name": "cpu",
                "prometheus": {"serverAddress": "http://127.0.0.1:9", "query": "up"},
                "target": {"type": "Value", "value": 60},
            }
        ],
    }
    if warmup is not None:
        spec["warmupSeconds"] = warmup
    return parse_resource(
        {
            "apiVersion": "stackscaler.dev/v1alpha1",
            "kind": "CachePool",
            "metadata": {"name": "sessions", "namespace": "shop", "uid": "uid-sessions"},
            "spec": spec,
        }
    )


def members_as_clusters(ec: Any, name: str) -> None:
    """Create the group's member clusters, which moto lists but never creates."""
    group = ec.describe_replication_groups(ReplicationGroupId=name)["ReplicationGroups"][0]
    for member in group["MemberClusters"]:
        ec.create_cache_cluster(
            CacheClusterId=member,
            ReplicationGroupId=name,
            Engine="redis",
            CacheNodeType="cache.t4g.micro",
        )


def created(ec: Any, name: str) -> datetime:
    """When the newest member cluster of the group was created."""
    group = ec.describe_replication_groups(ReplicationGroupId=name)["ReplicationGroups"][0]
    return max(
        ec.describe_cache_clusters(CacheClusterId=m)["CacheClusters"][0]["CacheClusterCreateTime"]
        for m in group["MemberClusters"]
    )


def single_shard(
    ec: Any, name: str, replicas: int, *, failover: bool = False, clusters: bool = True
) -> None:
    # Cluster mode disabled. moto ignores NumCacheClusters here and sizes the
    # group from ReplicasPerNodeGroup, which AWS also accepts.
    ec.create_replication_group(
        ReplicationGroupId=name,
        ReplicationGroupDescription="sessions",
        Engine="redis",
        CacheNodeType="cache.t4g.micro",
        ReplicasPerNodeGroup=replicas,
        AutomaticFailoverEnabled=failover,
    )
    if clusters:
        members_as_clusters(ec, name)


def sharded(ec: Any, name: str, replicas: dict[str, int]) -> None:
    ec.create_replication_group(
        ReplicationGroupId=name,
        ReplicationGroupDescription="sharded",
        Engine="redis",
        CacheNodeType="cache.t4g.micro",
        ClusterMode="enabled",
        NumNodeGroups=len(replicas),
        NodeGroupConfiguration=[{"NodeGroupId": k, "ReplicaCount": v} for k, v in replicas.items()],
    )
    members_as_clusters(ec, name)


def cluster_answers(ec: Any, name: str, status: dict[str, str]) -> list[dict[str, Any]]:
    """moto's DescribeCacheClusters answers, statuses changed, in the order the actuator asks.

    It asks shard by shard for each member, but not for a primary the group names
    (CurrentRole, cluster mode disabled): only replicas are capacity.
    """
    group = ec.describe_replication_groups(ReplicationGroupId=name)["ReplicationGroups"][0]
    answers = []
    for member in (
        m["CacheClusterId"]
        for shard in group["NodeGroups"]
        for m in shard["NodeGroupMembers"]
        if m.get("CurrentRole") != "primary"
    ):
        out = ec.describe_cache_clusters(CacheClusterId=member)
        out.pop("ResponseMetadata")
        cluster = out["CacheClusters"][0]
        cluster["CacheClusterStatus"] = status.get(member, cluster["CacheClusterStatus"])
        answers.append(out)
    return answers


def answer(ec: Any, name: str, **changes: Any) -> dict[str, Any]:
    """moto's description of the group, with ``changes`` applied."""
    group = ec.describe_replication_groups(ReplicationGroupId=name)["ReplicationGroups"][0]
    group.update(changes)
    return group  # type: ignore[no-any-return]


@contextmanager
def stubbed(aws: AwsCaller) -> Iterator[Stubber]:
    """Stubber on the very client the operator's AwsCaller calls through."""
    with Stubber(aws.clients.get("elasticache", REGION, None)) as stub:
        yield stub
        stub.assert_no_pending_responses()


async def test_observe_counts_replicas_and_the_groups_bounds(aws: AwsCaller, boto: Any) -> None:
    ec = boto("elasticache")
    single_shard(ec, "sessions", 2)
    single_shard(ec, "ha-sessions", 1, failover=True)
    actuator = ElastiCacheActuator(aws, clock=LATER)

    cap = await actuator.observe(cache("sessions"))
    ha = await actuator.observe(cache("ha-sessions"))

    assert (cap.current, cap.ready, cap.minimum, cap.maximum, cap.busy) == (2, 2, 0, 5, None)
    assert (ha.current, ha.minimum) == (1, 1)  # automatic failover needs a replica


async def test_sharded_group_reports_each_shard_and_scales_the_chosen_one(
    aws: AwsCaller, boto: Any
) -> None:
    ec = boto("elasticache")
    sharded(ec, "catalog", {"0001": 1, "0002": 3})
    actuator = ElastiCacheActuator(aws)

    every = await actuator.observe(cache("catalog"))
    second = await actuator.observe(cache("catalog", "0002"))
    with pytest.raises(TargetNotFound, match="0003"):
        await actuator.observe(cache("catalog", "0003"))

    assert every.current == 1 and "0001: 1" in every.detail and "0002: 3" in every.detail
    assert second.current == 3
    with stubbed(aws) as stub:
        stub.add_response(
            "decrease_replica_count",
            {"ReplicationGroup": answer(ec, "catalog", Status="modifying")},
            {
                "ReplicationGroupId": "catalog",
                "ApplyImmediately": True,
                "ReplicaConfiguration": [{"NodeGroupId": "0002", "NewReplicaCount": 1}],
            },
        )
        out = await actuator.apply(cache("catalog", "0002"), 1, second)
    assert (out.requested, out.changed) == (1, True)


async def test_every_shard_is_brought_to_the_desired_count_growing_first(
    aws: AwsCaller, boto: Any
) -> None:
    ec = boto("elasticache")
    sharded(ec, "catalog", {"0001": 1, "0002": 3, "0003": 2})
    actuator = ElastiCacheActuator(aws)
    resource = cache("catalog")

    observed = await actuator.observe(resource)
    with stubbed(aws) as stub:
        stub.add_response(
            "increase_replica_count",
            {"ReplicationGroup": answer(ec, "catalog", Status="modifying")},
            {
                "ReplicationGroupId": "catalog",
                "ApplyImmediately": True,
                "ReplicaConfiguration": [{"NodeGroupId": "0001", "NewReplicaCount": 2}],
            },
        )
        out = await actuator.apply(resource, 2, observed)

    # One operation at a time: a DecreaseReplicaCount for shard 0002 as well would
    # have found no stubbed response and failed the apply.
    assert (out.requested, out.changed) == (2, True)


async def test_increase_sets_the_new_replica_count_and_clamps_to_five(
    aws: AwsCaller, boto: Any
) -> None:
    ec = boto("elasticache")
    single_shard(ec, "sessions", 1)
    actuator = ElastiCacheActuator(aws)
    resource = cache("sessions")

    same = await actuator.apply(resource, 1, await actuator.observe(resource))
    assert same.changed is False  # nothing sent: the Stubber is not even active

    observed = await actuator.observe(resource)
    with stubbed(aws) as stub:
        stub.add_response(
            "increase_replica_count",
            {"ReplicationGroup": answer(ec, "sessions", Status="modifying")},
            {"ReplicationGroupId": "sessions", "NewReplicaCount": 5, "ApplyImmediately": True},
        )
        out = await actuator.apply(resource, 7, observed)

    assert (out.requested, out.changed) == (5, True)
    assert out.clamped == "desired 7 clamped to ElastiCache's 5 replicas per shard"
    assert aws.clients.calls[DESCRIBE] == 2  # apply used observe's answer, read nothing again


async def test_decrease_keeps_the_replica_automatic_failover_needs(
    aws: AwsCaller, boto: Any
) -> None:
    ec = boto("elasticache")
    single_shard(ec, "sessions", 3, failover=True)
    actuator = ElastiCacheActuator(aws)
    resource = cache("sessions")

    observed = await actuator.observe(resource)
    with stubbed(aws) as stub:
        stub.add_response(
            "decrease_replica_count",
            {"ReplicationGroup": answer(ec, "sessions", Status="modifying")},
            {"ReplicationGroupId": "sessions", "NewReplicaCount": 1, "ApplyImmediately": True},
        )
        out = await actuator.apply(resource, 0, observed)

    assert (out.requested, out.changed) == (1, True)
    assert out.clamped is not None and "automatic failover" in out.clamped


async def test_busy_while_a_modification_is_pending(aws: AwsCaller, boto: Any) -> None:
    ec = boto("elasticache")
    single_shard(ec, "sessions", 1)
    actuator = ElastiCacheActuator(aws)
    resource = cache("sessions")

    with stubbed(aws) as stub:  # moto never shows this state: its answer, changed (see top)
        stub.add_response(
            "describe_replication_groups",
            {
                "ReplicationGroups": [
                    answer(
                        ec,
                        "sessions",
                        Status="modifying",
                        PendingModifiedValues={"AutomaticFailoverStatus": "enabled"},
                    )
                ]
            },
            {"ReplicationGroupId": "sessions"},
        )
        for member in cluster_answers(ec, "sessions", {}):
            stub.add_response("describe_cache_clusters", member)
        observed = await actuator.observe(resource)
        out = await actuator.apply(resource, 3, observed)  # sends nothing: no response queued

    assert observed.busy is not None and observed.busy.startswith(WAITING)
    assert "modifying" in observed.busy and "AutomaticFailoverStatus" in observed.busy
    assert out.changed is False and out.detail == observed.busy


async def test_busy_while_the_group_is_being_deleted(aws: AwsCaller, boto: Any) -> None:
    ec = boto("elasticache")
    single_shard(ec, "sessions", 1)
    ec.delete_replication_group(ReplicationGroupId="sessions")  # moto keeps it, "deleting"
    actuator = ElastiCacheActuator(aws)
    resource = cache("sessions")

    observed = await actuator.observe(resource)
    out = await actuator.apply(resource, 3, observed)

    assert observed.busy is not None and "deleting" in observed.busy
    assert out.changed is False
    assert aws.clients.calls[INCREASE] == 0


async def test_unknown_group_is_target_not_found(aws: AwsCaller) -> None:
    with pytest.raises(TargetNotFound, match="no-such-group"):
        await ElastiCacheActuator(aws).observe(cache("no-such-group"))


async def test_nodes_in_their_warm_up_are_starting_not_ready(aws: AwsCaller, boto: Any) -> None:
    ec = boto("elasticache")
    single_shard(ec, "sessions", 2)
    newest = created(ec, "sessions")
    resource = cache("sessions")  # no warmupSeconds: 600 s for a ReplicationGroup target

    early = await ElastiCacheActuator(aws, clock=at(newest + timedelta(seconds=599))).observe(
        resource
    )
    late_actuator = ElastiCacheActuator(aws, clock=at(newest + timedelta(seconds=600)))
    late = await late_actuator.observe(resource)
    calls = aws.clients.calls[DESCRIBE_CLUSTERS]
    again = await late_actuator.observe(resource)
    read_again = aws.clients.calls[DESCRIBE_CLUSTERS] - calls
    short = await ElastiCacheActuator(aws, clock=at(newest + timedelta(seconds=60))).observe(
        cache("sessions", warmup=60)
    )

    assert (early.current, early.ready, early.warming, early.starting) == (2, 0, 2, 2)
    assert early.warmup_seconds == 600
    assert "2 in warm-up (600 s, the default for ReplicationGroup targets)" in early.detail
    assert (late.current, late.ready, late.warming, late.starting) == (2, 2, 0, 0)
    assert calls == 2 * 2  # two actuators, two replicas each (the primary is not capacity)
    assert again == late and read_again == 0  # known nodes are not read again
    assert (short.ready, short.warmup_seconds) == (2, 60)


async def test_nodes_not_available_are_starting_and_deleting_ones_leaving(
    aws: AwsCaller, boto: Any
) -> None:
    ec = boto("elasticache")
    single_shard(ec, "sessions", 4)
    actuator = ElastiCacheActuator(aws, clock=LATER)
    status = {
        "sessions-003": "creating",
        "sessions-004": "rebooting cluster nodes",
        "sessions-005": "deleting",
    }

    # moto's nodes are always available: its own answers, statuses changed (see top)
    with stubbed(aws) as stub:
        stub.add_response(
            "describe_replication_groups",
            {"ReplicationGroups": [answer(ec, "sessions")]},
            {"ReplicationGroupId": "sessions"},
        )
        for member in cluster_answers(ec, "sessions", status):
            stub.add_response("describe_cache_clusters", member)
        cap = await actuator.observe(resource := cache("sessions"))

    # 4 replicas: 002 serves; 003 and 004 are starting; 005 is leaving (not capacity)
    assert (cap.current, cap.ready, cap.pending, cap.removing, cap.starting) == (3, 1, 2, 1, 2)
    assert "rebooting cluster nodes" in cap.detail
    # the nodes not yet ready are read again next time: now moto says available
    again = await actuator.observe(resource)
    assert (again.current, again.ready, again.removing) == (4, 4, 0)
    assert aws.clients.calls[DESCRIBE_CLUSTERS] == 3


async def test_the_fewest_ready_replicas_of_any_shard_are_ready(aws: AwsCaller, boto: Any) -> None:
    ec = boto("elasticache")
    sharded(ec, "catalog", {"0001": 2, "0002": 3})
    actuator = ElastiCacheActuator(aws, clock=LATER)

    with stubbed(aws) as stub:
        stub.add_response(
            "describe_replication_groups",
            {"ReplicationGroups": [answer(ec, "catalog")]},
            {"ReplicationGroupId": "catalog"},
        )
        for member in cluster_answers(ec, "catalog", {"catalog-0002-003": "creating"}):
            stub.add_response("describe_cache_clusters", member)
        cap = await actuator.observe(cache("catalog"))

    # shard 0001: 2 of 2 replicas ready; 0002: 2 of 3; the fewest replicas is 2 (0001)
    assert (cap.current, cap.ready, cap.starting) == (2, 2, 0)
    assert "0002: 3 replicas, 2 ready" in cap.detail
    second = await actuator.observe(cache("catalog", "0002"))
    assert (second.current, second.ready) == (3, 3)  # moto: available now


async def test_members_the_api_cannot_describe_are_starting(aws: AwsCaller, boto: Any) -> None:
    ec = boto("elasticache")
    single_shard(ec, "sessions", 2, clusters=False)  # moto's own group: members not created

    cap = await ElastiCacheActuator(aws, clock=LATER).observe(cache("sessions"))

    assert (cap.current, cap.ready, cap.starting) == (2, 0, 2)
    assert "not found" in cap.detail
