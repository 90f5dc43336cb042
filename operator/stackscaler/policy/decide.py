"""``decide(spec, observations, history, now) -> Decision``: the whole policy.

The order of the rules, and why:

1. Effective bounds: schedules active at ``now`` replace min/max.
2. Per-metric recommendations: target tracking (with tolerance) or step
   scaling. Missing, errored or stale metrics are *unknown*.
3. Combination: the highest recommendation wins (scale out if any metric
   asks, scale in only as far as all allow). Unknown metrics never lower
   capacity: with any unknown, the recommendation is at least the current
   capacity; scale-out on the metrics that remain is still allowed. After
   ``failureThreshold`` consecutive ticks with an unknown metric, Hold keeps
   that floor and Fallback raises it to ``fallbackCapacity``.
4. Activation (min 0 only): 0 -> 1 only when a metric is above its
   activation threshold; 1 -> 0 only when every metric is at or below it.
5. Stabilization: scale-in follows the highest recommendation of its
   window, scale-out the lowest of its window.
6. Cooldowns: no scale-out within scaleOut.cooldownSeconds of the last
   scale-out; no scale-in within scaleIn.cooldownSeconds of the last
   scale-in *or* scale-out.
7. Rate limits per direction (units/percent per sliding period).
8. Bounds win last: the result is clamped to [min, max], so a schedule that
   raises the floor acts at once, and a capacity above max comes down even
   inside a cooldown.

Pure: no I/O, no clock; ``now`` must be timezone-aware.
"""

from __future__ import annotations

from datetime import datetime

from stackscaler.model.spec import MetricSpec, ScalingSpec, TargetType, UnavailableAction
from stackscaler.policy.history import History
from stackscaler.policy.rules import effective_bounds, rate_limit, step_scaling, target_tracking
from stackscaler.policy.types import (
    Decision,
    Direction,
    Limit,
    MetricObservation,
    MetricResult,
    MetricState,
    Observations,
)


def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e6 else f"{x:.6g}"


def _evaluate(
    m: MetricSpec, obs: MetricObservation | None, current: int, tolerance: float, t: float
) -> MetricResult:
    target_value = None if m.target is None else m.target.value
    if obs is None or obs.value is None:
        why = "not observed" if obs is None else (obs.error or "no value")
        return MetricResult(
            m.name, MetricState.UNKNOWN, None, target_value, None, f"{m.name}: unknown ({why})"
        )
    if obs.timestamp is not None:
        age = t - obs.timestamp.timestamp()
        if age > m.stale_after_seconds:
            return MetricResult(
                m.name,
                MetricState.STALE,
                obs.value,
                target_value,
                None,
                f"{m.name}: stale (newest sample {age:.0f}s old, limit {m.stale_after_seconds}s)",
            )
    value = obs.value
    if m.target is not None:
        rec = target_tracking(current, value, m.target, tolerance)
        if m.target.type is TargetType.VALUE:
            ratio = value / m.target.value
            how = f"{_fmt(value)} vs target {_fmt(m.target.value)} (ratio {ratio:.2f})"
        else:
            ratio = value / (m.target.value * current) if current else float("inf")
            how = f"{_fmt(value)} total at {_fmt(m.target.value)} per unit"
        note = ""
        if rec == current and current > 0 and ratio != 1.0 and abs(ratio - 1.0) <= tolerance:
            note = f" (within tolerance {tolerance:g})"
        return MetricResult(
            m.name, MetricState.KNOWN, value, target_value, rec, f"{m.name}: {how} -> {rec}{note}"
        )
    assert m.step_scaling is not None
    stepped = step_scaling(current, value, m.step_scaling)
    rec = current if stepped is None else stepped
    band = "no band matches" if stepped is None else f"{m.step_scaling.adjustment_type} band"
    return MetricResult(
        m.name, MetricState.KNOWN, value, None, rec, f"{m.name}: {_fmt(value)}, {band} -> {rec}"
    )


def decide(
    spec: ScalingSpec, observations: Observations, history: History, now: datetime
) -> Decision:
    """Decide the capacity of one resource at ``now``. Deterministic and pure."""
    if now.tzinfo is None:
        raise ValueError("decide() needs a timezone-aware 'now'")
    t = now.timestamp()
    current = max(0, observations.capacity)
    lo, hi, schedules = effective_bounds(spec, now)
    reasons: list[str] = []
    if schedules:
        reasons.append(f"schedule {', '.join(schedules)} active: bounds [{lo}, {hi}]")

    # 2. per-metric recommendations
    results = tuple(
        _evaluate(m, observations.metrics.get(m.name), current, spec.tolerance, t)
        for m in spec.metrics
    )
    reasons.extend(r.detail for r in results)
    known = [r for r in results if r.state is MetricState.KNOWN]
    unknown = [r for r in results if r.state is not MetricState.KNOWN]

    # 3. combination, unknown floor, failure counting and fallback
    limited: Limit | None = None
    recs = [r.recommendation for r in known if r.recommendation is not None]
    raw = max(recs) if recs else current
    omu = spec.on_metrics_unavailable
    failures = history.consecutive_failures + 1 if unknown else 0
    fallback = False
    if unknown:
        if raw < current:
            limited = Limit.UNKNOWN_METRICS
        raw = max(raw, current)
        reasons.append(
            f"{len(unknown)} metric(s) unknown ({failures} consecutive tick(s)): "
            "no scale-in while unknown"
        )
        if failures >= omu.failure_threshold:
            if omu.action is UnavailableAction.FALLBACK and omu.fallback_capacity is not None:
                fallback = True
                if omu.fallback_capacity > raw:
                    raw = omu.fallback_capacity
                    limited = Limit.FALLBACK
                reasons.append(
                    f"fallback after {failures} failed tick(s): at least {omu.fallback_capacity}"
                )
            else:
                reasons.append(f"holding after {failures} failed tick(s)")

    # 4. activation (scale to and from zero)
    if lo == 0 and spec.metrics:
        active = any(
            r.value is not None and r.value > m.activation_threshold
            for r, m in zip(results, spec.metrics, strict=True)
            if r.state is MetricState.KNOWN
        )
        if active:
            if raw < 1:
                reasons.append("active: a metric is above its activation threshold -> at least 1")
            raw = max(raw, 1)
        elif not unknown and not fallback:
            if raw > 0:
                reasons.append("inactive: every metric at or below its activation threshold -> 0")
            raw = 0

    recommendation = raw
    b = spec.behavior
    next_history = History(
        last_scale_out=history.last_scale_out,
        last_scale_in=history.last_scale_in,
        scale_in_window=history.scale_in_window,
        scale_out_window=history.scale_out_window,
        events=history.events,
        consecutive_failures=failures,
        fallback_active=fallback,
    ).with_recommendation(
        t,
        min(max(raw, lo), hi),
        in_window=b.scale_in.stabilization_window_seconds,
        out_window=b.scale_out.stabilization_window_seconds,
    )

    # 5. stabilization
    proposal = min(max(raw, lo), hi)
    if proposal < current:
        peak = next_history.max_in_window(t, b.scale_in.stabilization_window_seconds)
        stabilized = min(current, max(proposal, peak if peak is not None else proposal))
        if stabilized > proposal:
            limited = Limit.SCALE_IN_STABILIZATION
            reasons.append(
                f"scale-in stabilization: highest recommendation of the last "
                f"{b.scale_in.stabilization_window_seconds}s is {stabilized}"
            )
            proposal = stabilized
    elif proposal > current:
        floor = next_history.min_in_window(t, b.scale_out.stabilization_window_seconds)
        stabilized = max(current, min(proposal, floor if floor is not None else proposal))
        if stabilized < proposal:
            limited = Limit.SCALE_OUT_STABILIZATION
            reasons.append(
                f"scale-out stabilization: lowest recommendation of the last "
                f"{b.scale_out.stabilization_window_seconds}s is {stabilized}"
            )
            proposal = stabilized

    # 6. cooldowns
    if proposal > current and history.last_scale_out is not None:
        until = history.last_scale_out + b.scale_out.cooldown_seconds
        if t < until:
            limited = Limit.SCALE_OUT_COOLDOWN
            reasons.append(f"scale-out cooldown: {until - t:.0f}s left")
            proposal = current
    if proposal < current:
        last = max(
            (x for x in (history.last_scale_in, history.last_scale_out) if x is not None),
            default=None,
        )
        if last is not None and t < last + b.scale_in.cooldown_seconds:
            limited = Limit.SCALE_IN_COOLDOWN
            reasons.append(f"scale-in cooldown: {last + b.scale_in.cooldown_seconds - t:.0f}s left")
            proposal = current

    # 7. rate limits
    if proposal > current and b.scale_out.max_step is not None:
        ms = b.scale_out.max_step
        added = history.change_in_period(t, ms.period_seconds, increases=True)
        limit = rate_limit(current, added, ms, increase=True)
        if proposal > limit:
            limited = Limit.SCALE_OUT_RATE_LIMIT
            reasons.append(f"scale-out rate limit: at most {limit} within {ms.period_seconds}s")
            proposal = limit
    elif proposal < current and b.scale_in.max_step is not None:
        ms = b.scale_in.max_step
        removed = history.change_in_period(t, ms.period_seconds, increases=False)
        limit = rate_limit(current, removed, ms, increase=False)
        if proposal < limit:
            limited = Limit.SCALE_IN_RATE_LIMIT
            reasons.append(f"scale-in rate limit: at least {limit} within {ms.period_seconds}s")
            proposal = limit

    # 8. bounds win
    if proposal > hi or (raw > hi and proposal == hi):
        proposal = hi
        limited = Limit.MAX_CAPACITY
        reasons.append(f"capped at maxCapacity {hi}")
    elif proposal < lo or (raw < lo and proposal == lo):
        proposal = lo
        limited = Limit.MIN_CAPACITY
        reasons.append(f"raised to minCapacity {lo}")

    desired = proposal
    direction = (
        Direction.OUT
        if desired > current
        else Direction.IN
        if desired < current
        else Direction.NONE
    )
    keep = max(
        (s.max_step.period_seconds for s in (b.scale_out, b.scale_in) if s.max_step is not None),
        default=0,
    )
    held_history = next_history
    next_history = next_history.with_scale(t, desired - current, keep_seconds=keep)
    driver = max(
        (r for r in known if r.recommendation is not None),
        key=lambda r: r.recommendation or 0,
        default=None,
    )
    why = reasons[-1] if limited is not None else (driver.detail if driver else "")
    if direction is Direction.NONE:
        headline = f"hold {current}" + (f": {why}" if why else "")
        reasons.append(f"no change: {current}")
    else:
        headline = f"{current} -> {desired}" + (f": {why}" if why else "")
        reasons.append(f"{current} -> {desired}")
    return Decision(
        current=current,
        desired=desired,
        direction=direction,
        limited_by=limited,
        reasons=tuple(reasons),
        metrics=results,
        recommendation=recommendation,
        min_capacity=lo,
        max_capacity=hi,
        active_schedules=schedules,
        metrics_available=not unknown,
        fallback_active=fallback,
        history=next_history,
        history_if_held=held_history,
        headline=headline,
    )
