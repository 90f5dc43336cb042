"""The policies the simulator compares, all driving the same capacity model.

- ``default``: :func:`stackscaler.policy.decide` with the tier's own spec,
  every ``pollIntervalSeconds``, exactly as the operator runs it.
- ``hpa``: the Kubernetes HPA / KEDA rule, expressed through the same
  ``decide``: 15 s sync, 10% tolerance, 300 s scale-in stabilization,
  scale-up by at most max(100%, 4 units) per 15 s, scale-down by up to
  100% per 15 s, no cooldowns, no schedules.
- ``target-tracking``: AWS target tracking as documented: one-minute
  datapoints; scale out after 3 consecutive datapoints above the target,
  scale in after 15 consecutive below it, to ceil(capacity x value /
  target); 300 s default cooldowns (no scale-out within 300 s of a
  scale-out, no scale-in within 300 s of any scale activity).
- ``static-peak``: a constant capacity, the oracle's peak.
- ``oracle``: perfect foresight of the same target: at every step the
  smallest capacity keeping utilization <= the tier's target, ordered a
  warm-up ahead (the capacity launched at t is the highest need within
  [t, t + warm-up]). Its capacity-unit-hours are the lower bound.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from stackscaler.model.spec import (
    Behavior,
    DirectionBehavior,
    MaxStep,
    ScalingSpec,
    Select,
    TargetType,
)
from stackscaler.policy import History, MetricObservation, Observations, decide
from stackscaler.sim.model import FeedSpec, Signals

POLICIES = ("default", "hpa", "target-tracking", "static-peak", "oracle")


class Controller(Protocol):
    name: str
    interval_steps: int
    """Decide every this many steps."""

    def desired(self, i: int, now: datetime, capacity: int, signals: Signals) -> int: ...


class DecideController:
    """Runs ``policy.decide`` on the simulated metric feeds."""

    def __init__(
        self,
        name: str,
        spec: ScalingSpec,
        feeds: Sequence[FeedSpec],
        step_seconds: float,
        interval_seconds: float,
    ) -> None:
        self.name = name
        self.spec = spec
        self.feeds = tuple(feeds)
        self.step_seconds = step_seconds
        self.interval_steps = max(1, round(interval_seconds / step_seconds))
        self.history = History()
        self.last_reason = ""

    def desired(self, i: int, now: datetime, capacity: int, signals: Signals) -> int:
        metrics: dict[str, MetricObservation] = {}
        t0 = now.timestamp()
        for f in self.feeds:
            value, end = signals.read(f, i)
            age = (i - end) * self.step_seconds
            metrics[f.name] = MetricObservation(
                value, datetime.fromtimestamp(t0 - age, now.tzinfo) if age else None
            )
        d = decide(self.spec, Observations(capacity, metrics), self.history, now)
        self.history = d.history
        self.last_reason = d.headline
        return d.desired


def hpa_spec(spec: ScalingSpec) -> ScalingSpec:
    """The tier's metrics and bounds under the HPA's default behavior."""
    return replace(
        spec,
        tolerance=0.1,
        schedules=(),
        behavior=Behavior(
            scale_out=DirectionBehavior(0, 0, MaxStep(4, 100, 15, Select.MAX)),
            scale_in=DirectionBehavior(0, 300, MaxStep(None, 100, 15, Select.MAX)),
        ),
        poll_interval_seconds=15,
    )


class TargetTrackingController:
    """AWS target tracking: alarms on one-minute datapoints, 300 s cooldowns."""

    OUT_DATAPOINTS = 3
    IN_DATAPOINTS = 15
    COOLDOWN = 300.0

    def __init__(self, spec: ScalingSpec, feeds: Sequence[FeedSpec], step_seconds: float) -> None:
        self.name = "target-tracking"
        self.spec = spec
        tracked = [(m, f) for m, f in zip(spec.metrics, feeds, strict=True) if m.target]
        if not tracked:
            raise ValueError("target tracking needs a metric with a target")
        self.metric, feed = tracked[0]
        self.feed = replace(feed, period_steps=max(1, round(60.0 / step_seconds)))
        self.interval_steps = self.feed.period_steps
        self.ratios: deque[float] = deque(maxlen=self.IN_DATAPOINTS)
        self.last_out = -math.inf
        self.last_any = -math.inf
        self.last_reason = ""

    def desired(self, i: int, now: datetime, capacity: int, signals: Signals) -> int:
        t = now.timestamp()
        value, _ = signals.read(self.feed, i)
        target = self.metric.target
        assert target is not None
        if target.type is TargetType.VALUE:
            ratio = value / target.value
        else:
            ratio = value / (target.value * capacity) if capacity else math.inf
        self.ratios.append(ratio)
        lo, hi = self.spec.min_capacity, self.spec.max_capacity
        wanted = (
            max(0, math.ceil(capacity * ratio - 1e-9))
            if target.type is TargetType.VALUE
            else max(0, math.ceil(value / target.value - 1e-9))
        )
        wanted = min(max(wanted, lo), hi)
        recent = list(self.ratios)
        out = len(recent) >= self.OUT_DATAPOINTS and all(
            r > 1.0 for r in recent[-self.OUT_DATAPOINTS :]
        )
        in_ = len(recent) >= self.IN_DATAPOINTS and all(r < 1.0 for r in recent)
        if out and wanted > capacity and t >= self.last_out + self.COOLDOWN:
            self.last_out = self.last_any = t
            self.last_reason = f"alarm high: {capacity} -> {wanted}"
            return wanted
        if in_ and wanted < capacity and t >= self.last_any + self.COOLDOWN:
            self.last_any = t
            self.last_reason = f"alarm low: {capacity} -> {wanted}"
            return wanted
        self.last_reason = f"hold {capacity}"
        return min(max(capacity, lo), hi)


class PlanController:
    """Follows a precomputed capacity plan (static-peak, oracle)."""

    def __init__(self, name: str, plan: Sequence[int]) -> None:
        self.name = name
        self.plan = plan
        self.interval_steps = 1
        self.last_reason = name

    def desired(self, i: int, now: datetime, capacity: int, signals: Signals) -> int:
        return self.plan[i]


def oracle_plan(need: Sequence[int], warmup_steps: int) -> list[int]:
    """Capacity launched at each step: the highest need within [i, i + warm-up] (sliding max)."""
    n = len(need)
    out = [0] * n
    window: deque[int] = deque()  # indexes with decreasing need
    j = 0
    for i in range(n):
        while j < n and j <= i + warmup_steps:
            while window and need[window[-1]] <= need[j]:
                window.pop()
            window.append(j)
            j += 1
        while window[0] < i:
            window.popleft()
        out[i] = need[window[0]]
    return out
