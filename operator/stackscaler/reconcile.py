"""One tick of one resource: observe -> decide -> apply -> record. No kopf here.

* **observe**: the target's capacity (actuator) and every metric (sources,
  batched with every other resource due in the same tick);
* **decide**: :func:`stackscaler.policy.decide` with the history kept in
  ``status.history``, so cooldowns and stabilization survive restarts;
* **apply**: only when the capacity changes, never in DryRun, never while
  paused, never while the target is busy, and not at all when its turn in
  the AWS write limit comes after the tick's send-by time (:func:`send_by`:
  the next tick decides again, rather than this one running into its next slot);
* **record**: the whole status through the /status subresource (the
  operator never writes ``.spec``) when something material changed or the
  last write is older than the refresh interval (see below), Kubernetes
  Events for scale actions, fallback start and end, out-of-band changes and
  permanent errors (once each, not once per retry: the conditions in the
  status remember what was already reported), and Prometheus metrics.

Status writes are proportional to what changed. The reconciler keeps the
last status it computed per resource in memory and starts the next tick
from it (the body's status may be older: a write skipped, or its watch
event not back yet), unless the body's status was written by someone else
after ours (a newer resourceVersion with another status, or a later
decision). A status that differs from the last one written only in
volatile parts -- the decision's time and recommendation, the metric
values and their times, the condition messages that quote them, the
times of stabilization-window entries whose values did not change -- is
not written again until :data:`STATUS_REFRESH_SECONDS` after the last
write. Anything material
(capacities, direction, limitedBy, a condition's status or reason,
pendingAction, appliedCapacity, the scale times, the rate-limit events,
failures, the sequence of values in a window, observedGeneration) is
written at once, and the writes before and after an AWS action are never
skipped. A resource that another one follows through a tier source
(:mod:`stackscaler.metrics.tier`) is written at every tick: its volatile parts
are what its followers read.

Why a restart never scales in (or out) earlier than with a write every
tick: cooldowns, rate-limit events and the *values* of both windows are
material, so the written status always has exactly the in-memory ones. A
window is a monotonic queue: a push that leaves its values unchanged only
renews the time of its last entry, so that time is the only one the memory
can have newer than the status. Let ``L`` be the newest time the written
status names (``lastDecision.time``, the last window entries). A write is
skipped only while the tick is less than the refresh interval ``R`` after
``L`` (and after the last write) and every time in its windows is below
``L + R``, so every time in memory stays below ``L + R``, and below the
restart. A tick that starts from a written status
(after a restart, or when this replica takes a resource over) moves the last
entry of each non-empty window to ``min(L + R, now)`` when that is later:
every value is held in the window at least as long as the stopped process
would have held it, and at most ``R`` longer. This assumes every replica
runs with the same ``R``.

Failures never escape: a bad spec, a missing target or a denied permission
is reported in the status and retried later; other resources are unaffected.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from stackscaler import fence
from stackscaler.actuators.base import ApplyResult, Capacity
from stackscaler.actuators.registry import Actuators
from stackscaler.claims import Claimant, Claims, describe, target_key
from stackscaler.errors import (
    Deferred,
    InvalidSpec,
    StackscalerError,
    TargetConflict,
    TemporaryError,
)
from stackscaler.metrics.registry import MetricSources, Reading
from stackscaler.model.crds import KINDS
from stackscaler.model.spec import Mode, Resource, parse_resource
from stackscaler.policy import (
    Decision,
    Direction,
    History,
    MetricResult,
    Observations,
    decide,
)
from stackscaler.policy.history import parse_time
from stackscaler.predictive import Forecasts, State, join
from stackscaler.sharding import fraction_of
from stackscaler.tenancy import NotGranted, Tenancy, TenancySettings
from stackscaler.text import safe_text

PAUSED_ANNOTATION = "stackscaler.dev/paused"
INVALID_SPEC_RETRY = 300.0
"""A bad spec is re-checked this often (a spec change wakes the resource at once)."""
MAX_ERROR_RETRY = 600.0
CONFLICT_RETRY = 30.0
"""A resource whose target another resource owns checks again this often."""
MIN_DEADLINE, MAX_DEADLINE = 10.0, 60.0
APPLY_DEADLINE = MAX_DEADLINE
"""A change may wait its turn in the service's rate limit (5 SetDesiredCapacity a
second by default): it gets the longest deadline, whatever the poll interval."""
SEND_MARGIN, MAX_SEND_MARGIN = 0.2, 5.0
"""The share of the poll interval (at most MAX_SEND_MARGIN s) a tick keeps after its
send-by time for the AWS call and the writes that record it (see :func:`send_by`)."""
EVENTS_PER_HOUR = 30
"""Events one resource may post in any hour; more are logged, not posted."""
STATUS_REFRESH_SECONDS = 315.0
"""A status that changed only in volatile parts is written at most this often.
Ticks are aligned to the poll interval, so a 30 s poll refreshes every 330 s
(11 writes per resource per hour in steady state); 300 would be exactly 12, and
the tick's jitter would make some refreshes come a tick early or late."""
WINDOW_KEYS = ("scaleInWindow", "scaleOutWindow")
VOLATILE_KEYS = frozenset(
    {"lastDecision", "conditions", "history", "startingCapacity", "leavingCapacity", "forecast"}
)
"""Status keys :func:`material` leaves out or reduces (see there)."""
FORECAST_MATERIAL = ("mode", "metric", "state", "reason")
"""What of ``status.forecast`` is material; its figures and message are volatile."""

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
    async def write(self, ref: Ref, status: dict[str, Any]) -> str | None:
        """Replace the resource's status through the /status subresource.

        Returns the resourceVersion the write gave the resource, if known.
        """
        ...


class EventRecorder(Protocol):
    async def record(
        self, ref: Ref, type_: str, reason: str, message: str, *, key: str | None = None
    ) -> None:
        """Post an Event. With ``key``, the Event is posted at most once for that key
        (an Event already posted under it is not posted again)."""
        ...


class Metrics(Protocol):
    """What the reconciler reports (implemented by observability.OperatorMetrics)."""

    def record_decision(
        self,
        kind: str,
        namespace: str,
        name: str,
        decision: Decision,
        *,
        at: float | None = None,
        took: float | None = None,
        late: float | None = None,
    ) -> None: ...
    def record_status_write(self, result: str) -> None: ...
    def record_event(self, kind: str, type_: str, reason: str, result: str) -> None: ...
    def record_scale(self, kind: str, namespace: str, name: str, direction: Direction) -> None: ...
    def record_error(self, kind: str, namespace: str, name: str, exc: BaseException) -> None: ...
    def set_mode(
        self, kind: str, namespace: str, name: str, *, paused: bool, dry_run: bool
    ) -> None: ...
    def record_forecast(self, kind: str, namespace: str, name: str, floor: int | None) -> None: ...


@dataclass(frozen=True)
class TickResult:
    delay: float
    """Seconds until this resource's next tick."""
    decision: Decision | None = None
    applied: ApplyResult | None = None


def action_key(uid: str, intent: Mapping[str, Any]) -> str:
    """One scale action's Event key: the same for the replica that acted and for the one
    that finds the action still pending in the status (so the Event is posted once)."""
    text = f"{uid}/{intent.get('time')}/{intent.get('from')}/{intent.get('to')}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def rfc3339(dt: datetime) -> str:
    """``2026-11-27T12:00:30Z``: the time format of the status and of Events."""
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _epoch_ts(t: float | None) -> str | None:
    return None if t is None else rfc3339(datetime.fromtimestamp(t, UTC))


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
        self._now, self._generation = rfc3339(now), generation
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
            "Conflict",
        ]
        return sorted(
            self._items.values(), key=lambda c: order.index(c["type"]) if c["type"] in order else 99
        )


def _camel(text: str) -> str:
    return text[:1].upper() + text[1:] if text else "Unknown"


def tick_deadline(poll_interval: float) -> float:
    """How long one tick may take to observe (applying gets APPLY_DEADLINE).

    Past it, a metric without an answer is unknown and the tick is reported
    late, so a frozen endpoint can never make a stale status look healthy.
    """
    return min(MAX_DEADLINE, max(MIN_DEADLINE, 0.8 * poll_interval))


def send_by(now: float, poll_interval: float, offset: float = 0.0) -> float:
    """The latest time a tick started at ``now`` may send its change (Unix seconds).

    Ticks are aligned to multiples of the poll interval plus the resource's
    sub-slot ``offset`` (:meth:`Scheduler.offset`); a change still
    waiting for its rate-limit token after this is deferred to the next tick
    (:class:`~stackscaler.errors.Deferred`), so the tick ends before its next
    slot instead of making the resource skip one (the next tick decides again
    and takes its turn then). ``SEND_MARGIN`` of the slot, at most
    ``MAX_SEND_MARGIN`` seconds, is left for the call itself and the writes after it.
    """
    poll = max(poll_interval, 1.0)
    next_slot = ((now - offset) // poll + 1) * poll + offset
    return next_slot - min(MAX_SEND_MARGIN, SEND_MARGIN * poll)


class TickLate(TemporaryError):
    """A phase of the tick did not finish within its deadline."""


@dataclass
class _Tick:
    """What one tick builds up as it goes through its phases (never shared)."""

    ref: Ref
    body: Mapping[str, Any]
    now: datetime
    old: dict[str, Any]
    """The status the tick starts from: the last one computed, else the body's."""
    conds: Conditions
    base: dict[str, Any]
    """The status being written: the old one, updated phase by phase."""
    history: History = field(default_factory=History)
    resumed_until: float | None = None
    """Set when the tick starts from a written status: renew the windows' last
    entries up to this time (see the module docstring)."""
    dry_run: bool = False
    paused: bool = False
    paused_why: str = ""


@dataclass
class _Memory:
    """One resource's last computed status, and the last one written."""

    status: dict[str, Any]
    written: dict[str, Any] | None = None
    written_at: float | None = None
    """When (the reconciler's clock, epoch seconds) ``written`` was written."""
    version: str | None = None
    """The resourceVersion the write of ``written`` returned, if known."""
    spread_at: float | None = None
    """One early refresh after the first write, at a time taken from the uid, so that
    resources started together do not all refresh in the same tick ever after."""

    def holds(self, body: Mapping[str, Any]) -> bool:
        """True unless the body's status was written by someone else after ours."""
        if self.written is None:
            return True  # nothing of ours written yet: what we computed is the newest
        status = body.get("status") or {}
        if status == self.written:
            return True
        version = (body.get("metadata") or {}).get("resourceVersion")
        if self.version is not None and version is not None:
            try:  # the body is older than our write (its watch event is not back yet)
                return int(version) <= int(self.version)
            except (TypeError, ValueError):
                pass  # resourceVersions that are not numbers: compare the decisions
        theirs, ours = _decided(status), _decided(self.written)
        return theirs is None or (ours is not None and theirs <= ours)


def _decided(status: Mapping[str, Any]) -> float | None:
    """The time of the status's last decision, if it has a readable one."""
    when = (status.get("lastDecision") or {}).get("time")
    try:
        return parse_time(when) if isinstance(when, str) else None
    except ValueError:
        return None


def _window_times(status: Mapping[str, Any]) -> list[float]:
    """The times of the last entries of the status's stabilization windows."""
    history = status.get("history")
    out: list[float] = []
    for key in WINDOW_KEYS:
        entries = history.get(key) if isinstance(history, dict) else None
        if isinstance(entries, list) and entries and isinstance(entries[-1], list | tuple):
            try:
                out.append(parse_time(entries[-1][0]))
            except (ValueError, IndexError):
                continue
    return out


def _newest(status: Mapping[str, Any]) -> float | None:
    """``L``: the newest time a status names (its decision, its windows' last entries)."""
    times = [*_window_times(status), *filter(None, [_decided(status)])]
    return max(times, default=None)


def material(status: Mapping[str, Any]) -> dict[str, Any]:
    """What of a status must reach the API server at once (the rest may wait).

    Volatile, so left out: the decision's time, recommendation, reasons and metric
    values and times (the metrics' names and states stay), the units starting and
    leaving (what the reasons say of them), condition messages, and the times of the
    stabilization windows' entries (their values stay).
    """
    out = {k: v for k, v in status.items() if k not in VOLATILE_KEYS}
    decision = status.get("lastDecision")
    if isinstance(decision, dict):
        out["lastDecision"] = {
            **{
                k: v
                for k, v in decision.items()
                if k not in ("time", "recommendation", "reasons", "metrics")
            },
            "metrics": [
                (m.get("name"), m.get("state")) if isinstance(m, dict) else m
                for m in decision.get("metrics") or []
            ],
        }
    conditions = status.get("conditions")
    if isinstance(conditions, list):
        out["conditions"] = [
            {k: v for k, v in c.items() if k != "message"} if isinstance(c, dict) else c
            for c in conditions
        ]
    history = status.get("history")
    if isinstance(history, dict):
        out["history"] = {
            k: [e[1] if isinstance(e, list | tuple) and len(e) == 2 else e for e in v]
            if k in WINDOW_KEYS and isinstance(v, list)
            else v
            for k, v in history.items()
        }
    elif history is not None:
        out["history"] = history
    forecast = status.get("forecast")
    if isinstance(forecast, dict):
        out["forecast"] = {k: forecast.get(k) for k in FORECAST_MATERIAL}
    return out


def _resume(history: History, until: float, *, in_window: float, out_window: float) -> History:
    """Renew the last entry of each non-empty window to ``until`` when that is later."""

    def renew(
        entries: tuple[tuple[float, int], ...], window: float
    ) -> tuple[tuple[float, int], ...]:
        if window <= 0 or not entries or entries[-1][0] >= until:
            return entries
        return (*entries[:-1], (until, entries[-1][1]))

    return replace(
        history,
        scale_in_window=renew(history.scale_in_window, in_window),
        scale_out_window=renew(history.scale_out_window, out_window),
    )


@dataclass(frozen=True)
class _Observed:
    capacity: Capacity
    readings: dict[str, Reading]


class EventBudget:
    """At most ``limit`` Events per resource in any ``window`` seconds."""

    def __init__(self, limit: int = EVENTS_PER_HOUR, window: float = 3600.0) -> None:
        self.limit, self.window = limit, window
        self._sent: dict[str, deque[float]] = {}
        self.suppressed = 0

    def take(self, uid: str, t: float) -> bool:
        sent = self._sent.setdefault(uid, deque())
        while sent and sent[0] <= t - self.window:
            sent.popleft()
        if len(sent) >= self.limit:
            self.suppressed += 1
            return False
        sent.append(t)
        return True

    def forget(self, uid: str) -> None:
        self._sent.pop(uid, None)


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
        tenancy: Tenancy | None = None,
        forecasts: Forecasts | None = None,
        claims: Claims | None = None,
        default_region: str | None = None,
        deadline: Callable[[float], float] = tick_deadline,
        event_budget: EventBudget | None = None,
        failpoint: Callable[[str], None] | None = None,
        status_refresh: float = STATUS_REFRESH_SECONDS,
        slot_offset: Callable[[str, float], float] = lambda uid, poll: 0.0,
        followed: Callable[[Ref], bool] = lambda ref: False,
    ) -> None:
        """``slot_offset(uid, poll)``: the resource's sub-slot within its poll interval
        (the scheduler's :meth:`~stackscaler.scheduler.Scheduler.offset`).
        ``followed(ref)``: another resource reads this one through a tier source, so
        its status is written at every tick (never held back as volatile)."""
        self.followed = followed
        self.sources, self.actuators = sources, actuators
        self.slot_offset = slot_offset
        self.status, self.events, self.metrics = status, events, metrics
        self.clock = clock
        self.tenancy = tenancy or Tenancy(TenancySettings())
        self.claims = claims or Claims()
        self.default_region = default_region
        self.deadline = deadline
        self.event_budget = event_budget or EventBudget()
        self._failpoint = failpoint or (lambda name: None)
        self._parsed: dict[str, tuple[Any, Resource | StackscalerError]] = {}
        self.status_refresh = status_refresh
        self._memory: dict[str, _Memory] = {}
        self._decided: dict[str, float] = {}
        """Per uid: the start of the tick of its last decision (how late the next one is)."""
        self.forecasts = forecasts
        """spec.predictive's forecasts (predictive/); None: no resource forecasts."""
        """Per uid: the last status computed and the last one written."""

    # --- resources coming and going ---------------------------------------------

    def register(self, body: Mapping[str, Any], *, keep: bool = True) -> None:
        """A resource was seen: parse it and claim its target before its first tick.
        ``keep``: keep the parsed spec for its ticks (False for a resource another replica
        ticks: only the claim is kept)."""
        ref = Ref.of(body)
        try:
            resource = self._parse(ref, body, keep=keep)
        except StackscalerError:
            self.claims.release(ref.uid)
            return
        created = str((body.get("metadata") or {}).get("creationTimestamp") or "")
        self.claims.claim(
            target_key(resource, self.default_region), Claimant(created, ref.uid, str(ref))
        )

    def forget(self, uid: str) -> None:
        """A resource was deleted or is no longer this replica's: drop what is kept of it.

        Whoever ticks it next starts from its written status.
        """
        self._parsed.pop(uid, None)
        self._memory.pop(uid, None)
        self._decided.pop(uid, None)
        self.claims.release(uid)
        self.event_budget.forget(uid)
        if self.forecasts is not None:
            self.forecasts.forget(uid)

    def _parse(self, ref: Ref, body: Mapping[str, Any], *, keep: bool = True) -> Resource:
        """Parse and admit once per generation (the spec is immutable within one); with
        ``keep=False``, parse without keeping the result."""
        meta = body.get("metadata") or {}
        key = (
            meta.get("generation"),
            meta.get("resourceVersion") if meta.get("generation") is None else None,
        )
        cached = self._parsed.get(ref.uid) if keep else self._parsed.pop(ref.uid, None)
        if cached is None or cached[0] != key:
            parsed: Resource | StackscalerError
            try:
                parsed = self.tenancy.admit(parse_resource(body, source=str(ref)))
            except (InvalidSpec, NotGranted) as exc:
                parsed = exc
            cached = (key, parsed)
            if keep:
                self._parsed[ref.uid] = cached
        if isinstance(cached[1], StackscalerError):
            raise cached[1]
        return cached[1]

    # --- one tick -----------------------------------------------------------------

    async def tick(self, body: Mapping[str, Any]) -> TickResult:
        t = self._begin(body)
        try:
            resource = self._admit(t)
        except (InvalidSpec, NotGranted, TargetConflict) as exc:
            return await self._refused(t, exc)
        self._mode(t, resource)
        try:
            seen = await self._observe(t, resource)
            self.tenancy.admit_tags(resource, seen.capacity.tags)
        except NotGranted as exc:
            return await self._refused(t, exc)
        except StackscalerError as exc:
            return await self._failed(t, resource, exc, stage="TargetUnavailable")
        await self._recover(t, resource, seen.capacity)
        await self._out_of_band(t, resource, seen.capacity)
        decision = decide(resource.scaling, _observations(seen), t.history, t.now)
        decision = self._forecast(t, resource, seen.capacity, decision)
        self._count(t, decision, float(resource.scaling.poll_interval_seconds))
        # the decision is on record: every other tick whose reads came back with this one
        # records its own decision before this one goes on to its slower bookkeeping
        await asyncio.sleep(0)
        await self._report_metrics(t, seen, decision)
        await self._report_forecast(t)
        try:
            applied, limit = await self._apply(t, resource, seen.capacity, decision)
        except StackscalerError as exc:
            t.base.update(
                history=decision.history_if_held.to_dict(),
                currentCapacity=seen.capacity.current,
                desiredCapacity=decision.desired,
                startingCapacity=seen.capacity.starting,
                leavingCapacity=max(0, seen.capacity.removing),
            )
            return await self._failed(t, resource, exc, stage="ApplyFailed")
        return await self._record(
            t, resource, capacity=seen.capacity, decision=decision, applied=applied, limit=limit
        )

    def _begin(self, body: Mapping[str, Any]) -> _Tick:
        now = self.clock()
        ref = Ref.of(body)
        generation = (body.get("metadata") or {}).get("generation")
        memory = self._memory.get(ref.uid)
        resumed_until: float | None = None
        if memory is not None and memory.holds(body):
            old = dict(memory.status)
        else:  # a restart, a resource taken over, or a status someone else wrote
            self._memory.pop(ref.uid, None)
            old = dict(body.get("status") or {})
            newest = _newest(old)
            if newest is not None:
                resumed_until = min(newest + self.status_refresh, now.timestamp())
        base = {k: v for k, v in old.items() if k not in ("conditions", "observedGeneration")}
        base["observedGeneration"] = generation
        return _Tick(
            ref,
            body,
            now,
            old,
            Conditions(old.get("conditions"), now, generation),
            base,
            resumed_until=resumed_until,
        )

    def _admit(self, t: _Tick) -> Resource:
        """Parse, check the tenancy grants, and make sure no older resource owns the target."""
        resource = self._parse(t.ref, t.body)
        key = target_key(resource, self.default_region)
        owner = self.claims.owner(key)
        if owner is None:  # not registered yet (a tick without a watch event: tests)
            self.register(t.body)
            owner = self.claims.owner(key)
        if owner is not None and owner.uid != t.ref.uid:
            raise TargetConflict(
                f"{describe(key)} is managed by the older {owner.name}; this resource does "
                "nothing while that one names the same target"
            )
        t.conds.set("Conflict", False, "NoConflict", "")
        return resource

    def _mode(self, t: _Tick, resource: Resource) -> None:
        t.dry_run = resource.scaling.mode is Mode.DRY_RUN
        annotations = (t.body.get("metadata") or {}).get("annotations") or {}
        t.paused, t.paused_why = paused_state(annotations, t.now)
        t.conds.set(
            "Paused", t.paused, "PausedByAnnotation" if t.paused else "NotPaused", t.paused_why
        )
        if self.metrics is not None:
            self.metrics.set_mode(
                t.ref.kind, t.ref.namespace, t.ref.name, paused=t.paused, dry_run=t.dry_run
            )

    async def _observe(self, t: _Tick, resource: Resource) -> _Observed:
        """The target's capacity and every metric, within the tick's deadline."""
        try:
            t.history = History.from_dict(t.old.get("history"))
        except ValueError as exc:
            await self._event(
                t,
                "Warning",
                "HistoryReset",
                f"status.history could not be read ({exc}); starting afresh",
            )
        if t.resumed_until is not None:
            behavior = resource.scaling.behavior
            t.history = _resume(
                t.history,
                t.resumed_until,
                in_window=behavior.scale_in.stabilization_window_seconds,
                out_window=behavior.scale_out.stabilization_window_seconds,
            )
        deadline = self.deadline(float(resource.scaling.poll_interval_seconds))
        actuator = self.actuators.for_target(resource.target)
        capacity_task = asyncio.ensure_future(actuator.observe(resource))
        try:
            readings = await self.sources.observe_all(resource, t.now, deadline=deadline)
            async with asyncio.timeout(deadline):
                capacity = await capacity_task
        except TimeoutError:
            raise TickLate(
                f"no answer about {resource.target.kind} {resource.target.name} within "
                f"{deadline:g} s; this tick is late and nothing was changed",
                delay=min(deadline, float(resource.scaling.poll_interval_seconds)),
            ) from None
        finally:
            if not capacity_task.done():
                capacity_task.cancel()
        return _Observed(capacity, readings)

    async def _recover(self, t: _Tick, resource: Resource, capacity: Capacity) -> None:
        """An action recorded as intended but never as done: did it happen?"""
        intent = t.base.pop("pendingAction", None)
        if not isinstance(intent, dict):
            return
        start, to = intent.get("from"), intent.get("to")
        when = intent.get("time")
        if not isinstance(start, int) or not isinstance(to, int) or not isinstance(when, str):
            return
        if capacity.current == start:
            log.info("%s: the intended action %s -> %s did not happen", t.ref, start, to)
            return
        try:
            at = parse_time(when)
        except ValueError:
            at = t.now.timestamp()
        behavior = resource.scaling.behavior
        keep = max(behavior.scale_in.cooldown_seconds, behavior.scale_out.cooldown_seconds, 60)
        t.history = t.history.with_scale(at, capacity.current - start, keep_seconds=keep)
        if capacity.is_setpoint:
            t.base["appliedCapacity"] = capacity.current
        reason = "ScaledOut" if capacity.current > start else "ScaledIn"
        headline = str(intent.get("headline") or f"{start} -> {to}")
        await self._event(  # not again if the replica that acted posted it before it stopped
            t,
            "Normal",
            reason,
            f"{headline} (recorded after a restart: the operator stopped after the change "
            f"and before recording it; the target is at {capacity.current})",
            key=action_key(t.ref.uid, intent),
        )

    async def _out_of_band(self, t: _Tick, resource: Resource, capacity: Capacity) -> None:
        """Someone else changed the capacity: accept it, restart cooldowns from it."""
        applied_before = t.old.get("appliedCapacity")
        applied_before = t.base.get("appliedCapacity", applied_before)
        if (
            not capacity.is_setpoint
            or not isinstance(applied_before, int)
            or capacity.current == applied_before
            or t.dry_run
        ):
            return
        message = (
            f"capacity changed from {applied_before} to {capacity.current} outside "
            f"stackscaler at {rfc3339(t.now)}; cooldowns restart from this change"
        )
        if t.conds.set("OutOfBandChange", True, "CapacityChangedOutOfBand", message):
            await self._event(t, "Normal", "OutOfBandChange", message)
        behavior = resource.scaling.behavior
        keep = max(behavior.scale_in.cooldown_seconds, behavior.scale_out.cooldown_seconds, 60)
        t.history = t.history.with_scale(
            t.now.timestamp(), capacity.current - applied_before, keep_seconds=keep
        )
        t.base["appliedCapacity"] = capacity.current

    def _count(self, t: _Tick, decision: Decision, poll: float) -> None:
        """The decision's Prometheus series, its time among them, as soon as it is made
        (carrying it out may wait its turn in the AWS write limit), with how long it took
        and how much later than one poll interval after the previous decision it came."""
        at, now = t.now.timestamp(), self.clock().timestamp()
        previous = self._decided.get(t.ref.uid)
        self._decided[t.ref.uid] = at
        if self.metrics is not None:
            self.metrics.record_decision(
                t.ref.kind,
                t.ref.namespace,
                t.ref.name,
                decision,
                at=at,
                took=now - at,
                late=None if previous is None else now - previous - poll,
            )

    def _forecast(
        self, t: _Tick, resource: Resource, capacity: Capacity, decision: Decision
    ) -> Decision:
        """spec.predictive: the forecast's floor joined to the reactive decision
        (ForecastAndScale) or only reported (ForecastOnly), and ``status.forecast``.
        Never waits: a refresh that is due runs in the background (predictive/)."""
        if self.forecasts is None or resource.scaling.predictive is None:
            t.base.pop("forecast", None)
            if self.forecasts is not None:
                self.forecasts.forget(t.ref.uid)
            return decision
        outlook = self.forecasts.at_tick(t.ref.uid, resource, capacity, t.now)
        joined = join(outlook, resource, capacity, decision, t.now)
        block, old = joined.status, t.old.get("forecast")
        if (
            outlook.state is State.PENDING
            and isinstance(old, dict)
            and old.get("state") != str(State.PENDING)
            and (old.get("mode"), old.get("metric")) == (block["mode"], block["metric"])
        ):  # a restart: the status keeps the last forecast's state until this one's is known
            block = {k: v for k, v in old.items() if k not in ("load", "floor", "wouldRaiseTo")}
        t.base["forecast"] = block
        if self.metrics is not None:
            floor = joined.floor if outlook.ready is not None else None
            self.metrics.record_forecast(t.ref.kind, t.ref.namespace, t.ref.name, floor)
        return joined.decision

    async def _report_forecast(self, t: _Tick) -> None:
        """An Event when the forecast's state or reason changes (not while it is pending)."""
        new, old = t.base.get("forecast"), t.old.get("forecast")
        if not isinstance(new, dict) or new.get("state") == str(State.PENDING):
            return
        before = (old.get("state"), old.get("reason")) if isinstance(old, dict) else None
        reason = str(new.get("reason"))
        if (new.get("state"), reason) == before:
            return
        if reason == "Ready":
            type_, event = "Normal", "ForecastReady"
        elif reason == "HistoryUnavailable":
            type_, event = "Warning", "ForecastHistoryUnavailable"
        else:
            type_, event = "Normal", "ForecastRefused"
        message = (
            f"{new.get('metric')} forecast ({new.get('mode')}): {reason}: {new.get('message')}"
        )
        await self._event(t, type_, event, message)

    async def _report_metrics(self, t: _Tick, seen: _Observed, decision: Decision) -> None:
        """MetricsAvailable and Fallback conditions; each permanent metric error once."""
        unknown = {n: err for n, (obs, err) in seen.readings.items() if obs.value is None}
        before = str((t.conds.get("MetricsAvailable") or {}).get("message", ""))
        if unknown:
            detail = "; ".join(
                f"{n}: {safe_text(str(err or 'unknown'))}" for n, err in unknown.items()
            )
            t.conds.set("MetricsAvailable", False, "MetricsUnknown", detail)
            for name, err in unknown.items():
                if err is None:
                    continue
                if self.metrics is not None:
                    self.metrics.record_error(t.ref.kind, t.ref.namespace, t.ref.name, err)
                # a bad query, a missing queue: once, not every tick another metric changes
                said = f"{name}: {safe_text(str(err))}"
                if not err.temporary and said not in before:
                    await self._event(t, "Warning", type(err).__name__, said)
        else:
            t.conds.set(
                "MetricsAvailable", True, "AllMetricsKnown", f"{len(seen.readings)} metric(s) read"
            )
        was_fallback = (t.conds.get("Fallback") or {}).get("status") == "True"
        if decision.fallback_active:
            t.conds.set("Fallback", True, "MetricsUnavailable", decision.headline)
            if not was_fallback:
                await self._event(
                    t,
                    "Warning",
                    "FallbackStarted",
                    f"metrics unknown for {decision.history.consecutive_failures} "
                    f"tick(s): {decision.headline}",
                )
        else:
            t.conds.set("Fallback", False, "NotInFallback", "")
            if was_fallback:
                await self._event(t, "Normal", "FallbackEnded", "metrics are known again")

    async def _apply(
        self, t: _Tick, resource: Resource, capacity: Capacity, decision: Decision
    ) -> tuple[ApplyResult | None, tuple[str, str]]:
        """Carry the decision out (intent first), unless dry run, paused or busy.

        Returns what was applied and the ScalingLimited reason and message.
        """
        limited = decision.limited_by
        limit = (
            (_camel(str(limited)), "; ".join(decision.reasons[-2:]))
            if limited is not None
            else ("NotLimited", "")
        )
        if not decision.changed or t.dry_run or t.paused:
            if capacity.busy and decision.changed:
                limit = ("TargetBusy", capacity.busy)
            return None, limit
        if capacity.busy:
            return None, ("TargetBusy", capacity.busy)
        await self._record_intent(t, capacity, decision)
        actuator = self.actuators.for_target(resource.target)
        poll = float(resource.scaling.poll_interval_seconds)
        deadline = max(APPLY_DEADLINE, self.deadline(poll))
        until = send_by(t.now.timestamp(), poll, self.slot_offset(t.ref.uid, poll))
        try:
            async with asyncio.timeout(deadline):
                with fence.sending_by(until, lambda: self.clock().timestamp()):
                    applied = await actuator.apply(resource, decision.desired, capacity)
        except Deferred as exc:  # nothing was sent: hold, and decide again next tick
            t.base.pop("pendingAction", None)
            return None, ("WriteDeferred", safe_text(str(exc)))
        except TimeoutError:
            raise TickLate(
                f"no answer to the change {capacity.current} -> {decision.desired} within "
                f"{deadline:g} s; the next tick checks whether it happened"
            ) from None
        except StackscalerError:
            t.base.pop("pendingAction", None)
            raise
        self._failpoint("after-apply")
        intent = t.base.pop("pendingAction", None)
        if applied.changed:
            t.history = decision.history
            t.base["appliedCapacity"] = applied.requested
            direction = decision.direction
            await self._event(
                t,
                "Normal",
                "ScaledOut" if direction is Direction.OUT else "ScaledIn",
                decision.headline
                if applied.requested == decision.desired
                else f"{decision.headline} (the target allows {applied.requested})",
                key=action_key(t.ref.uid, intent) if isinstance(intent, dict) else None,
            )
            if self.metrics is not None:
                self.metrics.record_scale(t.ref.kind, t.ref.namespace, t.ref.name, direction)
        else:
            t.history = decision.history_if_held
        if applied.clamped:
            limit = ("TargetBounds", applied.clamped)
        return applied, limit

    async def _record_intent(self, t: _Tick, capacity: Capacity, decision: Decision) -> None:
        """Write the action into the status before it is sent (crash consistency)."""
        t.base["pendingAction"] = {
            "time": rfc3339(t.now),
            "from": capacity.current,
            "to": decision.desired,
            "headline": decision.headline[:1024],
        }
        await self._write(
            t,
            _drop_none({**t.base, "history": t.history.to_dict(), "conditions": t.conds.to_list()}),
            force=True,
        )

    async def _record(
        self,
        t: _Tick,
        resource: Resource,
        *,
        capacity: Capacity,
        decision: Decision,
        applied: ApplyResult | None,
        limit: tuple[str, str],
    ) -> TickResult:
        """Conditions, metrics and the whole status, through /status."""
        if applied is None:
            t.history = decision.history_if_held
        if "appliedCapacity" not in t.base and not t.dry_run:
            t.base["appliedCapacity"] = capacity.current
        conds = t.conds
        conds.set("ScalingLimited", limit[0] != "NotLimited", limit[0], limit[1])
        would = (
            f"would scale {capacity.current} -> {decision.desired}: {decision.headline}"
            if decision.changed
            else f"would hold {capacity.current}: {decision.headline}"
        )
        conds.set(
            "DryRun", t.dry_run, "DryRunMode" if t.dry_run else "Active", would if t.dry_run else ""
        )
        if t.paused:
            conds.set("Paused", True, "PausedByAnnotation", f"{t.paused_why}; {would}")
        conds.set("Ready", True, "Reconciled", decision.headline)
        status = self._status(t, decision=decision, capacity=capacity)
        await self._write(t, status, force=applied is not None)  # after an action: always
        return TickResult(float(resource.scaling.poll_interval_seconds), decision, applied)

    def _status(self, t: _Tick, *, decision: Decision, capacity: Capacity) -> dict[str, Any]:
        status = dict(t.base)
        history = t.history
        last_out, last_in = history.last_scale_out, history.last_scale_in
        last = max((x for x in (last_out, last_in) if x is not None), default=None)
        status.update(
            {
                "currentCapacity": capacity.current,
                "desiredCapacity": decision.desired,
                "startingCapacity": capacity.starting,
                "leavingCapacity": max(0, capacity.removing),
                "lastScaleTime": _epoch_ts(last),
                "lastScaleOutTime": _epoch_ts(last_out),
                "lastScaleInTime": _epoch_ts(last_in),
                "lastDecision": {
                    "time": rfc3339(t.now),
                    "direction": str(decision.direction),
                    "limitedBy": None if decision.limited_by is None else str(decision.limited_by),
                    **_demand(decision),
                    "reasons": [safe_text(r, 1024) for r in decision.reasons[:32]],
                    "metrics": [_metric_status(m) for m in decision.metrics][:11],
                },
                "history": history.to_dict(),
                "decreases": _decreases(capacity, t.now),
                "conditions": t.conds.to_list(),
            }
        )
        return _drop_none(status)

    # --- when a tick cannot go on ----------------------------------------------

    async def _refused(self, t: _Tick, exc: StackscalerError) -> TickResult:
        """An invalid spec, a grant it does not have, a target another resource owns."""
        if isinstance(exc, InvalidSpec):
            reason, message = "InvalidSpec", "; ".join(str(e) for e in exc.errors)
            delay = INVALID_SPEC_RETRY
        elif isinstance(exc, NotGranted):
            reason, message, delay = "NotGranted", str(exc), INVALID_SPEC_RETRY
        else:
            reason, message, delay = "TargetConflict", str(exc), CONFLICT_RETRY
            t.conds.set("Conflict", True, "TargetClaimed", safe_text(message))
        message = safe_text(message)
        if t.conds.set("Ready", False, reason, message):
            await self._event(t, "Warning", reason, message)
        if self.metrics is not None:
            self.metrics.record_error(t.ref.kind, t.ref.namespace, t.ref.name, exc)
        await self._write(t, {**t.base, "conditions": t.conds.to_list()})
        return TickResult(delay)

    async def _failed(
        self, t: _Tick, resource: Resource, exc: StackscalerError, *, stage: str
    ) -> TickResult:
        reason = "TickLate" if isinstance(exc, TickLate) else stage
        if not exc.temporary:
            reason = type(exc).__name__
        message = safe_text(str(exc))
        if t.conds.set("Ready", False, reason, message) and not exc.temporary:
            await self._event(t, "Warning", type(exc).__name__, message)
        if self.metrics is not None:
            self.metrics.record_error(t.ref.kind, t.ref.namespace, t.ref.name, exc)
        log.warning("%s: %s", t.ref, exc)
        await self._write(t, _drop_none({**t.base, "conditions": t.conds.to_list()}))
        poll = float(resource.scaling.poll_interval_seconds)
        delay = getattr(exc, "delay", poll) if exc.temporary else min(MAX_ERROR_RETRY, 4 * poll)
        return TickResult(max(1.0, float(delay)))

    # --- output -------------------------------------------------------------------

    async def _event(
        self, t: _Tick, type_: str, reason: str, message: str, *, key: str | None = None
    ) -> None:
        result = "posted"
        if not self.event_budget.take(t.ref.uid, t.now.timestamp()):
            log.warning("%s: event budget spent; not posting %s: %s", t.ref, reason, message)
            result = "suppressed"
        else:
            try:
                await self.events.record(t.ref, type_, reason, safe_text(message, 1024), key=key)
            except Exception:  # an event that cannot be posted never stops a tick
                log.warning("cannot post event %s for %s", reason, t.ref, exc_info=True)
                result = "failed"
        if self.metrics is not None:
            self.metrics.record_event(t.ref.kind, type_, reason, result)

    async def _write(self, t: _Tick, status: dict[str, Any], *, force: bool = False) -> None:
        """Keep ``status`` as the one the next tick starts from; write it unless it may wait.

        It may wait when it differs from the last one written only in volatile
        parts (:func:`material`), that write is younger than the refresh interval,
        and every window time is below ``L`` + the refresh interval, ``L`` the
        newest time the written status names (the restart argument in the module
        docstring). ``force``: the writes around an AWS action are never skipped.
        """
        memory = self._memory.get(t.ref.uid)
        if memory is None:
            memory = self._memory[t.ref.uid] = _Memory(status)
        memory.status = status
        now = t.now.timestamp()
        if not force and not self.followed(t.ref) and self._may_wait(memory, status, now):
            if self.metrics is not None:
                self.metrics.record_status_write("skipped")
            return
        try:
            version = await self.status.write(t.ref, status)
        except Exception:
            log.warning("cannot write the status of %s", t.ref, exc_info=True)
            return
        if memory.written is None:  # the first write of this memory: set its refresh phase
            memory.spread_at = now + fraction_of(t.ref.uid) * self.status_refresh
        memory.written, memory.written_at = status, now
        memory.version = None if version is None else str(version)
        if self.metrics is not None:
            self.metrics.record_status_write("written")

    def _may_wait(self, memory: _Memory, status: dict[str, Any], now: float) -> bool:
        written, at = memory.written, memory.written_at
        if written is None or at is None or not 0 <= now - at < self.status_refresh:
            return False
        if memory.spread_at is not None and now >= memory.spread_at:
            memory.spread_at = None  # an early refresh: writing sooner is always safe
            return False
        newest = _newest(written)
        if any(newest is None or w >= newest + self.status_refresh for w in _window_times(status)):
            return False
        return material(status) == material(written)


def _observations(seen: _Observed) -> Observations:
    """What the policy decides from: the capacity, what of it is still starting, the metrics."""
    capacity = seen.capacity
    return Observations(
        capacity.current,
        {n: r[0] for n, r in seen.readings.items()},
        starting=max(0, capacity.current - capacity.ready),
        leaving=max(0, capacity.removing),
        decreases=capacity.decreases,
    )


def _decreases(capacity: Capacity, now: datetime) -> dict[str, Any] | None:
    """``status.decreases`` of a DynamoDB table (None for other targets): the UTC day's
    decreases spent and left, and while none is left, when the next is earned (with some
    left that moment moves with the clock: it would rewrite the status every tick)."""
    budget = capacity.decreases
    if budget is None:
        return None
    at = now.timestamp()
    left = budget.left(at)
    out: dict[str, Any] = {"today": budget.used(at), "left": left}
    if left == 0:
        out["nextEarnedAt"] = rfc3339(datetime.fromtimestamp(budget.next_earned(at), UTC))
    return out


def _demand(decision: Decision) -> dict[str, Any]:
    """``recommendation``: what the metrics asked for (a tier source's Demand), only
    while every metric is known (a floor held for an unknown one is not demand)."""
    if not decision.metrics or not decision.metrics_available:
        return {}
    return {"recommendation": decision.recommendation}


def _metric_status(m: MetricResult) -> dict[str, Any]:
    """One metric of ``lastDecision.metrics``, with its sample's time when known."""
    out = m.to_dict()
    if m.time is not None:
        out["time"] = rfc3339(m.time)
    return out


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}
