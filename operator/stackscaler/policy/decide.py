"""``decide(spec, observations, history, now) -> Decision``: the whole policy.

The order of the rules, and why:

1. Effective bounds: schedules active at ``now`` replace min/max.
2. Per-metric recommendations: target tracking (with tolerance) or step
   scaling. Missing, errored or stale metrics are *unknown*. Capacity in
   flight: a per-unit (``Value``) metric comes only from the units that are
   ready, so its need is computed over them; step adjustments count from the
   ready units too; units starting are capacity already ordered (AWS instance
   warm-up). Totals (``AverageValue``) are unchanged.
3. Combination: the highest recommendation wins (scale out if any metric
   asks, scale in only as far as all allow). Unknown metrics never lower
   capacity: with any unknown, the recommendation is at least the current
   capacity; scale-out on the metrics that remain is still allowed. After
   ``failureThreshold`` consecutive ticks with an unknown metric, Hold keeps
   that floor and Fallback raises it to ``fallbackCapacity``. Throttling: a
   throttle metric above zero raises the recommendation to at least
   ``throttled_need`` (demand served plus refused), and that scale-out skips
   the scale-out stabilization window and cooldown (rules 5 and 6).
4. Activation (min 0 only): 0 -> 1 only when a metric is above its
   activation threshold; 1 -> 0 only when every metric is at or below it.
5. Stabilization: scale-in follows the highest recommendation of its
   window, scale-out the lowest of its window. A newly seen resource (empty
   scale-in window) records its current capacity first, as the HPA does.
6. Cooldowns: no scale-out within scaleOut.cooldownSeconds of the last
   scale-out; no scale-in within scaleIn.cooldownSeconds of the last
   scale-in *or* scale-out. Warm-up: no scale-in while units are starting,
   when a metric reads load per ready unit (Value targets, step scaling).
7. Rate limits per direction (units/percent per sliding period, from the
   capacity at the start of the period: current minus the net change in it).
8. Bounds win last: the result is clamped to [min, max], so a schedule that
   raises the floor acts at once, and a capacity above max comes down even
   inside a cooldown.
9. Decrease budget (a DynamoDB table's, only when ``observations.decreases``
   is set): a scale-in spends one of the UTC day's scarce decreases, so it is
   spent only where it saves the most (``policy/decreases.py``); with none
   left, no scale-in until the next is earned, even above max (DynamoDB
   refuses it).

Pure: no I/O, no clock; ``now`` must be timezone-aware.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from stackscaler.model.spec import (
    CloudWatchSource,
    MetricSpec,
    MetricTarget,
    ScalingSpec,
    TargetType,
    Tolerance,
    UnavailableAction,
)
from stackscaler.policy.budget import DecreaseBudget
from stackscaler.policy.decreases import SETTLE_SECONDS, spend_decrease, throttled_need
from stackscaler.policy.history import History
from stackscaler.policy.rules import (
    ceiling_edge,
    effective_bounds,
    rate_limit,
    scale_in_cooldown_until,
    step_scaling,
    target_tracking,
    utilization_need,
    within,
)
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


def _ceiling_note(ratio: float, target: MetricTarget, tolerance: Tolerance) -> str:
    """Why a value inside the band still scales out: above the ceiling's edge."""
    edge = ceiling_edge(target)
    if edge is None or ratio <= edge or not tolerance.holds(ratio):
        return ""
    return (
        f" (above {_fmt(edge * target.value)}, halfway to the ceiling "
        f"{_fmt(target.ceiling or 0.0)}: tolerance {tolerance.above:g} would wait for "
        f"{_fmt(target.value * (1 + tolerance.above))}, which a saturated metric never reads)"
    )


def _evaluate(
    m: MetricSpec,
    obs: MetricObservation | None,
    current: int,
    ready: int,
    *,
    tolerance: Tolerance,
    t: float,
) -> MetricResult:
    """One metric's recommendation; ``ready < current`` when units are starting."""
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
    in_flight = ready < current
    if m.target is not None and m.target.type is TargetType.VALUE and in_flight:
        rec = utilization_need(current, ready, value, m.target, tolerance)
        ratio = value / m.target.value
        if ready == 0:
            how = (
                f"{_fmt(value)} vs target {_fmt(m.target.value)}, "
                f"none of the {current} units ready (says nothing about demand)"
            )
            note = ""
        else:
            how = (
                f"{_fmt(value)} vs target {_fmt(m.target.value)} (ratio {ratio:.2f}) "
                f"over the {ready} ready"
            )
            note = _ceiling_note(ratio, m.target, tolerance)
            if rec == current and ratio != 1.0:
                if within(ratio, m.target, tolerance):
                    note = f" (within tolerance {tolerance.side(ratio):g})"
                else:
                    side = tolerance.side(ready * ratio / current)
                    note = (
                        f" (need {_fmt(ready * ratio)} within tolerance {side:g} "
                        f"of the {current} ordered)"
                    )
        return MetricResult(
            m.name, MetricState.KNOWN, value, target_value, rec, f"{m.name}: {how} -> {rec}{note}"
        )
    if m.target is not None:
        rec = target_tracking(current, value, m.target, tolerance)
        if m.target.type is TargetType.VALUE:
            ratio = value / m.target.value
            how = f"{_fmt(value)} vs target {_fmt(m.target.value)} (ratio {ratio:.2f})"
        else:
            ratio = value / (m.target.value * current) if current else float("inf")
            how = f"{_fmt(value)} total at {_fmt(m.target.value)} per unit"
        note = _ceiling_note(ratio, m.target, tolerance)
        if rec == current and current > 0 and ratio != 1.0 and within(ratio, m.target, tolerance):
            note = f" (within tolerance {tolerance.side(ratio):g})"
        return MetricResult(
            m.name, MetricState.KNOWN, value, target_value, rec, f"{m.name}: {how} -> {rec}{note}"
        )
    assert m.step_scaling is not None
    # AWS step scaling with warm-up: adjustments count from the units that are not
    # warming up; those are capacity already ordered (compared with ``current`` later).
    stepped = step_scaling(ready, value, m.step_scaling)
    rec = current if stepped is None else stepped
    band = "no band matches" if stepped is None else f"{m.step_scaling.adjustment_type} band"
    if in_flight and stepped is not None:
        band += f" from the {ready} ready"
    return MetricResult(
        m.name, MetricState.KNOWN, value, None, rec, f"{m.name}: {_fmt(value)}, {band} -> {rec}"
    )


def _timed(r: MetricResult, obs: MetricObservation | None, now: datetime) -> MetricResult:
    """The result with the time its value was measured (a value without one: now)."""
    if r.value is None or obs is None:
        return r
    return replace(r, time=obs.timestamp or now)


def _in_flight(
    spec: ScalingSpec,
    results: tuple[MetricResult, ...],
    current: int,
    starting: int,
    leaving: int,
) -> str:
    """The reason that says how the units starting and leaving were used."""
    leaving_note = f", {leaving} leaving (not in capacity)" if leaving else ""
    if not starting:
        return f"{leaving} leaving (being removed, not in the capacity of {current})"
    head = f"{starting} of {current} units starting{leaving_note}"
    ready = current - starting
    per_unit: list[str] = []  # how each per-unit metric and step policy used the ready units
    silent: list[str] = []  # per-unit metrics with no unit ready to measure
    totals: list[str] = []
    for r, m in zip(results, spec.metrics, strict=True):
        if r.state is not MetricState.KNOWN:
            continue
        if m.step_scaling is not None:
            per_unit.append(f"{r.name} steps from the {ready} ready -> {r.recommendation}")
        elif m.target is not None and m.target.type is TargetType.VALUE:
            if ready == 0:
                silent.append(r.name)
            else:
                per_unit.append(f"{r.name} computed over the {ready} ready -> {r.recommendation}")
        else:
            totals.append(r.name)
    if ready == 0:
        head += ", none ready"
    parts = list(per_unit)
    if silent:
        parts.append(
            f"{', '.join(silent)} {'says' if len(silent) == 1 else 'say'} nothing about demand"
        )
    if totals:
        parts.append(f"{', '.join(totals)} {'is a total' if len(totals) == 1 else 'are totals'}")
    body = "; ".join(parts) + "; " if parts else ""
    return f"{head}: {body}{current} already ordered"


def _per_unit(spec: ScalingSpec) -> bool:
    """Whether a metric reads load per ready unit (a Value target, or step scaling)."""
    return any(
        m.step_scaling is not None or (m.target is not None and m.target.type is TargetType.VALUE)
        for m in spec.metrics
    )


THROTTLE_PERIOD_SECONDS = 60
"""The period of a throttle metric read from a source that does not say (per minute)."""


def _throttling(
    spec: ScalingSpec,
    results: tuple[MetricResult, ...],
    current: int,
    last_scale_out: float | None,
) -> tuple[int, str] | None:
    """Rule 3's throttle signal: (the need, the reason) while a throttle metric is above 0.

    The refused events are per the metric's period (its CloudWatch period, else a
    minute); the totals it adds to are the known AverageValue metrics (a table's
    consumed units per second at its target utilization).
    """
    throttled = 0.0
    period = float(THROTTLE_PERIOD_SECONDS)
    names: list[str] = []
    ends: list[float] = []
    for r, m in zip(results, spec.metrics, strict=True):
        if not m.throttle or r.state is not MetricState.KNOWN or not r.value or r.value <= 0:
            continue
        throttled += r.value
        names.append(m.name)
        if isinstance(m.source, CloudWatchSource):
            period = float(m.source.period_seconds)
        if r.time is not None:
            ends.append(r.time.timestamp())
    # a sample's time is the end of its period: fresh when the whole period came after
    # the last scale-out (the refusals happened at the current capacity)
    fresh = last_scale_out is None or not ends or min(ends) - period >= last_scale_out
    if throttled <= 0:
        return None
    totals = [
        (r.value, m.target.value)
        for r, m in zip(results, spec.metrics, strict=True)
        if r.state is MetricState.KNOWN
        and r.value is not None
        and not m.throttle
        and m.target is not None
        and m.target.type is TargetType.AVERAGE_VALUE
    ]
    need = throttled_need(current, throttled, period, totals, fresh=fresh)
    served = " + ".join(_fmt(v) for v, _ in totals) or "nothing known"
    seen = "" if fresh else " (a sample from before the last scale-out: served plus refused only)"
    return need, (
        f"throttled: {', '.join(names)} {_fmt(throttled)} in {period:.0f}s "
        f"({_fmt(throttled / period)}/s refused, {served}/s served) -> at least {need}, "
        f"at once{seen}"
    )


def _budget(
    budget: DecreaseBudget | None,
    current: int,
    proposal: int,
    *,
    t: float,
    history: History,
    window: float,
) -> tuple[int, Limit | None, str | None]:
    """Rule 9: whether a scale-in spends one of the table's decreases now.

    ``history`` holds this tick's recommendation: the highest of its last
    ``SETTLE_SECONDS`` (within the scale-in ``window``) says whether a fall has settled.
    """
    if budget is None or proposal >= current:
        return proposal, None, None
    recent = history.max_in_window(t, min(SETTLE_SECONDS, window)) if window > 0 else None
    spend = spend_decrease(budget, current, proposal, t, recent)
    if not spend.held:
        return spend.desired, None, spend.reason
    limit = Limit.DECREASE_SAVED if spend.saved else Limit.DECREASE_BUDGET
    return spend.desired, limit, spend.reason


def decide(
    spec: ScalingSpec, observations: Observations, history: History, now: datetime
) -> Decision:
    """Decide the capacity of one resource at ``now``. Deterministic and pure."""
    if now.tzinfo is None:
        raise ValueError("decide() needs a timezone-aware 'now'")
    t = now.timestamp()
    current = max(0, observations.capacity)
    starting = min(max(0, observations.starting), current)
    leaving = max(0, observations.leaving)
    ready = current - starting
    lo, hi, schedules = effective_bounds(spec, now)
    reasons: list[str] = []
    if schedules:
        reasons.append(f"schedule {', '.join(schedules)} active: bounds [{lo}, {hi}]")

    # 2. per-metric recommendations (per-unit metrics over the units that are ready)
    results = tuple(
        _timed(
            _evaluate(
                m, observations.metrics.get(m.name), current, ready, tolerance=spec.band, t=t
            ),
            observations.metrics.get(m.name),
            now,
        )
        for m in spec.metrics
    )
    reasons.extend(r.detail for r in results)
    if starting or leaving:
        reasons.append(_in_flight(spec, results, current, starting, leaving))
    known = [r for r in results if r.state is MetricState.KNOWN]
    unknown = [r for r in results if r.state is not MetricState.KNOWN]
    throttling = _throttling(spec, results, current, history.last_scale_out)

    # 3. combination, unknown floor, failure counting and fallback
    limited: Limit | None = None
    recs = [r.recommendation for r in known if r.recommendation is not None]
    raw = max(recs) if recs else current
    omu = spec.on_metrics_unavailable
    # counted up to the threshold only: more failures change nothing, and a count that
    # grew every tick would make a long outage rewrite the status every tick
    failures = min(history.consecutive_failures + 1, omu.failure_threshold) if unknown else 0
    ticks = (
        f"{failures}"
        if history.consecutive_failures < omu.failure_threshold
        else f"{omu.failure_threshold} or more"
    )
    fallback = False
    if unknown:
        if raw < current:
            limited = Limit.UNKNOWN_METRICS
        raw = max(raw, current)
        reasons.append(
            f"{len(unknown)} metric(s) unknown ({ticks} consecutive tick(s)): "
            "no scale-in while unknown"
        )
        if failures >= omu.failure_threshold:
            if omu.action is UnavailableAction.FALLBACK and omu.fallback_capacity is not None:
                fallback = True
                if omu.fallback_capacity > raw:
                    raw = omu.fallback_capacity
                    limited = Limit.FALLBACK
                reasons.append(
                    f"fallback after {ticks} failed tick(s): at least {omu.fallback_capacity}"
                )
            else:
                reasons.append(f"holding after {ticks} failed tick(s)")

    if throttling is not None:
        raw = max(raw, throttling[0])
        reasons.append(throttling[1])

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
    # A newly seen resource (or a reset history) records its current capacity as the
    # first recommendation of its scale-in window, as the HPA does: no scale-in during
    # its first window. Recorded within the bounds, so the bounds still win.
    opened = history.with_first_window(
        t, min(max(current, lo), hi), in_window=b.scale_in.stabilization_window_seconds
    )
    first_window = opened is not history
    next_history = History(
        last_scale_out=history.last_scale_out,
        last_scale_in=history.last_scale_in,
        scale_in_window=opened.scale_in_window,
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
            first = (
                " (first window: the current capacity counts as its first recommendation)"
                if first_window
                else ""
            )
            reasons.append(
                f"scale-in stabilization: highest recommendation of the last "
                f"{b.scale_in.stabilization_window_seconds}s is {stabilized}{first}"
            )
            proposal = stabilized
    elif proposal > current and throttling is None:
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
    if proposal > current and history.last_scale_out is not None and throttling is None:
        until = history.last_scale_out + b.scale_out.cooldown_seconds
        if t < until:
            limited = Limit.SCALE_OUT_COOLDOWN
            reasons.append(f"scale-out cooldown: {until - t:.0f}s left")
            proposal = current
    if proposal < current:
        cooled = scale_in_cooldown_until(history, b.scale_in.cooldown_seconds)
        if cooled is not None and t < cooled:
            limited = Limit.SCALE_IN_COOLDOWN
            reasons.append(f"scale-in cooldown: {cooled - t:.0f}s left")
            proposal = current
    # warm-up: what the units starting will carry of a per-unit metric is not known yet
    # (AWS blocks scale-in until instance warm-up ends); totals and backlogs measure
    # demand itself, whoever serves it, so they scale in as before
    if proposal < current and starting and _per_unit(spec):
        limited = Limit.WARMUP
        reasons.append(f"no scale-in while {starting} of {current} units are starting (warm-up)")
        proposal = current

    # 7. rate limits
    if proposal > current and b.scale_out.max_step is not None:
        ms = b.scale_out.max_step
        net = history.net_change_in_period(t, ms.period_seconds)
        limit = rate_limit(current, net, ms, increase=True)
        if proposal > limit:
            limited = Limit.SCALE_OUT_RATE_LIMIT
            reasons.append(f"scale-out rate limit: at most {limit} within {ms.period_seconds}s")
            proposal = limit
    elif proposal < current and b.scale_in.max_step is not None:
        ms = b.scale_in.max_step
        net = history.net_change_in_period(t, ms.period_seconds)
        limit = rate_limit(current, net, ms, increase=False)
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

    # 9. the decrease budget (a DynamoDB table's): a scale-in spends a scarce decrease
    wanted = proposal
    proposal, budget_limit, budget_reason = _budget(
        observations.decreases,
        current,
        proposal,
        t=t,
        history=next_history,
        window=b.scale_in.stabilization_window_seconds,
    )
    decrease_held = None
    if budget_limit is not None:
        decrease_held = wanted
        limited = budget_limit
    if budget_reason is not None:
        reasons.append(budget_reason)

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
        starting=starting,
        leaving=leaving,
        decrease_held=decrease_held,
    )
