"""A discrete-time replay of demand through ``policy.decide``.

The capacity model: each unit serves ``capacity_per_unit`` demand per step
at 100% utilization; units start serving ``warmup_seconds`` after launch;
scale-in removes units at once (pending ones first). The metrics the
policy sees are derived from the previous step (a one-period delivery
delay, as with CloudWatch): a ``Value`` metric is utilization in percent
(capped at 100, as CPU is), an ``AverageValue`` metric is the total demand.
The policy is told the units still starting (launched, not yet serving).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from stackscaler.model.spec import ScalingSpec, TargetType
from stackscaler.policy import Direction, History, MetricObservation, Observations, decide


@dataclass(frozen=True)
class SimConfig:
    step_seconds: float = 60.0
    capacity_per_unit: float = 1.0
    warmup_seconds: float = 180.0
    initial_capacity: int | None = None


@dataclass(frozen=True)
class Step:
    time: datetime
    demand: float
    ready: int
    capacity: int
    """Launched units (ready + warming up): what is paid for."""
    desired: int
    utilization: float
    reason: str


@dataclass(frozen=True)
class Summary:
    steps: int
    step_seconds: float
    capacity_unit_hours: float
    oracle_unit_hours: float
    under_provisioned_minutes: float
    scale_actions: int
    peak_capacity: int


def _metrics(
    spec: ScalingSpec, demand: float, ready: int, cap: float
) -> dict[str, MetricObservation]:
    util = demand / (ready * cap) if ready > 0 else math.inf
    out: dict[str, MetricObservation] = {}
    for m in spec.metrics:
        if m.target is not None and m.target.type is TargetType.AVERAGE_VALUE:
            out[m.name] = MetricObservation(demand)
        else:
            out[m.name] = MetricObservation(min(100.0, util * 100.0))
    return out


def simulate(
    spec: ScalingSpec, demand: Sequence[float], start: datetime, config: SimConfig
) -> tuple[list[Step], Summary]:
    cap = config.capacity_per_unit
    capacity = config.initial_capacity if config.initial_capacity is not None else spec.min_capacity
    launches: list[tuple[float, int]] = [(-math.inf, capacity)]  # (ready at, units)
    history = History()
    steps: list[Step] = []
    prev_demand, prev_ready = demand[0] if demand else 0.0, capacity
    actions = 0
    unit_seconds = oracle_seconds = under_seconds = 0.0
    target_util = next(
        (
            m.target.value / 100.0
            for m in spec.metrics
            if m.target is not None and m.target.type is TargetType.VALUE
        ),
        1.0,
    )
    for i, d in enumerate(demand):
        t = i * config.step_seconds
        now = start + timedelta(seconds=t)
        ready = sum(n for at, n in launches if at <= t)
        obs = Observations(
            capacity,
            _metrics(spec, prev_demand, prev_ready, cap),
            starting=max(0, capacity - ready),  # launched, not yet serving
        )
        decision = decide(spec, obs, history, now)
        history = decision.history
        if decision.direction is Direction.OUT:
            launches.append((t + config.warmup_seconds, decision.desired - capacity))
            actions += 1
        elif decision.direction is Direction.IN:
            remove = capacity - decision.desired
            launches.sort(key=lambda x: -x[0])  # newest (pending) first
            kept: list[tuple[float, int]] = []
            for at, n in launches:
                take = min(n, remove)
                remove -= take
                if n - take:
                    kept.append((at, n - take))
            launches = kept
            actions += 1
        capacity = decision.desired
        ready = sum(n for at, n in launches if at <= t)
        util = d / (ready * cap) if ready else (math.inf if d else 0.0)
        steps.append(Step(now, d, ready, capacity, decision.desired, util, decision.headline))
        unit_seconds += capacity * config.step_seconds
        oracle = max(spec.min_capacity, math.ceil(d / (cap * target_util) - 1e-9))
        oracle_seconds += min(oracle, spec.max_capacity) * config.step_seconds
        if util > 1.0:
            under_seconds += config.step_seconds
        prev_demand, prev_ready = d, ready
    return steps, Summary(
        steps=len(steps),
        step_seconds=config.step_seconds,
        capacity_unit_hours=unit_seconds / 3600,
        oracle_unit_hours=oracle_seconds / 3600,
        under_provisioned_minutes=under_seconds / 60,
        scale_actions=actions,
        peak_capacity=max((s.capacity for s in steps), default=0),
    )
