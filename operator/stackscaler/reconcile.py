"""One tick of one resource: observe -> decide -> apply -> record. No kopf here.

* **observe**: the target's capacity (actuator) and every metric (sources,
  batched with every other resource due in the same tick);
* **decide**: :func:`stackscaler.policy.decide` with the history kept in
  ``status.history``, so cooldowns and stabilization survive restarts;
* **apply**: only when the capacity changes, never in DryRun, never while
  paused, never while the target is busy;
* **record**: the whole status through the /status subresource (the
  operator never writes ``.spec``), Kubernetes Events for scale actions,
  fallback start and end, out-of-band changes and permanent errors (once
  each, not once per retry: the conditions in the status remember what was
  already reported), and Prometheus metrics.

Failures never escape: a bad spec, a missing target or a denied permission
is reported in the status and retried later; other resources are unaffected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from stackscaler.actuators.base import ApplyResult, Capacity
from stackscaler.actuators.registry import Actuators
from stackscaler.errors import InvalidSpec, StackscalerError
from stackscaler.metrics.registry import MetricSources
from stackscaler.model.crds import KINDS
from stackscaler.model.spec import Mode, Resource, parse_resource
from stackscaler.policy import Decision, Direction, History, Observations, decide
from stackscaler.policy.history import parse_time

PAUSED_ANNOTATION = "stackscaler.dev/paused"
INVALID_SPEC_RETRY = 300.0
"""A bad spec is re-checked this often (a spec change wakes the resource at once)."""
MAX_ERROR_RETRY = 600.0

log = logging.getLogger("stackscaler.reconcile")


@dataclass(frozen=True)
class Ref:
    kind: str
    namespace: str
    name: str
    uid: str

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Ref:
        meta = body.get("metadata") or {}
        return cls(
            str(body.get("kind", "")),
            str(meta.get("namespace", "default")),
            str(meta.get("name", "")),
            str(meta.get("uid", "")),
        )

    @property
    def plural(self) -> str:
        return KINDS[self.kind].plural

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class StatusWriter(Protocol):
    async def write(self, ref: Ref, status: dict[str, Any]) -> None:
        """Replace the resource's status through the /status subresource."""
        ...


class EventRecorder(Protocol):
    async def record(self, ref: Ref, type_: str, reason: str, message: str) -> None: ...


class Metrics(Protocol):
    """What the reconciler reports (implemented by observability.OperatorMetrics)."""

    def record_decision(self, kind: str, namespace: str, name: str, decision: Decision) -> None: ...
    def record_scale(self, kind: str, namespace: str, name: str, direction: Direction) -> None: ...
    def record_error(self, kind: str, namespace: str, name: str, exc: BaseException) -> None: ...
    def set_mode(
        self, kind: str, namespace: str, name: str, *, paused: bool, dry_run: bool
    ) -> None: ...


@dataclass(frozen=True)
class TickResult:
    delay: float
    """Seconds until this resource's next tick."""
    decision: Decision | None = None
    applied: ApplyResult | None = None


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _epoch_ts(t: float | None) -> str | None:
    return None if t is None else _ts(datetime.fromtimestamp(t, UTC))


def paused_state(annotations: Mapping[str, str], now: datetime) -> tuple[bool, str]:
    """Whether the pause annotation pauses the resource now, and why."""
    raw = annotations.get(PAUSED_ANNOTATION)
    if raw is None:
        return False, ""
    value = raw.strip()
    if value.lower() == "true":
        return True, f"paused by the {PAUSED_ANNOTATION} annotation"
    if value.lower() in ("false", ""):
        return False, ""
    try:
        until = parse_time(value)
    except ValueError:
        return True, (
            f"the {PAUSED_ANNOTATION} annotation {value!r} is neither 'true' nor an "
            "RFC 3339 time; treated as paused"
        )
    if now.timestamp() < until:
        return True, f"paused until {value} by the {PAUSED_ANNOTATION} annotation"
    return False, ""


class Conditions:
    """The status conditions, keeping lastTransitionTime when nothing changes."""

    def __init__(self, existing: Any, now: datetime, generation: int | None) -> None:
        self._now, self._generation = _ts(now), generation
        self._items: dict[str, dict[str, Any]] = {}
        for c in existing if isinstance(existing, list) else []:
            if isinstance(c, dict) and isinstance(c.get("type"), str):
                self._items[c["type"]] = dict(c)

    def get(self, type_: str) -> dict[str, Any] | None:
        return self._items.get(type_)

    def set(self, type_: str, status: bool, reason: str, message: str) -> bool:
        """Set a condition; True when its status, reason or message changed."""
        value = "True" if status else "False"
        message = message[:4000]
        old = self._items.get(type_)
        changed = old is None or (old.get("status"), old.get("reason"), old.get("message")) != (
            value,
            reason,
            message,
        )
        transition = (
            (old or {}).get("lastTransitionTime")
            if old and old.get("status") == value
            else self._now
        )
        self._items[type_] = {
            "type": type_,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": transition or self._now,
        }
        if self._generation is not None:
            self._items[type_]["observedGeneration"] = self._generation
        return changed

    def to_list(self) -> list[dict[str, Any]]:
        order = [
            "Ready",
            "MetricsAvailable",
            "ScalingLimited",
            "Fallback",
            "Paused",
            "DryRun",
            "OutOfBandChange",
        ]
        return sorted(
            self._items.values(), key=lambda c: order.index(c["type"]) if c["type"] in order else 99
        )


def _camel(text: str) -> str:
    return text[:1].upper() + text[1:] if text else "Unknown"


class Reconciler:
    def __init__(
        self,
        sources: MetricSources,
        actuators: Actuators,
        status: StatusWriter,
        events: EventRecorder,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sources, self.actuators = sources, actuators
        self.status, self.events, self.metrics = status, events, metrics
        self.clock = clock
        self._parsed: dict[str, tuple[Any, Resource | InvalidSpec]] = {}

    def forget(self, uid: str) -> None:
        self._parsed.pop(uid, None)

    def _parse(self, ref: Ref, body: Mapping[str, Any]) -> Resource:
        """Parse once per generation (the spec is immutable within one)."""
        meta = body.get("metadata") or {}
        key = (
            meta.get("generation"),
            meta.get("resourceVersion") if meta.get("generation") is None else None,
        )
        cached = self._parsed.get(ref.uid)
        if cached is None or cached[0] != key:
            try:
                parsed: Resource | InvalidSpec = parse_resource(body, source=str(ref))
            except InvalidSpec as exc:
                parsed = exc
            self._parsed[ref.uid] = (key, parsed)
            cached = self._parsed[ref.uid]
        if isinstance(cached[1], InvalidSpec):
            raise cached[1]
        return cached[1]

    async def _event(self, ref: Ref, type_: str, reason: str, message: str) -> None:
        try:
            await self.events.record(ref, type_, reason, message[:1024])
        except Exception:  # an event that cannot be posted never stops a tick
            log.warning("cannot post event %s for %s", reason, ref, exc_info=True)

    async def tick(self, body: Mapping[str, Any]) -> TickResult:
        ref = Ref.of(body)
        now = self.clock()
        meta = body.get("metadata") or {}
        generation = meta.get("generation")
        old_status: dict[str, Any] = dict(body.get("status") or {})
        conds = Conditions(old_status.get("conditions"), now, generation)
        base: dict[str, Any] = {
            k: v for k, v in old_status.items() if k not in ("conditions", "observedGeneration")
        }
        base["observedGeneration"] = generation

        try:
            resource = self._parse(ref, body)
        except InvalidSpec as exc:
            message = "; ".join(str(e) for e in exc.errors)
            if conds.set("Ready", False, "InvalidSpec", message):
                await self._event(ref, "Warning", "InvalidSpec", message)
            if self.metrics is not None:
                self.metrics.record_error(ref.kind, ref.namespace, ref.name, exc)
            await self._write(ref, {**base, "conditions": conds.to_list()})
            return TickResult(INVALID_SPEC_RETRY)

        scaling = resource.scaling
        dry_run = scaling.mode is Mode.DRY_RUN
        paused, paused_why = paused_state(meta.get("annotations") or {}, now)
        conds.set("Paused", paused, "PausedByAnnotation" if paused else "NotPaused", paused_why)
        if self.metrics is not None:
            self.metrics.set_mode(ref.kind, ref.namespace, ref.name, paused=paused, dry_run=dry_run)

        try:
            history = History.from_dict(old_status.get("history"))
        except ValueError as exc:
            history = History()
            await self._event(
                ref,
                "Warning",
                "HistoryReset",
                f"status.history could not be read ({exc}); starting afresh",
            )

        actuator = self.actuators.for_target(resource.target)
        try:
            capacity = await actuator.observe(resource)
        except StackscalerError as exc:
            return await self._failed(
                ref, resource=resource, conds=conds, base=base, exc=exc, stage="TargetUnavailable"
            )
        readings = await self.sources.observe_all(resource, now)

        # someone else changed the capacity: accept it, restart cooldowns from it
        applied_before = old_status.get("appliedCapacity")
        if (
            capacity.is_setpoint
            and isinstance(applied_before, int)
            and capacity.current != applied_before
            and not dry_run
        ):
            message = (
                f"capacity changed from {applied_before} to {capacity.current} outside "
                f"stackscaler at {_ts(now)}; cooldowns restart from this change"
            )
            if conds.set("OutOfBandChange", True, "CapacityChangedOutOfBand", message):
                await self._event(ref, "Normal", "OutOfBandChange", message)
            keep = max(
                scaling.behavior.scale_in.cooldown_seconds,
                scaling.behavior.scale_out.cooldown_seconds,
                60,
            )
            history = history.with_scale(
                now.timestamp(), capacity.current - applied_before, keep_seconds=keep
            )
            base["appliedCapacity"] = capacity.current

        observations = Observations(capacity.current, {n: r[0] for n, r in readings.items()})
        decision = decide(scaling, observations, history, now)

        # metrics
        unknown = {n: err for n, (obs, err) in readings.items() if obs.value is None}
        if unknown:
            detail = "; ".join(f"{n}: {err or 'unknown'}" for n, err in unknown.items())
            changed = conds.set("MetricsAvailable", False, "MetricsUnknown", detail)
            for err in unknown.values():
                if err is None:
                    continue
                if self.metrics is not None:
                    self.metrics.record_error(ref.kind, ref.namespace, ref.name, err)
                if changed and not err.temporary:  # a bad query, a missing queue: once
                    await self._event(ref, "Warning", type(err).__name__, str(err))
        else:
            conds.set(
                "MetricsAvailable", True, "AllMetricsKnown", f"{len(readings)} metric(s) read"
            )

        # fallback start and end
        was_fallback = (conds.get("Fallback") or {}).get("status") == "True"
        if decision.fallback_active:
            conds.set("Fallback", True, "MetricsUnavailable", decision.headline)
            if not was_fallback:
                await self._event(
                    ref,
                    "Warning",
                    "FallbackStarted",
                    f"metrics unknown for {decision.history.consecutive_failures} "
                    f"tick(s): {decision.headline}",
                )
        else:
            conds.set("Fallback", False, "NotInFallback", "")
            if was_fallback:
                await self._event(ref, "Normal", "FallbackEnded", "metrics are known again")

        # apply
        applied: ApplyResult | None = None
        new_history = decision.history_if_held
        limited = decision.limited_by
        limit_reason = _camel(str(limited)) if limited is not None else "NotLimited"
        limit_message = "; ".join(decision.reasons[-2:]) if limited is not None else ""
        if decision.changed and not dry_run and not paused:
            if capacity.busy:
                limit_reason, limit_message = "TargetBusy", capacity.busy
            else:
                try:
                    applied = await actuator.apply(resource, decision.desired, capacity)
                except StackscalerError as exc:
                    # remember what was observed, not the action that failed
                    base.update(
                        history=new_history.to_dict(),
                        currentCapacity=capacity.current,
                        desiredCapacity=decision.desired,
                    )
                    return await self._failed(
                        ref, resource=resource, conds=conds, base=base, exc=exc, stage="ApplyFailed"
                    )
                if applied.changed:
                    new_history = decision.history
                    base["appliedCapacity"] = applied.requested
                    direction = decision.direction
                    reason = "ScaledOut" if direction is Direction.OUT else "ScaledIn"
                    await self._event(
                        ref,
                        "Normal",
                        reason,
                        decision.headline
                        if applied.requested == decision.desired
                        else f"{decision.headline} (the target allows {applied.requested})",
                    )
                    if self.metrics is not None:
                        self.metrics.record_scale(ref.kind, ref.namespace, ref.name, direction)
                if applied.clamped:
                    limit_reason, limit_message = "TargetBounds", applied.clamped
        elif capacity.busy and decision.changed:
            limit_reason, limit_message = "TargetBusy", capacity.busy
        if "appliedCapacity" not in base and not dry_run:
            base["appliedCapacity"] = capacity.current
        conds.set("ScalingLimited", limit_reason != "NotLimited", limit_reason, limit_message)
        would = (
            f"would scale {capacity.current} -> {decision.desired}: {decision.headline}"
            if decision.changed
            else f"would hold {capacity.current}: {decision.headline}"
        )
        conds.set(
            "DryRun", dry_run, "DryRunMode" if dry_run else "Active", would if dry_run else ""
        )
        if paused:
            conds.set("Paused", True, "PausedByAnnotation", f"{paused_why}; {would}")
        conds.set("Ready", True, "Reconciled", decision.headline)
        if self.metrics is not None:
            self.metrics.record_decision(ref.kind, ref.namespace, ref.name, decision)
        status = self._status(
            base, decision=decision, capacity=capacity, history=new_history, conds=conds, now=now
        )
        await self._write(ref, status)
        return TickResult(float(scaling.poll_interval_seconds), decision, applied)

    def _status(
        self,
        base: dict[str, Any],
        *,
        decision: Decision,
        capacity: Capacity,
        history: History,
        conds: Conditions,
        now: datetime,
    ) -> dict[str, Any]:
        status = dict(base)
        last_out, last_in = history.last_scale_out, history.last_scale_in
        last = max((t for t in (last_out, last_in) if t is not None), default=None)
        status.update(
            {
                "currentCapacity": capacity.current,
                "desiredCapacity": decision.desired,
                "lastScaleTime": _epoch_ts(last),
                "lastScaleOutTime": _epoch_ts(last_out),
                "lastScaleInTime": _epoch_ts(last_in),
                "lastDecision": {
                    "time": _ts(now),
                    "direction": str(decision.direction),
                    "limitedBy": None if decision.limited_by is None else str(decision.limited_by),
                    "reasons": [r[:1024] for r in decision.reasons[:32]],
                    "metrics": [m.to_dict() for m in decision.metrics][:11],
                },
                "history": history.to_dict(),
                "conditions": conds.to_list(),
            }
        )
        return _drop_none(status)

    async def _failed(
        self,
        ref: Ref,
        *,
        resource: Resource,
        conds: Conditions,
        base: dict[str, Any],
        exc: StackscalerError,
        stage: str,
    ) -> TickResult:
        reason = type(exc).__name__ if not exc.temporary else stage
        if conds.set("Ready", False, reason, str(exc)) and not exc.temporary:
            await self._event(ref, "Warning", type(exc).__name__, str(exc))
        if self.metrics is not None:
            self.metrics.record_error(ref.kind, ref.namespace, ref.name, exc)
        log.warning("%s: %s", ref, exc)
        await self._write(ref, _drop_none({**base, "conditions": conds.to_list()}))
        poll = float(resource.scaling.poll_interval_seconds)
        delay = getattr(exc, "delay", poll) if exc.temporary else min(MAX_ERROR_RETRY, 4 * poll)
        return TickResult(max(1.0, float(delay)))

    async def _write(self, ref: Ref, status: dict[str, Any]) -> None:
        try:
            await self.status.write(ref, status)
        except Exception:
            log.warning("cannot write the status of %s", ref, exc_info=True)


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}
