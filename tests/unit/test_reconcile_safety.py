"""The reconciler's safety rules from issue 10, tick by tick with in-memory fakes.

Each test here failed on the reconciler before the fix it is named after:
a crash between the AWS write and the status write, a permanent metric
error re-posted whenever another metric's message changed, two resources on
one target, a target that never answers, and a namespace reaching outside
its grant.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from stackscaler.actuators.base import ApplyResult, Capacity
from stackscaler.errors import MetricUnavailable, StackscalerError
from stackscaler.metrics.prometheus import InvalidQuery
from stackscaler.model.spec import Resource
from stackscaler.policy import MetricObservation
from stackscaler.reconcile import Reconciler
from tests.unit.test_reconcile import T0, FakeActuator, FakeActuators, FakeSources, Recorder, body


class Crash(BaseException):
    """The process dies here (nothing after it runs)."""


@dataclass
class CrashingStatus(Recorder):
    """Records statuses and Events; once armed, dies on the first status write (or, with
    ``at_event``, the first Event) after the actuator changed something."""

    actuator: FakeActuator | None = None
    armed: bool = False
    at_event: bool = False

    def _crash(self) -> None:
        if self.armed and self.actuator is not None and self.actuator.applied:
            self.armed = False
            raise Crash

    async def write(self, ref: Any, status: dict[str, Any]) -> None:
        if not self.at_event:
            self._crash()
        await super().write(ref, status)

    async def record(
        self, ref: Any, type_: str, reason: str, message: str, *, key: str | None = None
    ) -> None:
        if self.at_event:
            self._crash()
        await super().record(ref, type_, reason, message, key=key)


class World:
    """One resource, its stored body, and operator processes that come and go."""

    def __init__(self, doc: dict[str, Any], actuator: FakeActuator, sources: Any) -> None:
        self.body, self.actuator, self.sources = doc, actuator, sources
        self.rec = CrashingStatus(actuator=actuator)
        self.now = T0
        self.reconciler = self.new()

    def new(self) -> Reconciler:
        return Reconciler(
            self.sources,
            FakeActuators(self.actuator),  # type: ignore[arg-type]
            self.rec,
            self.rec,
            clock=lambda: self.now,
        )

    async def tick(self, after: float = 0.0) -> None:
        self.now += timedelta(seconds=after)
        try:
            await self.reconciler.tick(copy.deepcopy(self.body))
        finally:
            if self.rec.statuses:
                self.body["status"] = self.rec.statuses[-1]

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.body["status"]["conditions"] if c["type"] == type_)


@pytest.mark.parametrize("event_posted", [False, True], ids=["event-owed", "event-posted"])
@pytest.mark.parametrize("setpoint", [True, False], ids=["asg", "replica-fleet"])
async def test_crash_between_aws_write_and_status_write(setpoint: bool, event_posted: bool) -> None:
    """Finding 5: a restarted operator knows its action, keeps the cooldown, and posts the
    action's Event if (and only if) the stopped one had not posted it yet."""
    actuator = FakeActuator(setpoint=setpoint)
    w = World(body(), actuator, FakeSources({"cpu": 50.0}))
    await w.tick()  # a calm first tick: status with appliedCapacity 3
    w.sources.values = {"cpu": 100.0}
    w.rec.armed, w.rec.at_event = True, not event_posted
    with pytest.raises(Crash):
        await w.tick(after=30)
    assert actuator.applied == [6]  # the group was changed, the status never said so
    assert w.rec.reasons() == (["ScaledOut"] if event_posted else [])
    w.reconciler = w.new()  # the restarted process
    await w.tick(after=5)
    assert actuator.applied == [6], "scaled again inside the cooldown after a restart"
    assert w.rec.reasons() == ["ScaledOut"], w.rec.events  # one Event for the one action
    assert ("recorded after a restart" in w.rec.events[0][2]) is not event_posted
    status = w.body["status"]
    assert "pendingAction" not in status
    assert status["lastScaleOutTime"] == "2026-11-26T12:00:30Z"
    if setpoint:
        assert status["appliedCapacity"] == 6
        assert all(
            c["type"] != "OutOfBandChange" or c["status"] == "False" for c in status["conditions"]
        )
    await w.tick(after=60)  # the cooldown (60 s from the action) is over
    assert actuator.applied == [6, 10]


async def test_crash_before_the_aws_write_leaves_no_trace() -> None:
    """An intent whose action never reached AWS is dropped, with no Event and no cooldown."""
    actuator = FakeActuator()
    w = World(body(), actuator, FakeSources({"cpu": 100.0}))
    w.body["status"] = {
        "appliedCapacity": 3,
        "pendingAction": {"time": "2026-11-26T11:59:50Z", "from": 3, "to": 6, "headline": "x"},
    }
    await w.tick()
    assert actuator.applied == [6]
    assert [r for _, r, _ in w.rec.events] == ["ScaledOut"]
    assert "recorded after a restart" not in w.rec.events[0][2]


@dataclass
class TwoMetrics:
    """``bad`` has a permanent error; ``flaky`` is unknown with a message that changes."""

    n: int = 0

    async def observe_all(
        self, resource: Resource, now: datetime, *, deadline: float | None = None
    ) -> dict[str, Any]:
        self.n += 1
        bad = InvalidQuery("the query returned 3 series; aggregate it")
        flaky = MetricUnavailable(f"no datapoints (attempt {self.n})")
        return {
            "bad": (MetricObservation.unknown(str(bad)), bad),
            "flaky": (MetricObservation.unknown(str(flaky)), flaky),
        }


async def test_a_permanent_metric_error_is_posted_once() -> None:
    """Finding 7: 10 ticks with another metric's message changing made 10 Events."""
    doc = body()
    metric = doc["spec"]["metrics"][0]
    doc["spec"]["metrics"] = [{**metric, "name": "bad"}, {**metric, "name": "flaky"}]
    w = World(doc, FakeActuator(), TwoMetrics())
    for _ in range(10):
        await w.tick(after=30)
    assert [r for _, r, _ in w.rec.events].count("InvalidQuery") == 1, w.rec.events
    w.reconciler = w.new()  # and not again after a restart either
    await w.tick(after=30)
    assert [r for _, r, _ in w.rec.events].count("InvalidQuery") == 1


def _named(name: str, uid: str, created: str) -> dict[str, Any]:
    doc = body()
    doc["metadata"].update(name=name, uid=uid, creationTimestamp=created)
    return doc


def _one_target(
    clock: Callable[[], datetime],
) -> tuple[Reconciler, FakeActuator, Recorder, dict[str, Any], dict[str, Any]]:
    """A reconciler and two resources on one target: an old one and a young one."""
    actuator = FakeActuator()
    rec = Recorder()
    r = Reconciler(
        FakeSources({"cpu": 100.0}),
        FakeActuators(actuator),  # type: ignore[arg-type]
        rec,
        rec,
        clock=clock,
    )
    old = _named("old", "u-old", "2026-01-01T00:00:00Z")
    young = _named("young", "u-young", "2026-06-01T00:00:00Z")
    return r, actuator, rec, old, young


async def test_two_resources_on_one_target_the_older_keeps_it() -> None:
    """Finding 3: three WebTiers on one group took each other's changes for out-of-band edits."""
    now = [T0]
    r, actuator, rec, old, young = _one_target(lambda: now[0])
    r.register(young)  # seen first: the watch lists in any order
    r.register(old)
    await r.tick(young)
    assert actuator.applied == []
    status = rec.statuses[-1]
    conflict = next(c for c in status["conditions"] if c["type"] == "Conflict")
    assert conflict["status"] == "True" and "WebTier shop/old" in conflict["message"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "TargetConflict"
    await r.tick(old)
    assert actuator.applied == [6]
    r.forget("u-old")  # the owner is deleted: the other one takes over
    now[0] += timedelta(seconds=120)
    young["status"] = status
    await r.tick(young)
    assert actuator.applied == [6, 10]
    conflict = next(c for c in rec.statuses[-1]["conditions"] if c["type"] == "Conflict")
    assert conflict["status"] == "False"


async def test_a_resource_another_replica_ticks_keeps_its_claim_but_not_its_spec() -> None:
    """register(keep=False): the replica keeps only the claim of a resource it does not
    tick (no parsed spec), and its own resource on the same target still yields."""
    r, actuator, rec, old, young = _one_target(lambda: T0)
    r.register(old, keep=False)
    r.register(young)
    assert "u-old" not in r._parsed and "u-young" in r._parsed
    await r.tick(young)
    assert actuator.applied == []
    conflict = next(c for c in rec.statuses[-1]["conditions"] if c["type"] == "Conflict")
    assert conflict["status"] == "True" and "WebTier shop/old" in conflict["message"]


@dataclass
class FrozenActuator(FakeActuator):
    """A target whose API never answers (an endpoint frozen mid-call)."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def observe(self, resource: Resource) -> Capacity:
        await self.gate.wait()
        return await super().observe(resource)

    async def apply(self, resource: Resource, desired: int, observed: Capacity) -> ApplyResult:
        await self.gate.wait()
        return await super().apply(resource, desired, observed)


async def test_a_frozen_endpoint_makes_the_tick_late_not_healthy() -> None:
    """Finding 4: with AWS frozen every status said Ready=True Reconciled (no tick deadline)."""
    actuator = FrozenActuator()
    rec = Recorder()
    r = Reconciler(
        FakeSources({"cpu": 50.0}),
        FakeActuators(actuator),  # type: ignore[arg-type]
        rec,
        rec,
        clock=lambda: T0,
        deadline=lambda poll: 0.05,
    )
    result = await asyncio.wait_for(r.tick(body()), timeout=10)  # hang guard only
    ready = next(c for c in rec.statuses[-1]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TickLate")
    assert "within 0.05 s" in ready["message"]
    assert result.delay <= 30
    actuator.gate.set()


async def test_events_per_resource_are_bounded() -> None:
    """Bounded everything: a resource cannot flood the namespace's Events."""

    @dataclass
    class Spammy:
        n: int = 0

        async def observe_all(
            self, resource: Resource, now: datetime, *, deadline: float | None = None
        ) -> dict[str, Any]:
            self.n += 1  # a new permanent error text every tick: each one is a new fact
            err: StackscalerError = InvalidQuery(f"bad query variant {self.n}")
            return {"cpu": (MetricObservation.unknown(str(err)), err)}

    w = World(body(), FakeActuator(), Spammy())
    for _ in range(100):
        await w.tick(after=10)  # 100 ticks in under 17 minutes
    assert len(w.rec.events) == 30
