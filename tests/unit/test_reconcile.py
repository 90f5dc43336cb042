"""The reconciler with in-memory fakes: each safety rule of the operator, tick by tick."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stackscaler.actuators.base import ApplyResult, Capacity
from stackscaler.errors import (
    AccessDenied,
    MetricUnavailable,
    StackscalerError,
    TargetNotFound,
    TemporaryError,
)
from stackscaler.metrics.prometheus import InvalidQuery
from stackscaler.model.spec import Resource
from stackscaler.policy import MetricObservation
from stackscaler.reconcile import PAUSED_ANNOTATION, Reconciler, Ref, paused_state

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@dataclass
class FakeActuator:
    current: int = 3
    setpoint: bool = True
    busy: str | None = None
    observe_error: StackscalerError | None = None
    apply_error: StackscalerError | None = None
    applied: list[int] = field(default_factory=list)

    async def observe(self, resource: Resource) -> Capacity:
        if self.observe_error:
            raise self.observe_error
        return Capacity(self.current, self.current, is_setpoint=self.setpoint, busy=self.busy)

    async def apply(self, resource: Resource, desired: int, observed: Capacity) -> ApplyResult:
        if self.apply_error:
            raise self.apply_error
        self.applied.append(desired)
        self.current = desired
        return ApplyResult(desired, changed=True)

    async def close(self) -> None:
        pass


@dataclass
class FakeActuators:
    actuator: FakeActuator

    def for_target(self, target: Any) -> FakeActuator:
        return self.actuator


@dataclass
class FakeSources:
    values: dict[str, float | None] = field(default_factory=lambda: {"cpu": 50.0})
    error: StackscalerError | None = None

    async def observe_all(
        self, resource: Resource, now: datetime, *, deadline: float | None = None
    ) -> dict[str, Any]:
        out = {}
        for name, v in self.values.items():
            if v is None:
                err = self.error or MetricUnavailable("cpu: no datapoints")
                out[name] = (MetricObservation.unknown(str(err)), err)
            else:
                out[name] = (MetricObservation(v, now), None)
        return out


@dataclass
class Recorder:
    statuses: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    """Keys of the keyed Events posted (see ``EventRecorder.record``)."""

    async def write(self, ref: Ref, status: dict[str, Any]) -> None:
        self.statuses.append(copy.deepcopy(status))

    async def record(
        self, ref: Ref, type_: str, reason: str, message: str, *, key: str | None = None
    ) -> None:
        if key is not None:  # as the API server: a second Event of the same name is refused
            if key in self.keys:
                return
            self.keys.add(key)
        self.events.append((type_, reason, message))

    def reasons(self) -> list[str]:
        return [r for _, r, _ in self.events]


def body(**spec: Any) -> dict[str, Any]:
    base = {
        "target": {"kind": "AutoScalingGroup", "name": "web"},
        "minCapacity": 1,
        "maxCapacity": 10,
        "metrics": [
            {
                "name": "cpu",
                "target": {"value": 50},
                "prometheus": {"serverAddress": "http://p:9090", "query": "cpu"},
            }
        ],
        "behavior": {
            "scaleOut": {"cooldownSeconds": 60, "maxStep": {"units": 100}},
            "scaleIn": {
                "cooldownSeconds": 60,
                "stabilizationWindowSeconds": 0,
                "maxStep": {"units": 100},
            },
        },
    }
    base.update(spec)
    return {
        "apiVersion": "stackscaler.dev/v1alpha1",
        "kind": "WebTier",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "generation": 1},
        "spec": base,
    }


class Harness:
    def __init__(
        self,
        doc: dict[str, Any],
        actuator: FakeActuator | None = None,
        sources: FakeSources | None = None,
    ) -> None:
        self.body = doc
        self.actuator = actuator or FakeActuator()
        self.sources = sources or FakeSources()
        self.rec = Recorder()
        self.now = T0
        self.reconciler = self._new()

    def _new(self) -> Reconciler:
        return Reconciler(
            self.sources,
            FakeActuators(self.actuator),  # type: ignore[arg-type]
            self.rec,
            self.rec,
            clock=lambda: self.now,
        )

    def restart(self) -> None:
        self.reconciler = self._new()

    async def tick(self, after: float = 0.0) -> Any:
        self.now += timedelta(seconds=after)
        result = await self.reconciler.tick(copy.deepcopy(self.body))
        if self.rec.statuses:
            self.body["status"] = self.rec.statuses[-1]  # the API server stores it
        return result

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.body["status"]["conditions"] if c["type"] == type_)


async def test_scales_out_once_and_records_everything() -> None:
    h = Harness(body(), sources=FakeSources({"cpu": 100.0}))
    r = await h.tick()
    assert h.actuator.applied == [6]
    assert r.delay == 30.0
    s = h.body["status"]
    assert (s["currentCapacity"], s["desiredCapacity"], s["appliedCapacity"]) == (3, 6, 6)
    assert s["lastScaleOutTime"] == s["lastScaleTime"] == "2026-11-26T12:00:00Z"
    assert s["lastDecision"]["direction"] == "Out"
    assert s["observedGeneration"] == 1
    assert h.condition("Ready")["status"] == "True"
    assert [e[1] for e in h.rec.events] == ["ScaledOut"]
    assert "3 -> 6" in h.rec.events[0][2]


async def test_unchanged_capacity_sends_nothing() -> None:
    h = Harness(body())  # 3 at 50% of a 50% target
    await h.tick()
    assert h.actuator.applied == [] and h.rec.events == []


async def test_dry_run_changes_nothing_but_says_what_it_would_do() -> None:
    h = Harness(body(mode="DryRun"), sources=FakeSources({"cpu": 100.0}))
    await h.tick()
    assert h.actuator.applied == []
    assert h.body["status"]["desiredCapacity"] == 6
    dry = h.condition("DryRun")
    assert dry["status"] == "True" and "would scale 3 -> 6" in dry["message"]
    assert "lastScaleTime" not in h.body["status"]  # nothing happened
    assert "scaleInWindow" in h.body["status"]["history"]  # but the observation is kept


@pytest.mark.parametrize(
    ("value", "paused"),
    [
        ("true", True),
        ("True", True),
        ("2026-11-26T13:00:00Z", True),
        ("2026-11-26T11:00:00Z", False),
        ("false", False),
        ("garbage", True),
    ],
)
def test_pause_annotation(value: str, paused: bool) -> None:
    assert paused_state({PAUSED_ANNOTATION: value}, T0)[0] is paused


async def test_paused_changes_nothing_until_the_time_passes() -> None:
    doc = body()
    doc["metadata"]["annotations"] = {PAUSED_ANNOTATION: "2026-11-26T12:05:00Z"}
    h = Harness(doc, sources=FakeSources({"cpu": 100.0}))
    await h.tick()
    assert h.actuator.applied == []
    paused = h.condition("Paused")
    assert paused["status"] == "True" and "would scale 3 -> 6" in paused["message"]
    await h.tick(after=301)
    assert h.actuator.applied == [6]
    assert h.condition("Paused")["status"] == "False"


async def test_invalid_spec_is_reported_once_and_retried_slowly() -> None:
    h = Harness(body(minCapacity=20))
    r1 = await h.tick()
    r2 = await h.tick(after=300)
    ready = h.condition("Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "spec.minCapacity: minCapacity (20) must be <= maxCapacity (10)" in ready["message"]
    assert h.rec.reasons() == ["InvalidSpec"]  # once, not once per retry
    assert r1.delay == r2.delay == 300.0
    assert h.actuator.applied == []


async def test_permanent_target_error_is_reported_once() -> None:
    h = Harness(body(), actuator=FakeActuator(observe_error=TargetNotFound("no group web")))
    r = await h.tick()
    await h.tick(after=120)
    assert h.rec.reasons() == ["TargetNotFound"]
    assert h.condition("Ready")["reason"] == "TargetNotFound"
    assert r.delay == 120.0  # 4 x poll interval, no hot loop


async def test_temporary_error_retries_after_its_delay_without_events() -> None:
    h = Harness(body(), actuator=FakeActuator(observe_error=TemporaryError("down", delay=7)))
    r = await h.tick()
    assert r.delay == 7 and h.rec.events == []
    assert h.condition("Ready")["reason"] == "TargetUnavailable"


async def test_apply_denied_keeps_observations_not_the_action() -> None:
    h = Harness(
        body(),
        actuator=FakeActuator(apply_error=AccessDenied("grant autoscaling:X")),
        sources=FakeSources({"cpu": 100.0}),
    )
    await h.tick()
    await h.tick(after=30)
    assert h.rec.reasons() == ["AccessDenied"]
    s = h.body["status"]
    assert "lastScaleOut" not in s["history"]
    assert s["history"]["scaleInWindow"]


async def test_restart_honours_the_cooldown_from_status() -> None:
    h = Harness(body(), sources=FakeSources({"cpu": 100.0}))
    await h.tick()
    assert h.actuator.applied == [6]
    h.restart()  # a new process: nothing in memory
    await h.tick(after=20)
    assert h.actuator.applied == [6]  # no second action inside the 60 s cooldown
    assert h.body["status"]["lastDecision"]["limitedBy"] == "scaleOutCooldown"
    await h.tick(after=45)
    assert h.actuator.applied == [6, 10]


async def test_out_of_band_change_is_reported_and_not_fought() -> None:
    h = Harness(body())
    await h.tick()  # baseline: applied 3
    h.actuator.current = 8  # someone sets 8 by hand
    h.sources.values = {"cpu": 10.0}  # metrics would scale in right away
    await h.tick(after=30)
    assert h.actuator.applied == []  # the cooldown restarted from the change
    oob = h.condition("OutOfBandChange")
    assert oob["status"] == "True" and "from 3 to 8" in oob["message"]
    assert h.rec.reasons() == ["OutOfBandChange"]
    assert h.body["status"]["appliedCapacity"] == 8
    await h.tick(after=61)
    assert h.actuator.applied == [2]  # and then the policy resumes


async def test_fallback_start_and_end_events() -> None:
    doc = body(
        onMetricsUnavailable={"failureThreshold": 2, "action": "Fallback", "fallbackCapacity": 7}
    )
    h = Harness(doc, sources=FakeSources({"cpu": None}))
    await h.tick()
    assert h.actuator.applied == []
    assert h.condition("MetricsAvailable")["status"] == "False"
    await h.tick(after=30)
    assert h.actuator.applied == [7]
    assert h.condition("Fallback")["status"] == "True"
    h.sources.values = {"cpu": 50.0}
    await h.tick(after=30)
    assert "FallbackStarted" in h.rec.reasons() and "FallbackEnded" in h.rec.reasons()
    assert h.condition("Fallback")["status"] == "False"


async def test_busy_target_is_left_alone() -> None:
    h = Harness(
        body(),
        actuator=FakeActuator(busy="waiting while a modification is pending"),
        sources=FakeSources({"cpu": 100.0}),
    )
    await h.tick()
    assert h.actuator.applied == []
    limited = h.condition("ScalingLimited")
    assert limited["reason"] == "TargetBusy" and "modification" in limited["message"]


async def test_permanent_metric_error_is_reported_once() -> None:
    h = Harness(body(), sources=FakeSources({"cpu": None}, error=InvalidQuery("3 series")))
    await h.tick()
    await h.tick(after=30)
    assert h.rec.reasons() == ["InvalidQuery"]
