"""RDS read replicas and Aurora readers against moto in server mode (real HTTP on loopback).

moto 5.2.5 makes every DB instance ``available`` the moment it is created and
removes it the moment it is deleted, so it never shows a replica ``creating``
or ``deleting``. Where a test needs those states, the DescribeDBInstances
answers (and only those) are moto's own answers with the status changed,
served by botocore's Stubber on the client the operator uses. While the
Stubber is active any other call is an error, so a create or delete there
would fail the test; calls it answers are not in the AwsCaller's counter.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber

from stackscaler.actuators.base import Capacity
from stackscaler.actuators.rds_replicas import (
    OWNER_TAG,
    OWNER_UID_TAG,
    AuroraReaderActuator,
    RdsReplicaActuator,
    replica_identifier,
)
from stackscaler.aws import AwsCaller, AwsSettings, RateLimit
from stackscaler.errors import InvalidSpec, PermanentError, TargetNotFound
from stackscaler.model.spec import Resource, parse_resource
from tests.integration.conftest import REGION, MotoServer

CREATE_REPLICA = ("rds", "CreateDBInstanceReadReplica")
CREATE_INSTANCE = ("rds", "CreateDBInstance")
DELETE = ("rds", "DeleteDBInstance")
UID = "0f6c1b9e-5a43-4f6e-9d51-0c2d4e0a7b11"
VALID_ID = re.compile(r"^[a-z](?!.*--)[a-z0-9-]{0,61}[a-z0-9]$")


def at(moment: datetime) -> Callable[[], datetime]:
    """A clock stopped at ``moment``: the actuator's idea of now, injected."""
    return lambda: moment


LATER = at(datetime.now(UTC) + timedelta(days=1))
"""Long after every replica a test creates: each available one is past its warm-up."""


@pytest.fixture
async def aws(moto: MotoServer) -> AsyncIterator[AwsCaller]:
    """The operator's caller pointed at moto, with a roomy RDS token bucket.

    These tests make more calls than the default burst of 10; waiting for
    tokens would only slow them down (the buckets have their own tests).
    """
    caller = AwsCaller(
        AwsSettings(
            default_region=REGION,
            endpoint_url=moto.endpoint,
            limits={"rds": RateLimit(rate=1000.0, burst=1000)},
        )
    )
    try:
        yield caller
    finally:
        caller.close()


def pool(
    target: dict[str, Any], *, max_capacity: int = 5, uid: str = UID, warmup: int | None = None
) -> Resource:
    spec: dict[str, Any] = {
        "target": {"region": REGION, **target},
        "minCapacity": 0,
        "maxCapacity": max_capacity,
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
            "kind": "ReadReplicaPool",
            "metadata": {"name": "readers", "namespace": "shop", "uid": uid},
            "spec": spec,
        }
    )


def source(rds: Any, name: str = "shop-db", engine: str = "postgres") -> None:
    rds.create_db_instance(
        DBInstanceIdentifier=name,
        Engine=engine,
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="shop",
        MasterUserPassword="not-a-secret-1",
    )


def instances(rds: Any, **params: Any) -> dict[str, dict[str, Any]]:
    return {
        d["DBInstanceIdentifier"]: d for d in rds.describe_db_instances(**params)["DBInstances"]
    }


def replicas_of(rds: Any, name: str) -> dict[str, dict[str, Any]]:
    ids = instances(rds, DBInstanceIdentifier=name)[name]["ReadReplicaDBInstanceIdentifiers"]
    return {i: d for i, d in instances(rds).items() if i in ids}


def tags(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("TagList", ())}


def moto_answers(rds: Any, name: str, status: dict[str, str]) -> list[dict[str, Any]]:
    """moto's answers to the operator's two describes, with replica statuses changed."""
    src = rds.describe_db_instances(DBInstanceIdentifier=name)
    ids = src["DBInstances"][0]["ReadReplicaDBInstanceIdentifiers"]
    reps = rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": ids}])
    for d in reps["DBInstances"]:
        d["DBInstanceStatus"] = status.get(d["DBInstanceIdentifier"], d["DBInstanceStatus"])
    for answer in (src, reps):
        answer.pop("ResponseMetadata")
    return [src, reps]


def test_identifiers_are_valid_rds_identifiers() -> None:
    for prefix in ("shop-db-ro-", "Shop--DB", "x" * 60 + "-", "a", "9lives-"):
        ident = replica_identifier(prefix, taken=())
        assert VALID_ID.match(ident) and len(ident) <= 63, ident
    assert replica_identifier("shop-db-ro-", ()).startswith("shop-db-ro-")


async def test_scale_out_creates_tagged_replicas_from_the_template(
    aws: AwsCaller, boto: Any
) -> None:
    rds = boto("rds")
    source(rds)
    rds.create_db_parameter_group(
        DBParameterGroupName="replicas", DBParameterGroupFamily="postgres16", Description="r"
    )
    resource = pool(
        {
            "kind": "DBInstance",
            "name": "shop-db",
            "engine": "postgres",
            "replicaTemplate": {
                "instanceClass": "db.r6g.large",
                "identifierPrefix": "shop-db-ro-",
                "availabilityZones": [f"{REGION}a", f"{REGION}b", f"{REGION}c"],
                "parameterGroupName": "replicas",
                "tags": [{"key": "team", "value": "shop"}],
            },
        }
    )
    actuator = RdsReplicaActuator(aws)

    before = await actuator.observe(resource)
    assert (before.current, before.maximum) == (0, 15)
    out = await actuator.apply(resource, 2, before)

    assert (out.requested, out.changed, out.clamped) == (2, True, None)
    assert aws.clients.calls[CREATE_REPLICA] == 2
    made = replicas_of(rds, "shop-db")
    assert len(made) == 2
    for ident, rep in made.items():
        assert re.fullmatch(r"shop-db-ro-[a-z0-9]{5}", ident)
        assert tags(rep) == {OWNER_UID_TAG: UID, OWNER_TAG: "shop/readers", "team": "shop"}
        assert rep["DBInstanceClass"] == "db.r6g.large"
        assert rep["DBParameterGroups"][0]["DBParameterGroupName"] == "replicas"
    assert sorted(r["AvailabilityZone"] for r in made.values()) == [f"{REGION}a", f"{REGION}b"]
    after = await actuator.observe(resource)
    # available at once in moto, but just created: in their warm-up, so starting
    assert (after.current, after.ready, after.warming, after.pending) == (2, 0, 2, 0)
    assert "shop-db" in instances(rds)  # the source is untouched


async def test_replicas_still_creating_count_as_pending_and_are_not_ordered_twice(
    aws: AwsCaller, boto: Any
) -> None:
    rds = boto("rds")
    source(rds)
    resource = pool({"kind": "DBInstance", "name": "shop-db", "engine": "postgres"})
    actuator = RdsReplicaActuator(aws)
    await actuator.apply(resource, 2, await actuator.observe(resource))
    made = replicas_of(rds, "shop-db")
    assert all(re.fullmatch(r"shop-db-ro-[a-z0-9]{5}", i) for i in made)  # the default prefix
    assert {r["DBInstanceClass"] for r in made.values()} == {"db.t3.micro"}  # the source's
    creating = dict.fromkeys(made, "creating")

    # moto has no "creating" state: its own describe answers, statuses changed (see top).
    with Stubber(aws.clients.get("rds", REGION, None)) as stub:
        for answer in moto_answers(rds, "shop-db", creating):  # observe
            stub.add_response("describe_db_instances", answer)
        observed = await actuator.observe(resource)
        again = await actuator.apply(resource, 2, observed)  # the same desired: no call at all
        stale = Capacity(current=0, ready=0, maximum=15)
        for answer in moto_answers(rds, "shop-db", creating):  # apply re-reads the replicas
            stub.add_response("describe_db_instances", answer)
        from_stale = await actuator.apply(resource, 2, stale)
        stub.assert_no_pending_responses()

    assert (observed.current, observed.ready, observed.pending) == (2, 0, 2)
    assert again.changed is False and from_stale.changed is False
    assert aws.clients.calls[CREATE_REPLICA] == 2  # the first two; none since


async def test_scale_in_deletes_only_its_own_replicas_one_per_apply(
    aws: AwsCaller, boto: Any
) -> None:
    rds = boto("rds")
    source(rds)
    rds.create_db_instance_read_replica(
        DBInstanceIdentifier="reporting", SourceDBInstanceIdentifier="shop-db"
    )  # made by hand: no owner tags
    resource = pool({"kind": "DBInstance", "name": "shop-db", "engine": "postgres"})
    actuator = RdsReplicaActuator(aws)

    grown = await actuator.apply(resource, 3, await actuator.observe(resource))
    assert grown.changed and aws.clients.calls[CREATE_REPLICA] == 2  # 3 - the foreign one
    own = set(replicas_of(rds, "shop-db")) - {"reporting"}
    assert len(own) == 2

    seen = []
    for _ in range(3):
        observed = await actuator.observe(resource)
        out = await actuator.apply(resource, 0, observed)
        seen.append((observed.current, out.changed, aws.clients.calls[DELETE]))

    assert seen == [(3, True, 1), (2, True, 2), (1, False, 2)]
    assert "never deleted" in out.detail
    left = instances(rds)
    assert set(left) == {"shop-db", "reporting"}


async def test_scale_in_waits_while_one_of_its_replicas_is_being_deleted(
    aws: AwsCaller, boto: Any
) -> None:
    rds = boto("rds")
    source(rds)
    resource = pool({"kind": "DBInstance", "name": "shop-db", "engine": "postgres"})
    actuator = RdsReplicaActuator(aws, clock=LATER)
    await actuator.apply(resource, 2, await actuator.observe(resource))
    first, _ = sorted(replicas_of(rds, "shop-db"))

    # moto deletes at once and never shows "deleting": its answers, one status changed.
    with Stubber(aws.clients.get("rds", REGION, None)) as stub:
        for _ in range(2):  # observe, then apply re-reads
            for answer in moto_answers(rds, "shop-db", {first: "deleting"}):
                stub.add_response("describe_db_instances", answer)
        observed = await actuator.observe(resource)
        out = await actuator.apply(resource, 0, observed)
        stub.assert_no_pending_responses()

    assert (observed.current, observed.ready, observed.removing) == (1, 1, 1)
    assert out.changed is False and first in out.detail
    assert aws.clients.calls[DELETE] == 0
    assert len(replicas_of(rds, "shop-db")) == 2


async def test_oracle_allows_five_replicas(aws: AwsCaller, boto: Any) -> None:
    rds = boto("rds")
    source(rds, "erp-db", engine="oracle-ee")
    target = {"kind": "DBInstance", "name": "erp-db", "engine": "oracle"}
    with pytest.raises(InvalidSpec, match="at most 5"):
        pool(target, max_capacity=6)
    resource = pool(target, max_capacity=5)
    actuator = RdsReplicaActuator(aws)

    observed = await actuator.observe(resource)
    out = await actuator.apply(resource, 7, observed)

    assert observed.maximum == 5
    assert (out.requested, out.changed) == (5, True)
    assert out.clamped == "desired 7 clamped to the oracle limit of 5 read replicas per source"
    assert len(replicas_of(rds, "erp-db")) == 5


async def test_engine_mismatch_is_a_permanent_error_that_explains(
    aws: AwsCaller, boto: Any
) -> None:
    source(boto("rds"), "shop-db", engine="mysql")
    resource = pool({"kind": "DBInstance", "name": "shop-db", "engine": "postgres"})

    with pytest.raises(PermanentError) as info:
        await RdsReplicaActuator(aws).observe(resource)

    assert not isinstance(info.value, TargetNotFound)
    message = str(info.value)
    assert "mysql" in message and "postgres" in message and "target.engine" in message


async def test_unknown_source_is_target_not_found(aws: AwsCaller) -> None:
    resource = pool({"kind": "DBInstance", "name": "no-such-db", "engine": "postgres"})
    with pytest.raises(TargetNotFound, match="no-such-db"):
        await RdsReplicaActuator(aws).observe(resource)


async def test_available_replicas_in_their_warm_up_are_starting_not_ready(
    aws: AwsCaller, boto: Any
) -> None:
    rds = boto("rds")
    source(rds)
    resource = pool({"kind": "DBInstance", "name": "shop-db", "engine": "postgres"})
    actuator = RdsReplicaActuator(aws)
    await actuator.apply(resource, 2, await actuator.observe(resource))
    created = max(d["InstanceCreateTime"] for d in replicas_of(rds, "shop-db").values())

    def observe(seconds: int, res: Resource = resource) -> Any:
        return RdsReplicaActuator(aws, clock=at(created + timedelta(seconds=seconds))).observe(res)

    early = await observe(599)  # the default warm-up of a DBInstance target: 600 s
    late = await observe(600)
    target = {"kind": "DBInstance", "name": "shop-db", "engine": "postgres"}
    short = await observe(60, pool(target, warmup=60))

    assert (early.current, early.ready, early.warming, early.starting) == (2, 0, 2, 2)
    assert early.warmup_seconds == 600
    assert "2 in warm-up (600 s, the default for DBInstance targets)" in early.detail
    assert (late.current, late.ready, late.warming, late.starting) == (2, 2, 0, 0)
    assert (short.ready, short.warmup_seconds) == (2, 60)


async def test_replicas_being_created_or_changed_are_starting_beside_warm_ones(
    aws: AwsCaller, boto: Any
) -> None:
    rds = boto("rds")
    source(rds)
    resource = pool({"kind": "DBInstance", "name": "shop-db", "engine": "postgres"})
    actuator = RdsReplicaActuator(aws, clock=LATER)
    await actuator.apply(resource, 4, await actuator.observe(resource))
    a, b, c, _ = sorted(replicas_of(rds, "shop-db"))

    # moto has no such states: its own answers, three statuses changed (see top).
    changed = {a: "creating", b: "modifying", c: "deleting"}
    with Stubber(aws.clients.get("rds", REGION, None)) as stub:
        for answer in moto_answers(rds, "shop-db", changed):
            stub.add_response("describe_db_instances", answer)
        cap = await actuator.observe(resource)
        stub.assert_no_pending_responses()

    # current: the available one and the two being created or changed; the one
    # being deleted is leaving, not capacity
    assert (cap.current, cap.ready, cap.pending, cap.warming, cap.removing) == (3, 1, 2, 0, 1)
    assert cap.starting == 2


def aurora(rds: Any) -> None:
    rds.create_db_cluster(
        DBClusterIdentifier="shop-aurora",
        Engine="aurora-postgresql",
        MasterUsername="shop",
        MasterUserPassword="not-a-secret-1",
    )
    for ident in ("shop-aurora-writer", "analytics"):  # the writer first, then a foreign reader
        rds.create_db_instance(
            DBInstanceIdentifier=ident,
            DBClusterIdentifier="shop-aurora",
            Engine="aurora-postgresql",
            DBInstanceClass="db.r6g.large",
        )


async def test_aurora_readers_are_added_and_removed(aws: AwsCaller, boto: Any) -> None:
    rds = boto("rds")
    aurora(rds)
    resource = pool(
        {
            "kind": "DBCluster",
            "name": "shop-aurora",
            "replicaTemplate": {"promotionTier": 2, "availabilityZones": [f"{REGION}b"]},
        }
    )
    actuator = AuroraReaderActuator(aws)

    observed = await actuator.observe(resource)
    assert (observed.current, observed.maximum, observed.busy) == (1, 15, None)
    out = await actuator.apply(resource, 3, observed)

    assert out.changed and aws.clients.calls[CREATE_INSTANCE] == 2
    members = rds.describe_db_clusters(DBClusterIdentifier="shop-aurora")["DBClusters"][0][
        "DBClusterMembers"
    ]
    writers = [m["DBInstanceIdentifier"] for m in members if m["IsClusterWriter"]]
    assert writers == ["shop-aurora-writer"]
    cluster = instances(rds, Filters=[{"Name": "db-cluster-id", "Values": ["shop-aurora"]}])
    new = {i: d for i, d in cluster.items() if i not in ("shop-aurora-writer", "analytics")}
    assert len(new) == 2
    for ident, reader in new.items():
        assert re.fullmatch(r"shop-aurora-ro-[a-z0-9]{5}", ident)
        assert tags(reader) == {OWNER_UID_TAG: UID, OWNER_TAG: "shop/readers"}
        assert reader["PromotionTier"] == 2
        assert reader["DBInstanceClass"] == "db.r6g.large"  # the writer's
        assert reader["Engine"] == "aurora-postgresql"
        assert reader["AvailabilityZone"] == f"{REGION}b"
    assert (await actuator.observe(resource)).current == 3

    for _ in range(3):
        await actuator.apply(resource, 0, await actuator.observe(resource))

    assert aws.clients.calls[DELETE] == 2  # its two readers, one per apply
    left = instances(rds, Filters=[{"Name": "db-cluster-id", "Values": ["shop-aurora"]}])
    assert set(left) == {"shop-aurora-writer", "analytics"}


async def test_aurora_readers_in_their_warm_up_are_starting(aws: AwsCaller, boto: Any) -> None:
    rds = boto("rds")
    aurora(rds)
    resource = pool({"kind": "DBCluster", "name": "shop-aurora"})
    await AuroraReaderActuator(aws).apply(
        resource, 2, await AuroraReaderActuator(aws).observe(resource)
    )
    cluster = instances(rds, Filters=[{"Name": "db-cluster-id", "Values": ["shop-aurora"]}])
    foreign = cluster["analytics"]["InstanceCreateTime"]
    newest = max(d["InstanceCreateTime"] for d in cluster.values())

    early = await AuroraReaderActuator(aws, clock=at(newest + timedelta(seconds=10))).observe(
        resource
    )
    late = await AuroraReaderActuator(aws, clock=at(newest + timedelta(seconds=600))).observe(
        resource
    )

    # the writer is no reader; "analytics" (made by hand) warms up like any reader
    assert newest - foreign < timedelta(seconds=590)
    assert (early.current, early.ready, early.warming) == (2, 0, 2)
    assert (late.current, late.ready, late.warming) == (2, 2, 0)


async def test_aurora_cluster_without_a_writer_gets_no_reader(aws: AwsCaller, boto: Any) -> None:
    rds = boto("rds")
    rds.create_db_cluster(
        DBClusterIdentifier="headless",
        Engine="aurora-mysql",
        MasterUsername="shop",
        MasterUserPassword="not-a-secret-1",
    )
    # moto reports a new cluster "creating" to the first describe, "available" after.
    rds.describe_db_clusters(DBClusterIdentifier="headless")
    resource = pool({"kind": "DBCluster", "name": "headless"})
    actuator = AuroraReaderActuator(aws)

    observed = await actuator.observe(resource)
    out = await actuator.apply(resource, 2, observed)

    assert observed.busy is not None and "no writer" in observed.busy
    assert out.changed is False
    assert aws.clients.calls[CREATE_INSTANCE] == 0


async def test_unknown_cluster_is_target_not_found(aws: AwsCaller) -> None:
    resource = pool({"kind": "DBCluster", "name": "no-such-cluster"})
    with pytest.raises(TargetNotFound, match="no-such-cluster"):
        await AuroraReaderActuator(aws).observe(resource)
