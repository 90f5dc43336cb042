"""Status writes proportional to what changed (issue: 2,000 resources, a write per tick each).

The reconciler keeps the last status it computed and writes it only when
something material changed, or the last write is older than the refresh
interval; a restart from the written status never scales earlier than a
reconciler that wrote every tick would have.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackscaler import fence
from stackscaler.actuators.base import ApplyResult, Capacity
from stackscaler.errors import Deferred
from stackscaler.model.spec import Resource
from stackscaler.observability.metrics import OperatorMetrics
from stackscaler.policy import Decision, Direction
from stackscaler.reconcile import (
    STATUS_REFRESH_SECONDS,
    Reconciler,
    Ref,
    material,
    send_by,
)
from stackscaler.sharding import fraction_of
from tests.unit.test_reconcile import T0, FakeActuator, FakeActuators, FakeSources, Recorder, body

REFRESH = STATUS_REFRESH_SECONDS


@dataclass
class VersionedRecorder(Recorder):
    """An API server's /status: each write gets the next resourceVersion."""

    version: int = 100

    async def write(self, ref: Ref, status: dict[str, Any]) -> str | None:
        await super().write(ref, status)
        self.version += 1
        return str(self.version)


class World:
    """One resource, the body the API server stores, and a reconciler (restartable)."""

    def __init__(
        self,
        doc: dict[str, Any],
        *,
        cpu: float = 50.0,
        refresh: float = REFRESH,
        rec: Recorder | None = None,
        actuator: FakeActuator | None = None,
    ) -> None:
        self.body = doc
        self.actuator = actuator or FakeActuator()
        self.sources = FakeSources({"cpu": cpu})
        self.rec = rec or Recorder()
        self.metrics = OperatorMetrics()
        self.refresh = refresh
        self.now = T0
        self.reconciler = self.new()

    def new(self) -> Reconciler:
        return Reconciler(
            self.sources,
            FakeActuators(self.actuator),  # type: ignore[arg-type]
            self.rec,
            self.rec,
            metrics=self.metrics,
            clock=lambda: self.now,
            status_refresh=self.refresh,
        )

    async def tick(self, after: float = 0.0) -> Decision | None:
        self.now += timedelta(seconds=after)
        result = await self.reconciler.tick(copy.deepcopy(self.body))
        self.store()
        return result.decision

    def store(self) -> None:
        """The API server has the last status written (and its resourceVersion)."""
        if self.rec.statuses:
            self.body["status"] = copy.deepcopy(self.rec.statuses[-1])
        if isinstance(self.rec, VersionedRecorder):
            self.body["metadata"]["resourceVersion"] = str(self.rec.version)

    def writes(self) -> int:
        return len(self.rec.statuses)

    def counted(self, result: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "stackscaler_status_writes_total", {"result": result}
        )
        return value or 0.0

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.body["status"]["conditions"] if c["type"] == type_)


def default_windows() -> dict[str, Any]:
    """body() with the default behavior: a 300 s scale-in window (and cooldowns)."""
    doc = body()
    del doc["spec"]["behavior"]
    return doc


async def test_steady_state_writes_once_then_every_refresh_interval() -> None:
    w = World(default_windows())
    await w.tick()
    assert w.writes() == 1
    first = w.body["status"]
    # one early refresh at a phase taken from the uid (so that resources started together
    # spread their refreshes), then one every refresh interval
    early = fraction_of(w.body["metadata"]["uid"]) * REFRESH
    written_at = [0]
    for k in range(1, 131):  # 30 s apart: 65 minutes
        decision = await w.tick(after=30)
        assert decision is not None and decision.direction is Direction.NONE
        if w.writes() > len(written_at):
            written_at.append(30 * k)
    first_refresh = 30 * math.ceil(early / 30)
    expected = [0, first_refresh]
    while expected[-1] + 30 * math.ceil(REFRESH / 30) <= 30 * 130:
        expected.append(expected[-1] + 30 * math.ceil(REFRESH / 30))  # the first tick past it
    assert written_at == expected, "writes only at the early refresh and every interval"
    assert (w.counted("written"), w.counted("skipped")) == (len(expected), 131 - len(expected))
    assert material(w.body["status"]) == material(first)
    hour = [t for t in written_at if first_refresh <= t < first_refresh + 3600]
    assert len(hour) == 11  # every 330 s at a 30 s poll: fewer than 12 an hour
    gauge = w.metrics.registry.get_sample_value(
        "stackscaler_last_decision_timestamp_seconds",
        {"kind": "WebTier", "namespace": "shop", "name": "web"},
    )
    assert gauge == w.now.timestamp()  # every decision is on time, written or not
    took = w.metrics.registry.get_sample_value(
        "stackscaler_decision_seconds_count", {"kind": "WebTier"}
    )
    assert took == 131  # every tick's time to its decision, observed
    late = w.metrics.registry.get_sample_value
    assert late("stackscaler_decision_lateness_seconds_count", {"kind": "WebTier"}) == 130
    on_time = {"kind": "WebTier", "le": "0.5"}  # each 30 s after the last: never late
    assert late("stackscaler_decision_lateness_seconds_bucket", on_time) == 130


async def test_resources_started_together_refresh_at_different_times() -> None:
    phases = {uid: fraction_of(uid) for uid in (f"uid-{i}" for i in range(200))}
    assert all(0 <= p < 1 for p in phases.values())
    buckets = {int(p * 10) for p in phases.values()}
    assert buckets == set(range(10))  # spread over the whole interval, not one moment


async def test_the_next_tick_starts_from_the_last_status_computed() -> None:
    w = World(body(), cpu=50.0)
    await w.tick()
    w.sources.values = {"cpu": 55.0}  # within the tolerance: volatile only
    await w.tick(after=30)
    assert w.writes() == 1
    w.sources.values = {"cpu": None}  # an outage: MetricsAvailable turns False at once
    await w.tick(after=30)
    assert w.writes() == 2
    assert w.condition("MetricsAvailable")["status"] == "False"
    assert w.body["status"]["history"]["consecutiveFailures"] == 1
    await w.tick(after=30)  # the count of failures is material: the fallback needs it
    assert w.body["status"]["history"]["consecutiveFailures"] == 2
    assert w.writes() == 3
    await w.tick(after=30)  # the threshold (3): Hold starts
    assert w.writes() == 4
    for _ in range(5):  # a steady outage past the threshold: nothing material changes
        await w.tick(after=30)
    assert w.body["status"]["history"]["consecutiveFailures"] == 3
    assert w.writes() <= 5  # the resource's one early refresh at most, not a write per tick


async def test_a_material_change_is_written_at_once() -> None:
    w = World(body(mode="DryRun"), cpu=50.0)
    await w.tick()
    await w.tick(after=30)
    assert w.writes() == 1
    w.sources.values = {"cpu": 100.0}  # DryRun: nothing applied, the decision changes
    await w.tick(after=1)
    assert w.writes() == 2
    assert w.body["status"]["desiredCapacity"] == 6
    assert w.body["status"]["lastDecision"]["direction"] == "Out"
    w.body["metadata"]["generation"] = 2  # a new spec: observedGeneration changes
    await w.tick(after=1)
    assert w.writes() == 3
    assert w.body["status"]["observedGeneration"] == 2


async def test_a_scale_action_writes_its_intent_and_its_result() -> None:
    w = World(body(), cpu=50.0)
    await w.tick()
    await w.tick(after=30)
    assert w.writes() == 1
    w.sources.values = {"cpu": 100.0}
    await w.tick(after=30)
    assert w.actuator.applied == [6]
    intent, result = w.rec.statuses[-2:]
    assert w.writes() == 3
    assert intent["pendingAction"]["to"] == 6
    assert "pendingAction" not in result
    assert (result["appliedCapacity"], result["lastScaleOutTime"]) == (6, "2026-11-26T12:01:00Z")


async def test_after_forget_a_tick_starts_from_the_written_status() -> None:
    """Another replica owned it meanwhile: its status (appliedCapacity 8) is the truth."""
    w = World(body(), cpu=50.0)
    await w.tick()
    await w.tick(after=30)  # skipped: memory is newer than the body
    theirs = copy.deepcopy(w.body["status"])
    theirs["appliedCapacity"] = 8  # what the other replica set, same decision time
    w.body["status"] = theirs
    w.actuator.current = 8
    w.reconciler.forget("u1")
    await w.tick(after=30)
    assert all(
        c["status"] == "False"
        for c in w.body["status"]["conditions"]
        if c["type"] == "OutOfBandChange"
    ), "memory of appliedCapacity 3 was used"
    assert w.body["status"]["appliedCapacity"] == 8


async def test_without_forget_the_memory_wins_over_an_older_body() -> None:
    w = World(body(), cpu=50.0)
    await w.tick()
    stale = copy.deepcopy(w.body["status"])
    w.sources.values = {"cpu": 100.0}
    await w.tick(after=30)  # scales 3 -> 6
    w.body["status"] = stale  # the watch event of the last write is not back yet
    w.sources.values = {"cpu": 50.0}
    await w.tick(after=5)
    assert w.actuator.applied == [6]
    assert "OutOfBandChange" not in w.rec.reasons()
    assert w.body["status"]["appliedCapacity"] == 6


async def test_a_status_someone_else_wrote_after_ours_is_preferred() -> None:
    """A newer resourceVersion with another status: a human (or replica) wrote it."""
    w = World(body(), cpu=50.0, rec=VersionedRecorder())
    await w.tick()
    await w.tick(after=30)
    edited = copy.deepcopy(w.body["status"])
    edited["appliedCapacity"] = 8
    w.body["status"] = edited
    w.body["metadata"]["resourceVersion"] = str(int(w.body["metadata"]["resourceVersion"]) + 1)
    w.actuator.current = 8
    await w.tick(after=30)
    assert "OutOfBandChange" not in w.rec.reasons()
    assert w.body["status"]["appliedCapacity"] == 8
    # an older resourceVersion with another status is ours, not yet seen: memory wins
    w.body["status"] = copy.deepcopy(w.rec.statuses[0])
    w.body["metadata"]["resourceVersion"] = "50"
    await w.tick(after=30)
    assert "OutOfBandChange" not in w.rec.reasons()


async def test_a_later_decision_in_the_body_is_preferred_without_versions() -> None:
    w = World(body(), cpu=50.0)
    await w.tick()
    theirs = copy.deepcopy(w.body["status"])
    theirs["appliedCapacity"] = 8
    theirs["lastDecision"]["time"] = "2026-11-26T12:00:20Z"  # decided after ours
    w.body["status"] = theirs
    w.actuator.current = 8
    await w.tick(after=30)
    assert "OutOfBandChange" not in w.rec.reasons()


async def test_a_failing_write_is_retried_next_tick() -> None:
    @dataclass
    class Flaky(Recorder):
        fail: bool = False

        async def write(self, ref: Ref, status: dict[str, Any]) -> None:
            if self.fail:
                raise OSError("connection reset")
            await super().write(ref, status)

    rec = Flaky()
    w = World(body(mode="DryRun"), cpu=50.0, rec=rec)
    await w.tick()
    rec.fail = True
    w.sources.values = {"cpu": 100.0}
    await w.tick(after=30)
    assert w.writes() == 1
    rec.fail = False
    await w.tick(after=30)
    assert w.writes() == 2 and w.body["status"]["desiredCapacity"] == 6


# --- restarts: never earlier than a reconciler that wrote every tick --------------------


def windowed(in_window: int, out_window: int) -> dict[str, Any]:
    return body(
        minCapacity=1,
        maxCapacity=20,
        behavior={
            "scaleOut": {
                "cooldownSeconds": 0,
                "stabilizationWindowSeconds": out_window,
                "maxStep": {"units": 100},
            },
            "scaleIn": {
                "cooldownSeconds": 0,
                "stabilizationWindowSeconds": in_window,
                "maxStep": {"units": 100},
            },
        },
    )


async def test_a_restart_holds_the_window_as_long_as_writing_every_tick() -> None:
    """Steady at 6 for long; killed 290 s after the last write; then the load drops.

    The written window's last entry is 290 s older than the memory's was: read
    as it is, the restarted operator would scale in 290 s early.
    """
    doc = windowed(600, 0)
    every = World(copy.deepcopy(doc), cpu=100.0, refresh=0.0)
    lazy = World(copy.deepcopy(doc), cpu=100.0)
    for w in (every, lazy):
        await w.tick()  # 3 -> 6
        w.sources.values = {"cpu": 50.0}
        for _ in range(40 + 9):  # 20 min steady at 6, then 270 s more
            await w.tick(after=30)
        w.reconciler = w.new()  # killed; restarted 60 s later
        w.sources.values = {"cpu": 10.0}  # wants 2
    assert lazy.writes() < every.writes() / 5
    first_in: dict[str, datetime] = {}
    for name, w in (("every", every), ("lazy", lazy)):
        for _ in range(40):
            decision = await w.tick(after=30)
            assert decision is not None
            if decision.direction is Direction.IN:
                first_in.setdefault(name, w.now)
    assert first_in["lazy"] >= first_in["every"], first_in


@st.composite
def runs(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[int, float]], int]:
    doc = windowed(draw(st.sampled_from([0, 60, 300, 600])), draw(st.sampled_from([0, 60, 300])))
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from([1, 5, 30, 30, 30, 90, 301]),
                st.sampled_from([10.0, 25.0, 50.0, 52.0, 75.0, 100.0, 200.0]),
            ),
            min_size=2,
            max_size=40,
        )
    )
    restart = draw(st.integers(1, len(steps) - 1))
    return doc, steps, restart


@settings(max_examples=150, deadline=None)
@given(runs())
async def test_restarted_never_scales_earlier_than_writing_every_tick(
    run: tuple[dict[str, Any], list[tuple[int, float]], int],
) -> None:
    """Same loads, same restart: one writes every tick, one only what is material.

    Until their decisions first differ both are in the same state; at that
    decision, the lazy one's desired capacity lies between the current capacity
    and the eager one's: it scales neither in nor out earlier or further.
    """
    doc, steps, restart = run
    every = World(copy.deepcopy(doc), refresh=0.0)
    lazy = World(copy.deepcopy(doc))
    for i, (after, cpu) in enumerate(steps):
        decisions = []
        for w in (every, lazy):
            if i == restart:
                w.reconciler = w.new()
            w.sources.values = {"cpu": cpu}
            current = w.actuator.current
            decisions.append(await w.tick(after=after))
        a, b = decisions
        assert a is not None and b is not None
        if (a.desired, a.direction) != (b.desired, b.direction):
            assert i >= restart, "they differ before the restart"
            lo, hi = sorted((current, a.desired))
            assert lo <= b.desired <= hi, (i, a.headline, b.headline)
            return
        assert every.actuator.current == lazy.actuator.current


# --- a change whose turn in the AWS write limit comes too late -----------------------------


@dataclass
class LimitedActuator(FakeActuator):
    """Sends a change only when its turn in a write limit comes before the tick's send-by
    time, as AwsCaller does (stackscaler.fence.SEND_BY): ``turn_in`` seconds from now."""

    turn_in: float = 0.0
    budgets: list[float | None] = field(default_factory=list)

    async def apply(self, resource: Resource, desired: int, observed: Capacity) -> ApplyResult:
        send_by = fence.SEND_BY.get()
        budget = None if send_by is None else send_by.budget()
        self.budgets.append(budget)
        if budget is not None and self.turn_in > budget:
            raise Deferred("SetDesiredCapacity not sent: its turn comes too late")
        return await super().apply(resource, desired, observed)


def test_send_by_leaves_the_end_of_the_slot_for_the_call_and_its_writes() -> None:
    slot = T0.timestamp()
    assert send_by(slot + 0.1, 30) == slot + 25.0  # 5 s before the next slot
    assert send_by(slot + 29.9, 30) == slot + 25.0  # late in its slot: already past
    assert send_by(slot + 0.1, 10) == slot + 8.0  # a fifth of a short interval
    assert send_by(slot + 0.1, 600) == slot + 595.0  # at most 5 s
    assert send_by(slot + 22.6, 30, offset=22.5) == slot + 47.5  # a sub-slot: its own next one


async def test_a_change_whose_turn_comes_after_the_send_by_time_is_held_and_tried_again() -> None:
    actuator = LimitedActuator(turn_in=40.0)
    w = World(body(), cpu=100.0, actuator=actuator)
    await w.tick(after=0.1)
    assert actuator.budgets == [pytest.approx(24.9)]  # T0 + 25 s, 5 s before the next slot
    assert actuator.applied == [] and actuator.current == 3
    status = w.body["status"]
    assert "pendingAction" not in status and "lastScaleOutTime" not in status
    limited = w.condition("ScalingLimited")
    assert (limited["status"], limited["reason"]) == ("True", "WriteDeferred")
    assert "not sent" in limited["message"]
    assert w.condition("Ready")["status"] == "True"  # nothing failed: it waits its turn
    # the decision is on record at its own time, though nothing was sent
    decided = w.metrics.registry.get_sample_value(
        "stackscaler_last_decision_timestamp_seconds",
        {"kind": "WebTier", "namespace": "shop", "name": "web"},
    )
    assert decided == T0.timestamp() + 0.1

    actuator.turn_in = 10.0  # the next tick's turn comes in time
    await w.tick(after=30)
    assert actuator.applied == [6]
    assert w.body["status"]["lastScaleOutTime"] == "2026-11-26T12:00:30Z"
    assert w.condition("ScalingLimited")["reason"] != "WriteDeferred"
