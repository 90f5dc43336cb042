"""What ``stackscaler status`` shows of one resource, read from its status. Pure.

:func:`tier_view` turns one resource as the API server returns it (spec,
status, metadata) into a :class:`TierView`: typed, every field optional,
nothing interpreted. The status is written by the operator, but anyone
allowed to write ``/status`` can put anything there, so every value is
type-checked on the way in (a wrong type reads as absent) and every string
is kept as it is: the renderers escape what they print
(:mod:`stackscaler.status.render`).

The time until the next allowed scale-in comes from the policy itself
(:func:`stackscaler.policy.scale_in_outlook`): the resource's spec, parsed as
the operator parses it, and the history the last decision left in
``status.history``.

Pure: no I/O, no clock (``now`` is an argument).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from stackscaler.errors import InvalidSpec
from stackscaler.model.crds import KINDS
from stackscaler.model.spec import ScalingSpec, parse_resource
from stackscaler.policy import History, scale_in_outlook
from stackscaler.policy.history import parse_time

KIND_ORDER = tuple(KINDS)
"""WebTier, WorkerPool, ReadReplicaPool, CachePool: the order of the story."""


class ScaleInState(enum.StrEnum):
    ALLOWED = "Allowed"
    """No time rule holds a scale-in back now (whether the load asks for one or not)."""
    WAITING = "Waiting"
    """The scale-in cooldown or stabilization window still runs."""
    AT_MINIMUM = "AtMinimum"
    """The capacity is at the floor: no scale-in at any time."""
    UNKNOWN = "Unknown"
    """Cannot be told (no decision yet, an invalid spec, an unreadable history)."""


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str
    since: str | None
    """lastTransitionTime, as written."""


@dataclass(frozen=True)
class MetricLine:
    name: str
    state: str | None
    value: float | None
    target: float | None
    recommendation: int | None


@dataclass(frozen=True)
class LastDecision:
    time: str | None
    at: float | None
    """``time`` in epoch seconds, when it reads as an RFC 3339 time."""
    direction: str | None
    limited_by: str | None
    reasons: tuple[str, ...]
    metrics: tuple[MetricLine, ...]


@dataclass(frozen=True)
class PendingAction:
    time: str | None
    start: int | None
    to: int | None
    headline: str


@dataclass(frozen=True)
class ForecastLine:
    """``status.forecast``: spec.predictive's forecast as the operator last wrote it."""

    mode: str | None
    metric: str | None
    state: str | None
    reason: str | None
    message: str
    floor: int | None
    would_raise_to: int | None
    load: float | None
    lead_seconds: int | None
    backtest_error: float | None
    history_hours: float | None
    next_refresh: str | None


@dataclass(frozen=True)
class ScaleIn:
    """The next allowed scale-in, from the policy's cooldown and stabilization window."""

    state: ScaleInState
    allowed_at: float | None = None
    """Epoch seconds; None when allowed now, at the minimum, or unknown."""
    seconds_left: float | None = None
    waiting_for: tuple[str, ...] = ()
    """``scaleInStabilization``, ``scaleInCooldown``: the time rules still running."""
    cooldown_until: float | None = None
    window_until: float | None = None
    recommended: bool | None = None
    """Whether the last recommendation asks for a scale-in."""
    floor: int | None = None
    detail: str = ""
    """Why it is unknown."""


@dataclass(frozen=True)
class TierView:
    kind: str
    namespace: str
    name: str
    target_kind: str | None
    target_name: str | None
    mode: str | None
    min_capacity: int | None
    max_capacity: int | None
    generation: int | None
    observed_generation: int | None
    current: int | None
    desired: int | None
    starting: int | None
    leaving: int | None
    applied: int | None
    last_scale_time: str | None
    last_scale_out_time: str | None
    last_scale_in_time: str | None
    decision: LastDecision | None
    pending: PendingAction | None
    conditions: tuple[Condition, ...]
    scale_in: ScaleIn
    forecast: ForecastLine | None = None

    @property
    def key(self) -> tuple[str, int, str]:
        """Sort order: namespace, kind in the story's order, name."""
        order = KIND_ORDER.index(self.kind) if self.kind in KIND_ORDER else len(KIND_ORDER)
        return (self.namespace, order, self.name)

    def condition(self, type_: str) -> Condition | None:
        for c in self.conditions:
            if c.type == type_:
                return c
        return None

    @property
    def spec_pending(self) -> bool:
        """The spec changed after the last status (observedGeneration behind)."""
        return (
            self.generation is not None
            and self.observed_generation is not None
            and self.observed_generation < self.generation
        )


# --- reading untrusted values -------------------------------------------------------


def _map(v: Any) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _time(v: Any) -> float | None:
    if not isinstance(v, str):
        return None
    try:
        return parse_time(v)
    except (ValueError, OverflowError):
        return None


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _conditions(raw: Any) -> tuple[Condition, ...]:
    out = []
    for c in map(_map, _list(raw)):
        type_ = _str(c.get("type"))
        if type_ is None:
            continue
        out.append(
            Condition(
                type_,
                _str(c.get("status")) or "Unknown",
                _str(c.get("reason")) or "",
                _str(c.get("message")) or "",
                _str(c.get("lastTransitionTime")),
            )
        )
    return tuple(out)


def _decision(raw: Any) -> LastDecision | None:
    if not isinstance(raw, Mapping):
        return None
    metrics = tuple(
        MetricLine(
            _str(m.get("name")) or "?",
            _str(m.get("state")),
            _num(m.get("value")),
            _num(m.get("target")),
            _int(m.get("recommendation")),
        )
        for m in map(_map, _list(raw.get("metrics")))
    )
    when = _str(raw.get("time"))
    return LastDecision(
        when,
        _time(when),
        _str(raw.get("direction")),
        _str(raw.get("limitedBy")),
        tuple(r for r in _list(raw.get("reasons")) if isinstance(r, str)),
        metrics,
    )


def _forecast(raw: Any) -> ForecastLine | None:
    if not isinstance(raw, Mapping):
        return None
    return ForecastLine(
        _str(raw.get("mode")),
        _str(raw.get("metric")),
        _str(raw.get("state")),
        _str(raw.get("reason")),
        _str(raw.get("message")) or "",
        _int(raw.get("floor")),
        _int(raw.get("wouldRaiseTo")),
        _num(raw.get("load")),
        _int(raw.get("leadSeconds")),
        _num(raw.get("backtestError")),
        _num(raw.get("historyHours")),
        _str(raw.get("nextRefreshTime")),
    )


def _pending(raw: Any) -> PendingAction | None:
    if not isinstance(raw, Mapping):
        return None
    return PendingAction(
        _str(raw.get("time")),
        _int(raw.get("from")),
        _int(raw.get("to")),
        _str(raw.get("headline")) or "",
    )


def _spec_only(body: Mapping[str, Any]) -> dict[str, Any]:
    """The document the operator parses: the resource without its status."""
    return {k: v for k, v in body.items() if k != "status"}


SpecCache = dict[tuple[str, int], ScalingSpec | None]
"""Parsed specs by (uid, generation): a spec is immutable within a generation, so a
watch that redraws every second parses each one once (None: invalid)."""


def _scaling(body: Mapping[str, Any], cache: SpecCache | None) -> ScalingSpec | None:
    meta = _map(body.get("metadata"))
    uid, generation = _str(meta.get("uid")), _int(meta.get("generation"))
    key = None if uid is None or generation is None else (uid, generation)
    if cache is not None and key is not None and key in cache:
        return cache[key]
    try:
        spec: ScalingSpec | None = parse_resource(_spec_only(body)).scaling
    except InvalidSpec:
        spec = None
    if cache is not None and key is not None:
        cache[key] = spec
    return spec


def scale_in_view(
    body: Mapping[str, Any],
    current: int | None,
    decided: bool,
    now: datetime,
    cache: SpecCache | None = None,
) -> ScaleIn:
    """The next allowed scale-in of one resource at ``now``, as the policy would see it."""
    if current is None or not decided:
        return ScaleIn(ScaleInState.UNKNOWN, detail="no decision yet")
    spec = _scaling(body, cache)
    if spec is None:
        return ScaleIn(ScaleInState.UNKNOWN, detail="the spec is invalid (see Ready)")
    try:
        history = History.from_dict(_map(_map(body.get("status")).get("history")))
    except ValueError:
        return ScaleIn(ScaleInState.UNKNOWN, detail="status.history cannot be read")
    t = now.timestamp()
    outlook = scale_in_outlook(spec, history, current, now)
    allowed = ScaleIn(
        ScaleInState.ALLOWED,
        seconds_left=0.0,
        cooldown_until=outlook.cooldown_until,
        window_until=outlook.window_until,
        recommended=outlook.recommended,
        floor=outlook.floor,
    )
    if outlook.at_floor:
        return replace(allowed, state=ScaleInState.AT_MINIMUM, seconds_left=None)
    waiting = outlook.waiting_for(t)
    if not waiting:
        return allowed
    return replace(
        allowed,
        state=ScaleInState.WAITING,
        allowed_at=outlook.allowed_at,
        seconds_left=outlook.seconds_left(t),
        waiting_for=tuple(str(w) for w in waiting),
    )


def tier_view(body: Mapping[str, Any], now: datetime, cache: SpecCache | None = None) -> TierView:
    """One resource, as ``stackscaler status`` shows it, at ``now`` (timezone-aware)."""
    if now.tzinfo is None:
        raise ValueError("tier_view() needs a timezone-aware 'now'")
    meta, spec, status = _map(body.get("metadata")), _map(body.get("spec")), body.get("status")
    st = _map(status)
    target = _map(spec.get("target"))
    current = _int(st.get("currentCapacity"))
    decision = _decision(st.get("lastDecision"))
    return TierView(
        kind=_str(body.get("kind")) or "?",
        namespace=_str(meta.get("namespace")) or "",
        name=_str(meta.get("name")) or "",
        target_kind=_str(target.get("kind")),
        target_name=_str(target.get("name")),
        mode=_str(spec.get("mode")),
        min_capacity=_int(spec.get("minCapacity")),
        max_capacity=_int(spec.get("maxCapacity")),
        generation=_int(meta.get("generation")),
        observed_generation=_int(st.get("observedGeneration")),
        current=current,
        desired=_int(st.get("desiredCapacity")),
        starting=_int(st.get("startingCapacity")),
        leaving=_int(st.get("leavingCapacity")),
        applied=_int(st.get("appliedCapacity")),
        last_scale_time=_str(st.get("lastScaleTime")),
        last_scale_out_time=_str(st.get("lastScaleOutTime")),
        last_scale_in_time=_str(st.get("lastScaleInTime")),
        decision=decision,
        pending=_pending(st.get("pendingAction")),
        conditions=_conditions(st.get("conditions")),
        scale_in=scale_in_view(body, current, decision is not None, now, cache),
        forecast=_forecast(st.get("forecast")),
    )


def tier_views(
    bodies: Iterable[Mapping[str, Any]], now: datetime, cache: SpecCache | None = None
) -> list[TierView]:
    """Every resource, sorted by namespace, kind (the story's order) and name."""
    return sorted((tier_view(b, now, cache) for b in bodies), key=lambda v: v.key)
