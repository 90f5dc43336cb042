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
    Tolerance,
)
from stackscaler.policy.history import History

_EPS = 1e-9


def ceil(x: float) -> int:
    """Ceiling that ignores floating-point noise (3 x 50.0000000001 / 50 is 3)."""
    return math.ceil(x - _EPS)


def ceiling_edge(target: MetricTarget) -> float | None:
    """The ratio (value / target) halfway from a ``Value`` target to its ceiling, the most
    the tolerance band may reach; None without a ceiling above the target.

    A 90% CPU target with tolerance 0.2 would otherwise wait for 108%, which a saturated
    CPU never reads, and never scale out; with the ceiling 100 it scales out above 95%.
    """
    c = target.ceiling
    if c is None or target.type is not TargetType.VALUE or c <= target.value:
        return None
    return (1.0 + c / target.value) / 2.0


def within(ratio: float, target: MetricTarget, tolerance: Tolerance) -> bool:
    """True while ``ratio`` (value / target) is inside the band, ``[1 - below, 1 + above]``
    (the HPA's float comparison, :meth:`Tolerance.holds`), and, for a target with a
    ceiling, not above :func:`ceiling_edge`."""
    if not tolerance.holds(ratio):
        return False
    edge = ceiling_edge(target)
    return edge is None or ratio <= edge


def target_tracking(current: int, value: float, target: MetricTarget, tolerance: Tolerance) -> int:
    """The capacity that brings the metric to its target.

    Value (per-unit metric, HPA's rule): ceil(current x value / target); no
    change while value / target is within the band.
    AverageValue (a total): ceil(value / target); no change while
    value / (target x current) is within the band.
    """
    if target.type is TargetType.VALUE:
        ratio = value / target.value
        if within(ratio, target, tolerance):
            return current
        return max(0, ceil(current * ratio))
    wanted = max(0, ceil(value / target.value))
    if current > 0 and within(value / (target.value * current), target, tolerance):
        return current
    return wanted


def utilization_need(
    capacity: int, ready: int, value: float, target: MetricTarget, tolerance: Tolerance
) -> int:
    """A ``Value`` (per-unit) target while some units of ``capacity`` are still starting.

    The metric comes only from the ``ready`` units, so the need is computed from them:
    ``ceil(ready x value / target)`` (the HPA's rule for pods not ready, and AWS's for
    instances in warm-up). The units starting are capacity already ordered: the answer is
    compared with ``capacity`` by the caller, never multiplied again.

    Unchanged (``capacity``) while ``value / target`` is within the band (as
    with every unit ready), and also while the need is within the band of the
    capacity already ordered: that is the ``value / target`` the same demand will read
    once every ordered unit is ready (and the HPA's tolerance with unready pods counted
    at 0%), so the answer does not depend on how much of the capacity is still starting.
    With no unit ready the metric says nothing about demand: unchanged. With
    ``ready == capacity`` this is exactly :func:`target_tracking`.
    """
    if ready <= 0:
        return capacity
    ratio = value / target.value
    if within(ratio, target, tolerance):
        return capacity
    exact = ready * ratio
    if capacity > 0 and within(exact / capacity, target, tolerance):
        return capacity
    return max(0, ceil(exact))


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


def rate_limit(current: int, net_change_in_period: int, step: MaxStep, *, increase: bool) -> int:
    """The furthest capacity reachable in this direction now under ``step``.

    The base is the capacity at the start of the sliding period: current minus the net
    change made in it, scale-outs and scale-ins alike (the HPA's periodStartReplicas =
    current - added + deleted). Units and percent give two limits; ``select`` picks the
    larger (Max) or smaller (Min) change. A rate limit always allows at least one unit
    per period, so it never freezes a capacity of 0; and it never asks to move against
    its direction (a period that already moved further keeps ``current``).
    """
    base = max(current - net_change_in_period, 0)
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


def scale_in_cooldown_until(history: History, cooldown_seconds: float) -> float | None:
    """When the scale-in cooldown ends: ``cooldown_seconds`` after the last scale-in *or*
    scale-out (a scale-out restarts it, as AWS simple scaling does). None before the first
    scale action; a time in the past when it has already ended."""
    last = max(
        (x for x in (history.last_scale_in, history.last_scale_out) if x is not None),
        default=None,
    )
    return None if last is None else last + cooldown_seconds
