"""A crash between the AWS write and the status write (finding 5 of issue 10).

The operator runs with the failpoint ``after-apply``: it exits (status 137,
as if SIGKILLed) right after the change reached AWS and before it recorded
it. The status still holds ``pendingAction``, written before the change. The
restarted operator must recognise its own action (no OutOfBandChange), keep
the cooldown that started with it (no second scale-out on the same high
metric), and post the ScaledOut Event it owed. For an Auto Scaling group,
whose DesiredCapacity is a setpoint, and for RDS read replicas, a fleet
whose count only converges (on main, the restarted operator scaled out
again 5 s later).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import (
    API_VERSION,
    Aws,
    Kube,
    OperatorProcess,
    Recorder,
    condition,
    decision_counts,
    decisions_after,
    event_messages,
    eventually,
    suffix,
)
from tests.faults.specs import cpu_web_tier
from tests.integration.conftest import REGION

pytestmark = pytest.mark.controlplane

CRASH = {"STACKSCALER_FAILPOINTS": "after-apply"}


def crashed(op: OperatorProcess) -> int:
    assert op.proc is not None
    return op.proc.wait(timeout=120)


def behavior() -> dict[str, Any]:
    return {
        "scaleOut": {"cooldownSeconds": 600, "maxStep": {"units": 100}},
        "scaleIn": {"cooldownSeconds": 600, "stabilizationWindowSeconds": 600},
    }


def test_asg_action_survives_a_crash_before_it_was_recorded(
    *, aws: Aws, kube: Kube, operator: Any, recorder: Any, namespace: str
) -> None:
    group = f"web-{suffix()}"
    aws.group_with_template(group, desired=2, max_size=50)
    aws.cpu(group, 100.0)
    kube.apply(cpu_web_tier(namespace, "web", group))
    rec: Recorder = recorder("WebTier", namespace, "web", probe=lambda: aws.desired(group))
    op = operator(namespace, env=CRASH)
    assert crashed(op) == 137
    assert aws.desired(group) == 4  # the change reached AWS
    intent = kube.status("WebTier", namespace, "web")["pendingAction"]
    assert (intent["from"], intent["to"]) == (2, 4)
    assert "ScaledOut" not in kube.reasons("WebTier", namespace, "web")

    op = operator(namespace)  # the restart, without the failpoint

    def recovered() -> dict[str, Any]:
        status = kube.status("WebTier", namespace, "web")
        assert "pendingAction" not in status, status.get("pendingAction")
        assert status.get("appliedCapacity") == 4
        return status

    status = eventually(recovered, what="the restarted operator recorded its own action")
    assert status["lastScaleOutTime"] == intent["time"]
    owed = event_messages(kube, "WebTier", namespace, "web", "ScaledOut")
    assert len(owed) == 1 and "recorded after a restart" in owed[0], owed
    assert "OutOfBandChange" not in kube.reasons("WebTier", namespace, "web")
    assert condition(status, "Ready")["status"] == "True"
    # three more decisions, each held by the cooldown (counted by the operator: the
    # status is rewritten only when something material changes)
    web = ("WebTier", namespace, "web")
    held_from = time.time()
    mark = decision_counts(op, web, by="limited_by")
    later = decisions_after(op, web, mark, 3, by="limited_by", what="three ticks after the restart")
    assert set(later) == {"scaleOutCooldown"}, later
    assert rec.probed_since(held_from) == [4]
    assert aws.desired(group) == 4  # CPU still asks for 8: the cooldown holds
    assert not op.problems()


def rds_cpu(aws: Aws, source: str, value: float) -> None:
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    aws.cloudwatch.put_metric_data(
        Namespace="AWS/RDS",
        MetricData=[
            {
                "MetricName": "CPUUtilization",
                "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": source}],
                "Timestamp": start + timedelta(minutes=k, seconds=5),
                "Value": value,
                "Unit": "Percent",
            }
            for k in range(-6, 6)
        ],
    )


def test_replica_action_survives_a_crash_and_keeps_its_cooldown(
    *, aws: Aws, kube: Kube, operator: Any, recorder: Any, namespace: str
) -> None:
    source = f"db-{suffix()}"
    aws.postgres(source)
    aws.rds.create_db_instance_read_replica(  # one replica already serves
        DBInstanceIdentifier=f"{source}-manual", SourceDBInstanceIdentifier=source
    )
    rds_cpu(aws, source, 100.0)  # target 50: twice the replicas
    kube.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "ReadReplicaPool",
            "metadata": {"name": "readers", "namespace": namespace},
            "spec": {
                "target": {
                    "kind": "DBInstance",
                    "name": source,
                    "engine": "postgres",
                    "region": REGION,
                    "replicaTemplate": {"identifierPrefix": f"{source}-ro-"},
                },
                "minCapacity": 1,
                "maxCapacity": 5,
                "metrics": [
                    {
                        "name": "cpu",
                        "target": {"value": 50},
                        "cloudWatch": {
                            "namespace": "AWS/RDS",
                            "metricName": "CPUUtilization",
                            "dimensions": [{"name": "DBInstanceIdentifier", "value": source}],
                        },
                    }
                ],
                "behavior": behavior(),
                "pollIntervalSeconds": 5,
                "warmupSeconds": 0,  # moto's instances serve at once: no warm-up to wait for
            },
        }
    )
    rec: Recorder = recorder(
        "ReadReplicaPool", namespace, "readers", probe=lambda: len(aws.replicas_of(source))
    )
    op = operator(namespace, env=CRASH)
    assert crashed(op) == 137
    assert len(aws.replicas_of(source)) == 2  # one replica was created
    intent = kube.status("ReadReplicaPool", namespace, "readers")["pendingAction"]
    assert (intent["from"], intent["to"]) == (1, 2)

    op = operator(namespace)

    def recovered() -> dict[str, Any]:
        status = kube.status("ReadReplicaPool", namespace, "readers")
        assert "pendingAction" not in status
        assert status.get("lastScaleOutTime") == intent["time"]
        return status

    eventually(recovered, what="the restarted operator recorded its own action")
    owed = event_messages(kube, "ReadReplicaPool", namespace, "readers", "ScaledOut")
    assert len(owed) == 1 and "recorded after a restart" in owed[0], owed
    readers = ("ReadReplicaPool", namespace, "readers")
    held_from = time.time()
    mark = decision_counts(op, readers, by="limited_by")
    later = decisions_after(
        op, readers, mark, 3, by="limited_by", what="three ticks after the restart"
    )
    assert set(later) == {"scaleOutCooldown"}, later
    assert rec.probed_since(held_from) == [2]
    assert len(aws.replicas_of(source)) == 2  # CPU asks for 4: the cooldown holds
    assert not op.problems()
