"""Replica lifecycle: tagged replicas, counted while creating, only its own deleted, one by one.

moto cannot evaluate the pool's CloudWatch SEARCH expression, so its metric is
unknown throughout: the replica count is driven by the bounds, which win even
while metrics are unknown (and even inside stack.yaml's 30-minute scale-in
cooldown).

moto makes a replica ``available`` the moment it is created; RDS takes many
minutes. The operator's AWS calls go through a proxy that reports the pool's
replicas as ``creating`` (moto's answer, that one field changed) until the
test lets them finish: meanwhile they count as capacity and nothing more is
ordered.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from tests.conftest import example
from tests.e2e.conftest import (
    WAIT,
    Aws,
    Kube,
    Recorder,
    Tick,
    assert_spec_untouched,
    condition,
    decided,
    decision_probe,
    decisions_logged,
    event_messages,
    eventually,
    generations,
    suffix,
    tags,
)
from tests.faults.support import ScriptedProxy
from tests.integration.conftest import REGION

pytestmark = pytest.mark.controlplane

OWNER_UID, OWNER = "stackscaler.dev/owner-uid", "stackscaler.dev/owner"


def test_replica_pool_creates_tagged_replicas_and_deletes_only_its_own_one_per_tick(
    *,
    aws: Aws,
    kube: Kube,
    operator: Any,
    recorder: Any,
    namespace: str,
    aws_proxy: ScriptedProxy,
) -> None:
    source = f"db-{suffix()}"
    prefix = f"{source}-ro-"
    aws.postgres(source)
    pool = example("ReadReplicaPool")  # stack.yaml's shop-db-readers, on this test's source
    pool["metadata"]["namespace"] = namespace
    name = pool["metadata"]["name"]
    pool["spec"]["target"]["name"] = source
    pool["spec"]["target"]["replicaTemplate"]["identifierPrefix"] = prefix
    pool["spec"]["minCapacity"] = 3
    pool["spec"]["pollIntervalSeconds"] = 5
    kube.apply(pool)
    uid = kube.get("ReadReplicaPool", namespace, name)["metadata"]["uid"]
    rec: Recorder = recorder(
        "ReadReplicaPool", namespace, name, probe=lambda: frozenset(aws.replicas_of(source))
    )
    aws_proxy.creating.add(prefix)  # RDS takes minutes to create a replica
    op = operator(namespace, env={"STACKSCALER_AWS_ENDPOINT_URL": aws_proxy.endpoint})

    # up to minCapacity: three replicas, tagged, from the template, spread over the zones
    def three() -> dict[str, dict[str, Any]]:
        made = aws.replicas_of(source)
        assert len(made) == 3, sorted(made)
        return made

    own = eventually(three, what="three replicas of the source")
    for ident, replica in own.items():
        assert ident.startswith(prefix)
        assert tags(replica)[OWNER_UID] == uid
        assert tags(replica)[OWNER] == f"{namespace}/{name}"
        assert replica["DBInstanceClass"] == "db.r6g.large"
    zones = sorted(r["AvailabilityZone"] for r in own.values())
    assert zones == [f"{REGION}a", f"{REGION}b", f"{REGION}c"]
    first = rec.wait_ticks(1, after=0, what="the first decision")[0]
    assert (first.current, first.desired, first.limited_by) == (0, 3, "minCapacity")
    assert first.metric("replica-cpu")["state"] != "Known"
    assert condition(first.status, "MetricsAvailable")["status"] == "False"
    assert [
        m.split(":")[0]
        for m in event_messages(kube, "ReadReplicaPool", namespace, name, "ScaledOut")
    ] == ["0 -> 3"]

    # still creating: they count as capacity, and nothing more is ordered. A status is
    # written while the unknown metric's failures count up to the threshold (3); after
    # that nothing material changes, and the next ticks are read from /metrics
    creating = rec.wait_ticks(3, after=0, what="two ticks while the replicas create")
    for t in creating[1:]:
        assert (t.current, t.desired, t.direction) == (3, 3, "None"), t.decision
    log = recorder(
        "ReadReplicaPool",
        namespace,
        name,
        probe=decision_probe(op, "ReadReplicaPool", namespace, name),
    )
    more = decisions_logged(log, 2, what="two more ticks while the replicas create")
    assert all((d.current, d.desired) == (3, 3) for d in more), more
    assert aws_proxy.rewritten >= 3 * 3  # the operator saw each of them creating, each tick
    assert aws_proxy.forwarded["CreateDBInstanceReadReplica"] == 3
    assert set(aws.replicas_of(source)) == set(own)
    aws_proxy.creating.clear()  # created

    # a replica made by hand, with the pool's own prefix but without its tags
    foreign = f"{prefix}manual"
    aws.rds.create_db_instance_read_replica(
        DBInstanceIdentifier=foreign, SourceDBInstanceIdentifier=source
    )
    arrived = time.time()

    def sees_foreign() -> Tick:
        seen = [t for t in rec.since(arrived) if t.current == 4]
        assert seen, "no tick has counted the foreign replica yet"
        return seen[0]

    seen = eventually(sees_foreign, what="a tick that counts the foreign replica")
    assert (seen.desired, seen.direction) == (4, "None")  # within [3, 5]: kept

    # bounds lowered to [0, 1]: only its own go, one per tick; never the source or the foreign one
    kube.merge_patch(
        "ReadReplicaPool", namespace, name, {"spec": {"minCapacity": 0, "maxCapacity": 1}}
    )
    lowered = time.time()
    before = generations(kube, namespace, [("ReadReplicaPool", name)])

    def only_foreign_left() -> None:
        assert set(aws.replicas_of(source)) == {foreign}

    eventually(only_foreign_left, what="every own replica deleted")
    done = time.time()

    # the metric is still unknown past the threshold, so holding at 1 may write no status:
    # the ticks are read from /metrics
    def settled() -> None:
        last = [d for d in decided(log) if d.time > done][-2:]
        assert len(last) == 2 and all(
            (d.current, d.desired, d.direction) == (1, 1, "None") for d in last
        ), last

    eventually(settled, what="two ticks holding the foreign replica only", timeout=WAIT + 20)

    assert source in aws.instances()
    assert set(aws.replicas_of(source)) == {foreign}
    sets = rec.probed_since(lowered)
    assert sets[0] == frozenset(own) | {foreign}, sets
    for bigger, smaller in itertools.pairwise(sets):
        gone = bigger - smaller
        assert smaller < bigger and len(gone) == 1 and gone <= set(own), sets
    shrinking = [t for t in rec.since(lowered) if t.direction == "In"]
    assert [(t.current, t.desired) for t in shrinking] == [(4, 1), (3, 1), (2, 1)]
    assert all(t.limited_by == "maxCapacity" for t in shrinking)
    assert len(event_messages(kube, "ReadReplicaPool", namespace, name, "ScaledIn")) == 3
    assert_spec_untouched(kube, namespace, [("ReadReplicaPool", name)], before)
    assert not op.problems()
