"""What the reconciler reports about its Events and its capacity in flight on /metrics.

``stackscaler_events_total`` counts every Event a tick wanted to post, by what became of
it: posted, suppressed by the resource's hourly budget, or failed at the API server.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from stackscaler.actuators.base import Capacity
from stackscaler.errors import TargetNotFound
from stackscaler.model.spec import Resource
from stackscaler.observability import OperatorMetrics
from stackscaler.reconcile import EventBudget, Reconciler, Ref
from tests.unit.test_reconcile import (
    T0,
    FakeActuator,
    FakeActuators,
    FakeSources,
    Recorder,
    body,
)

EVENTS = "stackscaler_events_total"


class RefusingRecorder(Recorder):
    """Writes statuses; every Event is refused, as by an API server that is down."""

    async def record(
        self, ref: Ref, type_: str, reason: str, message: str, *, key: str | None = None
    ) -> None:
        raise ConnectionError("connection refused")


@dataclass
class StartingActuator(FakeActuator):
    """An ASG with ``starting`` of its instances still launching and ``leaving`` terminating."""

    starting: int = 0
    leaving: int = 0

    async def observe(self, resource: Resource) -> Capacity:
        return Capacity(
            self.current, self.current - self.starting, is_setpoint=True, removing=self.leaving
        )


class Run:
    def __init__(
        self,
        actuator: FakeActuator,
        *,
        cpu: float | None = 100.0,
        rec: Recorder | None = None,
        budget: EventBudget | None = None,
    ) -> None:
        self.body = body()
        self.actuator = actuator
        self.rec = rec or Recorder()
        self.metrics = OperatorMetrics()
        self.now = T0
        self.reconciler = Reconciler(
            FakeSources({"cpu": cpu}),  # type: ignore[arg-type]
            FakeActuators(actuator),  # type: ignore[arg-type]
            self.rec,
            self.rec,
            metrics=self.metrics,
            clock=lambda: self.now,
            event_budget=budget,
        )

    async def tick(self, after: float = 0.0) -> None:
        self.now += timedelta(seconds=after)
        await self.reconciler.tick(copy.deepcopy(self.body))
        if self.rec.statuses:
            self.body["status"] = self.rec.statuses[-1]

    def events(self, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(EVENTS, {"kind": "WebTier", **labels})


async def test_a_posted_event_is_counted_by_type_and_reason() -> None:
    run = Run(FakeActuator())
    await run.tick()  # 3 at 100% of a 50% target: 6
    assert run.actuator.applied == [6]
    assert run.rec.reasons() == ["ScaledOut"]
    assert run.events(type="Normal", reason="ScaledOut", result="posted") == 1
    assert run.events(type="Normal", reason="ScaledOut", result="failed") is None


async def test_events_past_the_budget_are_counted_as_suppressed() -> None:
    run = Run(FakeActuator(), budget=EventBudget(limit=1))
    await run.tick()  # ScaledOut 3 -> 6: the budget's only Event
    await run.tick(after=61)  # past the cooldown, 6 -> 12 capped at 10: another ScaledOut
    assert run.actuator.applied == [6, 10]
    assert run.rec.reasons() == ["ScaledOut"]  # the second was not posted
    assert run.events(type="Normal", reason="ScaledOut", result="posted") == 1
    assert run.events(type="Normal", reason="ScaledOut", result="suppressed") == 1


async def test_an_event_the_api_server_refuses_is_counted_as_failed() -> None:
    run = Run(FakeActuator(observe_error=TargetNotFound("no group web")), rec=RefusingRecorder())
    await run.tick()
    assert run.body["status"]["conditions"]  # the tick went on and wrote its status
    assert run.events(type="Warning", reason="TargetNotFound", result="failed") == 1
    assert run.events(type="Warning", reason="TargetNotFound", result="posted") is None


async def test_units_starting_and_leaving_are_on_metrics_every_tick() -> None:
    actuator = StartingActuator(current=6, starting=2, leaving=1)
    run = Run(actuator, cpu=50.0)
    await run.tick()
    res: dict[str, Any] = {"kind": "WebTier", "namespace": "shop", "name": "web"}
    value = run.metrics.registry.get_sample_value
    assert value("stackscaler_capacity_current", res) == 6
    assert value("stackscaler_capacity_starting", res) == 2
    assert value("stackscaler_capacity_leaving", res) == 1
    actuator.starting, actuator.leaving = 0, 0
    await run.tick(after=30)
    assert value("stackscaler_capacity_starting", res) == 0
    assert value("stackscaler_capacity_leaving", res) == 0
