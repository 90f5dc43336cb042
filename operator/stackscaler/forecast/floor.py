"""From a forecast to capacity: the floor, and how it joins the reactive decision.

The floor is the capacity the forecast's ``upper`` needs at the metric's target, by the
policy's own target-tracking rule (``policy.rules.target_tracking``) with every unit
ready: the recommendation the policy would make at the current capacity if it read the
forecast's load now (its tolerance band included), within the effective [min, max].
It only ever raises: the caller takes ``max(reactive, floor)`` (:func:`raise_to_floor`),
as AWS predictive scaling raises the group's minimum and never scales in on a
prediction.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from stackscaler.forecast.types import Forecast
from stackscaler.model.spec import MetricTarget, ScalingSpec, TargetType, Tolerance
from stackscaler.policy.rules import target_tracking
from stackscaler.policy.types import Decision, Direction, Limit

_NO_BAND = Tolerance.both(0.0)


def units_for_load(load: float, target: MetricTarget) -> int:
    """The capacity at which ``load`` meets ``target``.

    ``AverageValue``: the load is the metric itself (a total), and the policy's rule
    with no capacity yet is ``ceil(load / target)``. ``Value``: the load is the per-unit
    metric summed over the units (AWS's total CPU); one unit carrying all of it reads
    ``load``, and the policy's rule for one unit is ``ceil(1 x load / target)``: the same
    need however the load is spread.
    """
    if load <= 0:
        return 0
    if target.type is TargetType.VALUE:
        return target_tracking(1, load, target, _NO_BAND)
    return target_tracking(0, load, target, _NO_BAND)


def load_of(value: float, units: int, target: MetricTarget) -> float:
    """The load a metric reading stands for: ``value`` for a total (``AverageValue``),
    ``value x units`` for a per-unit metric (``Value``: average CPU x units serving)."""
    return value * units if target.type is TargetType.VALUE else value


def capacity_floor(
    forecast: Forecast,
    target: MetricTarget,
    min_capacity: int,
    max_capacity: int,
    *,
    current: int = 0,
    tolerance: Tolerance = _NO_BAND,
) -> int:
    """The capacity the forecast's ``upper`` needs, within ``[min_capacity, max_capacity]``
    (the effective bounds: never above max). Monotone in the forecast.

    With the resource's ``current`` capacity and ``tolerance``: the recommendation the
    policy would make if it read the forecast's load now, every unit ready
    (``target_tracking``): a load within the tolerance band of the current capacity
    holds it, beyond the band it is ``ceil(load / target)``. The floor then anticipates
    the reactive policy's own decision a lead ahead instead of moving its setpoint (a
    floor at exactly the target would take away the band's slack and cost capacity
    whenever the reactive policy rests in the upper half of its band). Without
    ``current`` (0): ``ceil(load / target)``.
    """
    load = forecast.upper
    if current <= 0 or load <= 0:
        need = units_for_load(load, target)
    elif target.type is TargetType.VALUE:
        need = target_tracking(current, load / current, target, tolerance)
    else:
        need = target_tracking(current, load, target, tolerance)
    return max(min_capacity, min(need, max_capacity))


def raise_to_floor(
    decision: Decision, floor: int, spec: ScalingSpec, now: datetime, why: str
) -> Decision:
    """``max(reactive, floor)``: the decision raised to the forecast's floor, never lowered.

    A floor acts as a raised minimum does (rule 8, bounds win): at once, through
    cooldowns and rate limits, never above the effective max. The history records the
    scale action actually taken (so cooldowns and rate-limit periods count it);
    ``why`` says where the floor comes from (for reasons and the headline).
    """
    capped = floor > decision.max_capacity
    floor = min(floor, decision.max_capacity)
    if floor <= decision.desired:
        held = decision.decrease_held
        if held is not None and held < floor:
            # a table's held-back scale-in taken along later must not go below the floor
            return replace(decision, decrease_held=floor if floor < decision.current else None)
        return decision
    current, desired = decision.current, floor
    t = now.timestamp()
    b = spec.behavior
    keep = max(
        (s.max_step.period_seconds for s in (b.scale_out, b.scale_in) if s.max_step is not None),
        default=0,
    )
    history = decision.history_if_held.with_scale(t, desired - current, keep_seconds=keep)
    direction = (
        Direction.OUT
        if desired > current
        else Direction.IN
        if desired < current
        else Direction.NONE
    )
    reason = f"forecast floor {floor}: {why}"
    limited: Limit | None = Limit.MAX_CAPACITY if capped else None
    if direction is Direction.NONE:
        headline = f"hold {current}: {reason}"
        last = f"no change: {current}"
    else:
        headline = f"{current} -> {desired}: {reason}"
        last = f"{current} -> {desired}"
    reasons = (*decision.reasons[:-1], reason, last)
    return replace(
        decision,
        desired=desired,
        direction=direction,
        limited_by=limited,
        reasons=reasons,
        history=history,
        headline=headline,
        decrease_held=None,
    )
