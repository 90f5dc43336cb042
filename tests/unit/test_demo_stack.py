"""The demo's overrides of examples/stack.yaml: valid, listed, and only what the demo needs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stackscaler.demo.stack import (
    DEMO_NAMESPACE,
    MetricId,
    StackFacts,
    demo_stack,
    is_custom_resource,
)
from stackscaler.model.spec import parse_resource
from stackscaler.model.validation import validate_document
from tests.conftest import EXAMPLES, load_docs


@pytest.fixture
def docs() -> list[dict[str, Any]]:
    return load_docs(EXAMPLES / "stack.yaml")


def _crs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = demo_stack(docs, minute_seconds=2.0)
    return {d["kind"]: d for d in out.documents if is_custom_resource(d)}


def test_every_demo_resource_is_valid(docs: list[dict[str, Any]]) -> None:
    out = demo_stack(docs, minute_seconds=2.0)
    kinds = [d["kind"] for d in out.documents]
    assert kinds == [
        "Namespace",
        "StatefulSet",
        "WebTier",
        "WorkerPool",
        "ReadReplicaPool",
        "CachePool",
        "TableCapacity",
        "TableCapacity",
    ]
    for d in out.documents[2:]:
        _, errors = validate_document(d)
        assert errors == [], (d["kind"], errors)
        parse_resource(d)  # the operator's own checks (cron, overlaps) too


def test_the_example_is_not_changed(docs: list[dict[str, Any]]) -> None:
    before = copy.deepcopy(docs)
    demo_stack(docs, minute_seconds=2.0)
    assert docs == before


def test_time_runs_six_times_faster_for_the_operator(docs: list[dict[str, Any]]) -> None:
    crs = _crs(docs)
    for cr in crs.values():
        assert cr["spec"]["pollIntervalSeconds"] == 5
    web = crs["WebTier"]["spec"]["behavior"]
    assert web["scaleOut"]["cooldownSeconds"] == 10  # 60 / 6
    assert web["scaleIn"]["cooldownSeconds"] == 20  # 120 / 6
    assert web["scaleIn"]["stabilizationWindowSeconds"] == 100  # 600 (the default) / 6
    assert web["scaleOut"]["maxStep"]["periodSeconds"] == 10  # 60 / 6
    assert web["scaleOut"]["maxStep"]["units"] == 4  # sizes are untouched
    readers = crs["ReadReplicaPool"]["spec"]["behavior"]
    assert readers["scaleOut"]["cooldownSeconds"] == 100  # 600 / 6
    assert readers["scaleIn"]["stabilizationWindowSeconds"] == 300  # 1800 / 6
    # the defaults of the resources that do not set behavior are scaled too
    workers = crs["WorkerPool"]["spec"]["behavior"]
    assert workers["scaleIn"]["stabilizationWindowSeconds"] == 100  # 600 / 6


def test_only_metrics_moto_serves(docs: list[dict[str, Any]]) -> None:
    for cr in _crs(docs).values():
        for m in cr["spec"].get("metrics", []):
            assert "prometheus" not in m, cr["metadata"]["name"]
            cw = m["cloudWatch"]
            assert "expression" not in cw, "moto does not evaluate SEARCH"
            assert cw["periodSeconds"] == 10
            assert m["staleAfterSeconds"] == 30
    web = _crs(docs)["WebTier"]["spec"]
    rpm = next(m for m in web["metrics"] if m["name"] == "requests-per-minute")
    assert rpm["cloudWatch"]["namespace"] == DEMO_NAMESPACE
    assert rpm["target"] == {"type": "AverageValue", "value": 1200}
    assert "schedules" not in web  # real-clock schedules make no sense in story time
    cpu = next(m for m in web["metrics"] if m["name"] == "cpu")
    assert cpu["cloudWatch"]["namespace"] == "AWS/EC2"  # kept as in the example


def test_the_cache_becomes_a_statefulset(docs: list[dict[str, Any]]) -> None:
    out = demo_stack(docs, minute_seconds=2.0)
    cache = next(d for d in out.documents if d["kind"] == "CachePool")
    assert cache["spec"]["target"] == {"kind": "StatefulSet", "name": "shop-sessions"}
    sts = next(d for d in out.documents if d["kind"] == "StatefulSet")
    assert sts["metadata"] == {
        "name": "shop-sessions",
        "namespace": "shop",
        "labels": {"app": "shop-sessions", "app.kubernetes.io/part-of": "stackscaler-demo"},
    }
    assert sts["spec"]["replicas"] == cache["spec"]["minCapacity"] == 1


def test_workers_take_one_second_per_job(docs: list[dict[str, Any]]) -> None:
    queue = _crs(docs)["WorkerPool"]["spec"]["queue"]
    assert queue["latency"] == {"acceptableSeconds": 10, "secondsPerMessage": 1.0}
    assert queue["name"] == "shop-jobs"


def test_every_override_is_told(docs: list[dict[str, Any]]) -> None:
    notes = "\n".join(demo_stack(docs, minute_seconds=2.0).notes)
    for fact in (
        "pollIntervalSeconds 5",
        "x1/6",
        "30x faster",
        "StorageResolution=1",
        "instead of Prometheus",
        "business-hours removed",
        "moto does not evaluate SEARCH",
        "IncreaseReplicaCount/DecreaseReplicaCount",
        "StatefulSet shop/shop-sessions",
        "1 s instead of 0.1 s",
    ):
        assert fact in notes, fact


def test_facts(docs: list[dict[str, Any]]) -> None:
    facts: StackFacts = demo_stack(docs, minute_seconds=2.0).facts
    assert (facts.web_asg, facts.workers_asg, facts.queue, facts.db, facts.statefulset) == (
        "shop-web",
        "shop-workers",
        "shop-jobs",
        "shop-db",
        "shop-sessions",
    )
    assert facts.backlog_per_worker == 10.0
    assert facts.seconds_per_job == 1.0
    assert (facts.web.metric, facts.web.target_value, facts.web.max_capacity) == ("cpu", 50, 40)
    assert facts.workers.metric == "backlog"
    assert facts.web_cpu_metric == MetricId(
        "AWS/EC2", "CPUUtilization", (("AutoScalingGroupName", "shop-web"),)
    )
    assert facts.replica_cpu_metric == MetricId(
        DEMO_NAMESPACE, "ReplicaCPUUtilization", (("SourceDBInstanceIdentifier", "shop-db"),)
    )
    assert facts.replica_prefix == "shop-db-ro-"
    assert [t.kind for t in facts.tiers] == [
        "WebTier",
        "WorkerPool",
        "ReadReplicaPool",
        "CachePool",
    ]


def test_a_stack_without_a_tier_is_refused(docs: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="exactly one CachePool"):
        demo_stack([d for d in docs if d["kind"] != "CachePool"], minute_seconds=2.0)


def test_the_sessions_table_is_driven_as_written_on_the_demo_clock(
    docs: list[dict[str, Any]],
) -> None:
    out = demo_stack(docs, minute_seconds=2.0)
    tables = [d for d in out.documents if d["kind"] == "TableCapacity"]
    assert [t["metadata"]["name"] for t in tables] == ["sessions-read", "sessions-write"]
    for t in tables:
        assert t["spec"]["pollIntervalSeconds"] == 5
        assert t["spec"]["behavior"]["scaleIn"]["stabilizationWindowSeconds"] == 150  # 900 / 6
        assert t["spec"]["target"]["name"] == "shop-user-sessions"
    read, write = out.facts.tables
    assert (read.dimension, read.min_capacity, read.max_capacity) == ("Read", 5, 4000)
    assert (write.dimension, write.target_utilization) == ("Write", 70.0)
    assert read.metric("ConsumedReadCapacityUnits") == MetricId(
        "AWS/DynamoDB", "ConsumedReadCapacityUnits", (("TableName", "shop-user-sessions"),)
    )
    assert any("sessions-read, sessions-write" in n for n in out.notes)
