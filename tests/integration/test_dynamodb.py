"""The DynamoDB actuator (TableCapacity) against moto in server mode, on loopback.

moto 5.2.5 applies UpdateTable at once and without limit: no UPDATING state,
no decrease budget, no NumberOfDecreasesToday. Where a test needs those, it
goes through :class:`~tests.integration.dynamodb_rules.DynamoDbRules`, a thin
proxy that forwards to moto and enforces them as AWS does (its docstring says
how). The refused decrease is followed through the reconciler, with the real
CloudWatch source on moto and in-memory status and Events (the Kubernetes side
is not what is tested here).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stackscaler.actuators.base import Capacity
from stackscaler.actuators.dynamodb import DynamoDbActuator
from stackscaler.aws import AwsCaller
from stackscaler.aws.clients import AwsSettings
from stackscaler.errors import DecreaseRefused, PermanentError, TargetNotFound
from stackscaler.metrics.registry import MetricSources
from stackscaler.model.spec import Resource, parse_resource
from stackscaler.reconcile import Reconciler
from tests.integration.conftest import REGION, MotoServer
from tests.integration.dynamodb_rules import DynamoDbRules
from tests.unit.test_reconcile import Recorder

TABLE, INDEX = "shop-sessions", "by-user"


def table_doc(name: str, dimension: str, index: str | None = None, **spec: Any) -> dict[str, Any]:
    target: dict[str, Any] = {"kind": "Table", "name": TABLE, "dimension": dimension}
    if index:
        target["index"] = index
    return {
        "apiVersion": "stackscaler.dev/v1alpha1",
        "kind": "TableCapacity",
        "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}", "generation": 1},
        "spec": {"target": target, "minCapacity": 1, "maxCapacity": 1000, **spec},
    }


def table(name: str, dimension: str, index: str | None = None) -> Resource:
    return parse_resource(table_doc(name, dimension, index))


def create_table(boto: Any, *, on_demand: bool = False) -> None:
    extra: dict[str, Any] = (
        {"BillingMode": "PAY_PER_REQUEST"}
        if on_demand
        else {"ProvisionedThroughput": {"ReadCapacityUnits": 100, "WriteCapacityUnits": 50}}
    )
    gsi: dict[str, Any] = {
        "IndexName": INDEX,
        "KeySchema": [{"AttributeName": "user", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"},
    }
    if not on_demand:
        gsi["ProvisionedThroughput"] = {"ReadCapacityUnits": 40, "WriteCapacityUnits": 20}
    boto("dynamodb").create_table(
        TableName=TABLE,
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "user", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[gsi],
        **extra,
    )


def provisioned(boto: Any) -> dict[str | None, tuple[int, int]]:
    t = boto("dynamodb").describe_table(TableName=TABLE)["Table"]
    out: dict[str | None, tuple[int, int]] = {}
    for key, pt in [(None, t["ProvisionedThroughput"])] + [
        (g["IndexName"], g["ProvisionedThroughput"]) for g in t.get("GlobalSecondaryIndexes", ())
    ]:
        out[key] = (pt["ReadCapacityUnits"], pt["WriteCapacityUnits"])
    return out


@pytest.fixture
async def rules(moto: MotoServer) -> AsyncIterator[DynamoDbRules]:
    proxy = DynamoDbRules(moto.endpoint)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.fixture
async def ruled(rules: DynamoDbRules) -> AsyncIterator[AwsCaller]:
    """The operator's AWS caller, through the proxy that enforces AWS's rules."""
    caller = AwsCaller(AwsSettings(default_region=REGION, endpoint_url=rules.endpoint))
    try:
        yield caller
    finally:
        caller.close()


async def test_a_gsi_and_its_table_scale_independently(aws: AwsCaller, boto: Any) -> None:
    create_table(boto)
    act = DynamoDbActuator(aws)
    reads, writes, ix_reads = (
        table("sessions-read", "Read"),
        table("sessions-write", "Write"),
        table("by-user-read", "Read", INDEX),
    )
    aws.clients.calls.clear()
    seen = await asyncio.gather(*(act.observe(r) for r in (reads, writes, ix_reads)))
    assert [c.current for c in seen] == [100, 50, 40]
    assert aws.clients.calls[("dynamodb", "DescribeTable")] == 1  # one per table and tick
    assert all(c.busy is None and c.is_setpoint for c in seen)
    assert seen[0].decreases is not None and seen[0].decreases.decreases_today == 0

    up = await act.apply(ix_reads, 70, seen[2])
    assert (up.requested, up.changed) == (70, True)
    assert provisioned(boto) == {None: (100, 50), INDEX: (70, 20)}  # the table untouched
    down = await act.apply(reads, 30, seen[0])
    assert (down.requested, down.changed) == (30, True)
    assert provisioned(boto) == {None: (30, 50), INDEX: (70, 20)}  # the index untouched
    with pytest.raises(TargetNotFound, match="no global secondary index nope"):
        await act.observe(table("nope-read", "Read", "nope"))


async def test_read_and_write_changing_together_are_one_update_and_one_decrease(
    ruled: AwsCaller, rules: DynamoDbRules, boto: Any
) -> None:
    create_table(boto)
    act = DynamoDbActuator(ruled)
    reads, writes = table("sessions-read", "Read"), table("sessions-write", "Write")
    r, w = await asyncio.gather(act.observe(reads), act.observe(writes))
    done = await asyncio.gather(act.apply(reads, 20, r), act.apply(writes, 10, w))
    assert [(d.requested, d.changed) for d in done] == [(20, True), (10, True)]
    assert len(rules.updates) == 1
    assert rules.updates[0]["ProvisionedThroughput"] == {
        "ReadCapacityUnits": 20,
        "WriteCapacityUnits": 10,
    }
    assert provisioned(boto)[None] == (20, 10)
    r = await act.observe(reads)
    assert r.decreases is not None and r.decreases.decreases_today == 1  # one, not two


async def test_updating_is_busy_and_an_update_in_progress_is_tried_next_tick(
    ruled: AwsCaller, rules: DynamoDbRules, boto: Any
) -> None:
    create_table(boto)
    rules.updating_seconds = 3600.0
    act = DynamoDbActuator(ruled)
    reads, writes = table("sessions-read", "Read"), table("sessions-write", "Write")
    before = await act.observe(writes)  # ACTIVE: the write resource decides from this
    r = await act.observe(reads)
    assert (await act.apply(reads, 150, r)).changed
    now = await act.observe(reads)
    assert now.busy is not None and "UPDATING" in now.busy
    held = await act.apply(reads, 200, now)  # the reconciler never calls it busy; if it did
    assert not held.changed and len(rules.updates) == 1
    # an observation from before the update: the fresh describe right before sending sees it
    late = await act.apply(writes, 80, before)
    assert not late.changed and "UPDATING" in late.detail
    assert len(rules.updates) == 1 and provisioned(boto)[None] == (150, 50)


async def test_a_table_and_its_index_have_their_own_decrease_budget(
    ruled: AwsCaller, rules: DynamoDbRules, boto: Any
) -> None:
    create_table(boto)
    now = datetime.now(UTC).timestamp()
    rules.budget(TABLE).decreases.extend([now - 60] * 4)  # the table's four are spent
    act = DynamoDbActuator(ruled)
    reads, ix_reads = table("sessions-read", "Read"), table("by-user-read", "Read", INDEX)
    r, ix = await asyncio.gather(act.observe(reads), act.observe(ix_reads))
    assert r.decreases is not None and r.decreases.left(now) == 0
    assert ix.decreases is not None and ix.decreases.left(now) == 4
    assert (await act.apply(ix_reads, 10, ix)).changed
    assert provisioned(boto)[INDEX] == (10, 20)


async def test_a_missing_or_on_demand_table_is_permanent(aws: AwsCaller, boto: Any) -> None:
    create_table(boto, on_demand=True)
    act = DynamoDbActuator(aws)
    with pytest.raises(PermanentError, match="on-demand"):
        await act.observe(table("sessions-read", "Read"))
    boto("dynamodb").delete_table(TableName=TABLE)
    with pytest.raises(TargetNotFound, match=TABLE):
        await act.observe(table("sessions-read", "Read"))


class _One:
    """The registry's one method, answering with one actuator (its clock is the test's)."""

    def __init__(self, actuator: DynamoDbActuator) -> None:
        self.actuator = actuator

    def for_target(self, target: Any) -> DynamoDbActuator:
        return self.actuator

    async def close(self) -> None:
        await self.actuator.close()


async def test_a_decrease_refused_for_the_budget_is_reported_once_and_not_retried_in_a_loop(
    ruled: AwsCaller, rules: DynamoDbRules, boto: Any
) -> None:
    create_table(boto)
    # DynamoDB counts the day's decreases as spent; DescribeTable does not show them
    rules.budget(TABLE).spent_elsewhere = 27
    now = datetime.now(UTC)
    minute = now.replace(second=0, microsecond=0) - timedelta(minutes=2)
    boto("cloudwatch").put_metric_data(
        Namespace="AWS/DynamoDB",
        MetricData=[
            {
                "MetricName": "ConsumedReadCapacityUnits",
                "Timestamp": minute - timedelta(minutes=k),
                "Value": 600.0,  # 10 units per second -> ceil(10 / 0.7) = 15
                "Dimensions": [{"Name": "TableName", "Value": TABLE}],
            }
            for k in range(3)
        ],
    )
    clock = [now]
    actuator = DynamoDbActuator(ruled, clock=lambda: clock[0])
    sources, rec = MetricSources(ruled), Recorder()
    reconciler = Reconciler(
        sources,
        _One(actuator),  # type: ignore[arg-type]
        rec,
        rec,
        clock=lambda: clock[0],
    )
    doc = table_doc(
        "sessions-read",
        "Read",
        behavior={"scaleIn": {"stabilizationWindowSeconds": 0, "cooldownSeconds": 0}},
    )
    try:
        for _ in range(4):
            await reconciler.tick(copy.deepcopy(doc))
            if rec.statuses:
                doc["status"] = rec.statuses[-1]
            clock[0] += timedelta(seconds=30)
    finally:
        await sources.close()
    assert rules.refused["LimitExceededException"] == 1  # sent once, not once a tick
    assert rules.received["UpdateTable"] == 1
    assert [r for _, r, _ in rec.events].count("DecreaseRefused") == 1
    status = doc["status"]
    assert status["currentCapacity"] == 100 and status["desiredCapacity"] == 15
    assert status["decreases"] == {"today": 0, "left": 4}  # as DescribeTable says
    limited = next(c for c in status["conditions"] if c["type"] == "ScalingLimited")
    assert limited["status"] == "True" and "refused a decrease" in limited["message"]
    assert provisioned(boto)[None] == (100, 50)

    # an increase still goes meanwhile; the decrease is sent again once the next is earned
    seen = await actuator.observe(table("sessions-read", "Read"))
    assert (await actuator.apply(table("sessions-read", "Read"), 120, seen)).changed
    rules.budget(TABLE).spent_elsewhere = 0
    clock[0] += timedelta(hours=1)
    seen = await actuator.observe(table("sessions-read", "Read"))
    assert (await actuator.apply(table("sessions-read", "Read"), 15, seen)).changed
    assert provisioned(boto)[None] == (15, 50)
    assert rules.received["UpdateTable"] == 3


def test_capacity_carries_no_budget_for_other_targets() -> None:
    assert Capacity(3, 3).decreases is None
    assert issubclass(DecreaseRefused, PermanentError)
