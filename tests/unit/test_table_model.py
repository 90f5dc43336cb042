"""TableCapacity's model: the target, the implicit metrics and the kind's defaults."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from stackscaler.actuators.base import Capacity
from stackscaler.claims import describe, target_key
from stackscaler.model.crds import KINDS, crd, resource_schema
from stackscaler.model.spec import (
    CloudWatchSource,
    Resource,
    TableTarget,
    TargetType,
    parse_resource,
    warmup,
)
from stackscaler.model.table import TableDimension
from stackscaler.policy.budget import DecreaseBudget
from tests.conftest import mutate
from tests.unit.spec_cases import TABLE
from tests.unit.test_reconcile import T0, FakeActuator, FakeSources, Harness


def _parse(*changes: tuple[str, Any]) -> Any:
    doc = TABLE
    for path, value in changes:
        doc = mutate(doc, path, value)
    return parse_resource(doc)


def test_table_target_and_consumed_metric_of_the_table() -> None:
    r = _parse()
    assert r.target == TableTarget("shop-sessions", None, TableDimension.READ, "us-east-1", None)
    consumed, throttles = r.scaling.metrics
    assert consumed.name == "consumed"
    assert isinstance(consumed.source, CloudWatchSource)
    assert consumed.source.metric_name == "ConsumedReadCapacityUnits"
    assert consumed.source.statistic == "Sum"
    assert consumed.source.per_second and not consumed.source.absent_is_zero
    assert consumed.source.dimensions == (("TableName", "shop-sessions"),)
    assert consumed.target is not None
    assert consumed.target.type is TargetType.AVERAGE_VALUE
    assert consumed.target.value == pytest.approx(0.70)
    assert not consumed.throttle
    assert throttles.name == "throttles" and throttles.throttle
    assert isinstance(throttles.source, CloudWatchSource)
    assert throttles.source.metric_name == "ReadThrottleEvents"
    assert throttles.source.absent_is_zero and not throttles.source.per_second


def test_an_index_writes_metrics_carry_its_dimension() -> None:
    r = _parse(
        ("spec.target.index", "by-user"),
        ("spec.target.dimension", "Write"),
        ("spec.targetUtilization", 50),
    )
    assert isinstance(r.target, TableTarget)
    assert (r.target.index, r.target.dimension) == ("by-user", TableDimension.WRITE)
    consumed, throttles = r.scaling.metrics
    for m in (consumed, throttles):
        assert isinstance(m.source, CloudWatchSource)
        assert m.source.dimensions == (
            ("TableName", "shop-sessions"),
            ("GlobalSecondaryIndexName", "by-user"),
        )
    assert isinstance(consumed.source, CloudWatchSource)
    assert consumed.source.metric_name == "ConsumedWriteCapacityUnits"
    assert consumed.target is not None and consumed.target.value == pytest.approx(0.5)


def test_kind_defaults_no_rate_limits_and_windows_of_1_and_15_minutes() -> None:
    r = _parse()
    b = r.scaling.behavior
    assert b.scale_out.max_step is None and b.scale_in.max_step is None
    assert b.scale_out.stabilization_window_seconds == 60
    assert b.scale_in.stabilization_window_seconds == 900
    assert warmup(r).seconds == 0
    # a user's maxStep still applies
    r = _parse(("spec.behavior", {"scaleIn": {"maxStep": {"units": 100}}}))
    assert r.scaling.behavior.scale_in.max_step is not None


def test_other_metrics_follow_the_implicit_ones() -> None:
    extra = {
        "name": "latency",
        "cloudWatch": {
            "namespace": "AWS/DynamoDB",
            "metricName": "SuccessfulRequestLatency",
            "dimensions": [{"name": "TableName", "value": "shop-sessions"}],
        },
        "target": {"value": 20},
    }
    r = _parse(
        ("spec.metrics", [extra]),
        ("spec.predictive", {"mode": "ForecastOnly", "metric": "consumed"}),
    )
    assert [m.name for m in r.scaling.metrics] == ["consumed", "throttles", "latency"]
    assert r.scaling.predictive is not None and r.scaling.predictive.metric == "consumed"


def test_crd_names_and_status_decreases() -> None:
    info = KINDS["TableCapacity"]
    assert (info.plural, info.short_names) == ("tablecapacities", ("tc",))
    names = crd("TableCapacity")["spec"]["names"]
    assert names["categories"] == ["stackscaler"]
    status = resource_schema("TableCapacity")["properties"]["status"]["properties"]
    assert set(status["decreases"]["properties"]) == {"today", "left", "nextEarnedAt"}
    assert "decreases" not in resource_schema("WebTier")["properties"]["status"]["properties"]


def test_read_write_and_index_of_one_table_are_different_targets() -> None:
    """Claims: a table's read and write and each index's are separate scalable targets;
    two resources of the same one conflict."""
    keys = {
        target_key(_parse(*changes), "us-east-1")
        for changes in (
            (),
            (("spec.target.dimension", "Write"),),
            (("spec.target.index", "by-user"),),
            (("spec.target.index", "by-user"), ("spec.target.dimension", "Write")),
        )
    }
    assert len(keys) == 4
    again = target_key(_parse(("metadata.name", "other")), "us-east-1")
    assert again in keys
    assert describe(again) == "Table shop-sessions read capacity (account (own), region us-east-1)"


class _Spent(FakeActuator):
    """A table whose four decreases of the day went in the last half hour."""

    async def observe(self, resource: Resource) -> Capacity:
        at = (T0 - timedelta(minutes=30)).timestamp()
        return Capacity(
            self.current, self.current, is_setpoint=True, decreases=DecreaseBudget(4, at)
        )


async def test_status_decreases_with_the_next_earned_only_while_none_is_left() -> None:
    doc = copy.deepcopy(TABLE)
    doc["metadata"].update(uid="u1", generation=1)
    h = Harness(
        doc, actuator=_Spent(current=100), sources=FakeSources({"consumed": 7.0, "throttles": 0.0})
    )
    await h.tick()
    assert h.body["status"]["decreases"] == {
        "today": 4,
        "left": 0,
        "nextEarnedAt": "2026-11-26T12:30:00Z",  # an hour after the last
    }
    h.actuator = FakeActuator(current=100)
    h.restart()
    await h.tick(after=60)
    assert "decreases" not in h.body["status"]  # no budget reported: none written
