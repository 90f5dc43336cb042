"""A tier source end to end: `stackscaler run` on the real API server and moto.

A WebTier on an Auto Scaling group reads its CPU from CloudWatch; a ReadReplicaPool
of an RDS PostgreSQL instance follows that metric as the web tier last observed it
(one replica per 30 % of web CPU). The pool's desired capacity comes from the web
tier's observation, and the replicas are created in RDS: the pool never reads a
CPU of its own.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.conftest import EXAMPLES, load_docs
from tests.e2e.conftest import Aws, Kube, condition, cpu_web_tier, eventually, suffix

pytestmark = pytest.mark.controlplane


def test_a_read_replica_pool_follows_the_web_tiers_observed_cpu(
    aws: Aws, kube: Kube, operator: Any, namespace: str
) -> None:
    group, source = f"web-{suffix()}", f"db-{suffix()}"
    aws.group_with_template(group, desired=2, max_size=10)
    aws.cpu(group, 90.0)
    aws.postgres(source)

    web = cpu_web_tier(namespace, group, maxCapacity=6, pollIntervalSeconds=5, warmupSeconds=0)
    pool = load_docs(EXAMPLES / "readreplicapool-follows-web.yaml")[0]
    pool["metadata"]["namespace"] = namespace
    spec = pool["spec"]
    spec["target"] = {"kind": "DBInstance", "name": source, "engine": "postgres"}
    spec["metrics"] = [
        {
            "name": "web-cpu",
            "tier": {"kind": "WebTier", "name": "web", "value": "Metric", "metric": "cpu"},
            "target": {"type": "AverageValue", "value": 30},
        }
    ]
    spec.update(
        pollIntervalSeconds=5,
        warmupSeconds=0,
        behavior={"scaleOut": {"cooldownSeconds": 0, "maxStep": {"units": 10}}},
    )
    kube.apply(web, pool)
    op = operator(namespace)

    seen: set[str] = set()  # every sample time the web tier's status has shown

    def followed() -> tuple[dict[str, Any], dict[str, Any]]:
        web_status = kube.status("WebTier", namespace, "web")
        assert "lastDecision" in web_status, "the web tier has not decided yet"
        theirs = web_status["lastDecision"]["metrics"][0]
        seen.add(theirs["time"])
        status = kube.status("ReadReplicaPool", namespace, "catalog-readers")
        assert "lastDecision" in status, "the pool has not decided yet"
        mine = status["lastDecision"]["metrics"][0]
        assert mine.get("state") == "Known", status.get("conditions")
        assert status["desiredCapacity"] == math.ceil(90 / 30), status["lastDecision"]
        # The web tier's sample, not a read of its own. The web tier's status may already
        # show the next minute's sample (each is written apart, the pool's not every tick):
        # the pool's must be one the web tier's status has shown.
        assert mine["time"] in seen, (mine, sorted(seen))
        return theirs, mine

    theirs, mine = eventually(followed, what="the pool's desired capacity from the web's CPU")
    assert theirs["name"] == "cpu" and theirs["value"] == 90
    assert (mine["name"], mine["value"]) == ("web-cpu", theirs["value"])

    def three_replicas() -> None:
        assert len(aws.replicas_of(source)) == 3, sorted(aws.replicas_of(source))

    eventually(three_replicas, what="three read replicas in RDS")
    ready = condition(kube.status("ReadReplicaPool", namespace, "catalog-readers"), "Ready")
    assert ready["status"] == "True"
    assert not op.problems()
