"""The individual scaling rules, each a small pure function.

:func:`stackscaler.policy.decide` composes them; they are public so tests
(and the simulator's baselines) can use them one at a time.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from stackscaler.model.spec import (
    AdjustmentType,
    MaxStep,
    MetricTarget,
    ScalingSpec,
    Select,
    StepScaling,
    TargetType,
)

_EPS = 1e-9


def ceil(x: float) -> int:
    """Ceiling that ignores floating-point noise (3 x 50.0000000001 / 50 is 3)."""
    return math.ceil(x - _EPS)


def target_tracking(current: int, value: float, target: MetricTarget, tolerance: float) -> int:
    """The capacity that brings the metric to its target.

    Value (per-unit metric, HPA's rule): ceil(current x value / target); no
    change while value / target is within 1 +- tolerance.
    AverageValue (a total): ceil(value / target); no change while
    value / (target x current) is within 1 +- tolerance.
    """
    if target.type is TargetType.VALUE:
        ratio = value / target.value
        if abs(ratio - 1.0) <= tolerance:
            return current
        return max(0, ceil(current * ratio))
    wanted = max(0, ceil(value / target.value))
    if current > 0 and abs(value / (target.value * current) - 1.0) <= tolerance:
        return current
    return wanted


def step_scaling(current: int, value: float, steps: StepScaling) -> int | None:
    """The capacity the matching band asks for; None when no band contains the value."""
    for step in steps.steps:
        if not step.contains(value):
            continue
        adj = step.adjustment
        if steps.adjustment_type is AdjustmentType.EXACT:
            return max(0, adj)
        if steps.adjustment_type is AdjustmentType.CHANGE:
            return max(0, current + adj)
        # Percent: AWS truncates toward zero but changes by at least one unit,
        # and by at least minAdjustmentMagnitude when set.
        raw = current * adj / 100.0
        delta = int(raw) if abs(raw) >= 1 else (1 if raw > 0 else -1 if raw < 0 else 0)
        magnitude = steps.min_adjustment_magnitude or 0
        if delta != 0 and abs(delta) < magnitude:
            delta = magnitude if delta > 0 else -magnitude
        return max(0, current + delta)
    return None


def effective_bounds(spec: ScalingSpec, now: datetime) -> tuple[int, int, tuple[str, ...]]:
    """(min, max, active schedule names) at ``now``.

    While schedules are active, the highest minCapacity and the highest
    maxCapacity among them replace the resource's own; if the result has
    min > max, max is raised to min (raising a floor raises the ceiling).
    """
    lo, hi = spec.min_capacity, spec.max_capacity
    mins: list[int] = []
    maxs: list[int] = []
    active: list[str] = []
    for s in spec.schedules:
        duration = timedelta(seconds=s.duration_seconds)
        fire = s.cron.last_fire_at_or_before(now, s.time_zone, duration)
        if fire is None or now >= fire + duration:
            continue
        active.append(s.name)
        if s.min_capacity is not None:
            mins.append(s.min_capacity)
        if s.max_capacity is not None:
            maxs.append(s.max_capacity)
    if mins:
        lo = max(mins)
    if maxs:
        hi = max(maxs)
    return lo, max(lo, hi), tuple(active)


def rate_limit(current: int, changed_in_period: int, step: MaxStep, *, increase: bool) -> int:
    """The furthest capacity reachable in this direction now under ``step``.

    The base is the capacity at the start of the sliding period (current
    minus the changes already made in it). Units and percent give two limits;
    ``select`` picks the larger (Max) or smaller (Min) change. A rate limit
    always allows at least one unit per period, so it never freezes a
    capacity of 0.
    """
    base = current - changed_in_period if increase else current + changed_in_period
    base = max(base, 0)
    allowed: list[int] = []
    if step.units is not None:
        allowed.append(step.units)
    if step.percent is not None:
        allowed.append(ceil(base * step.percent / 100.0))
    change = max(allowed) if step.select is Select.MAX else min(allowed)
    change = max(change, 1)
    if increase:
        return max(current, base + change)
    return min(current, max(0, base - change))
