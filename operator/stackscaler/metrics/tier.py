"""Tier sources: a value of another stackscaler resource of the same namespace.

A ReadReplicaPool that follows the web tier's demand scales a warm-up before its
own CPU moves. The value is read from the other resource's status as the operator
last wrote it, through the operator's own watch (:class:`TierIndex`, updated by
the handlers on every watch event of the four kinds): no API call per read.

The status lives in the API server, so a resource served by another replica (its
shard's Lease held elsewhere) or selected by another operator is read the same
way: every replica watches every resource of the namespaces it serves, and the
index keeps all of them, whatever this replica acts on. A resource that another
one follows writes its status at every tick (:meth:`TierIndex.followed`, see
``reconcile.Reconciler``), so what is read is at most one of its poll intervals old.

=====================================  ==========================================
Value                                  Read from its status (time: for staleness)
=====================================  ==========================================
Metric (``metric``: one of its names)  ``lastDecision.metrics[]``, Known only;
                                       time: the sample's (``time``)
Demand                                 ``lastDecision.recommendation``;
                                       time: ``lastDecision.time``
DesiredCapacity                        ``desiredCapacity``; ``lastDecision.time``
ReadyCapacity                          ``currentCapacity - startingCapacity``;
                                       ``lastDecision.time``
=====================================  ==========================================

Missing is not zero: a resource the watch has not seen, a status without the
value, a metric the other resource does not have or did not know at its last
decision raise :class:`~stackscaler.errors.MetricUnavailable`; a value older
than the metric's ``staleAfterSeconds`` raises
:class:`~stackscaler.errors.MetricStale`. A tier source whose resource follows,
directly or through others, the resource that reads it closes a cycle: it raises
:class:`~stackscaler.errors.TierCycle` (permanent, until a spec changes) naming
the cycle and the fix; the resources outside the cycle are not affected.

Only the resource's own namespace is read: the source has no namespace field,
and the index is looked up with the namespace of the resource that reads it.
A status is data anyone allowed to write ``/status`` could have written: it is
parsed defensively and none of its strings is repeated in a message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stackscaler.errors import MetricUnavailable, PermanentError, TierCycle
from stackscaler.metrics.base import MetricQuery, Sample, check_fresh
from stackscaler.model.crds import BACKLOG_METRIC
from stackscaler.model.spec import TierSource, TierValue
from stackscaler.model.tiers import TierEdge, TierRef, cycle_through, describe_cycle, raw_tier_edges
from stackscaler.policy.history import parse_time

_STATES = ("Known", "Unknown", "Stale")
"""The metric states a status may name (anything else is shown as 'not known')."""


def _time(v: Any) -> float | None:
    if not isinstance(v, str) or len(v) > 64:
        return None
    try:
        t = parse_time(v)
    except (ValueError, OverflowError):
        return None
    return t if math.isfinite(t) else None


def _count(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    out = float(v)
    return out if math.isfinite(out) else None


@dataclass(frozen=True)
class TierMetric:
    value: float | None
    time: float | None
    state: str


@dataclass(frozen=True)
class TierStatus:
    """What a tier source may read of one resource: its status as last written,
    parsed defensively, and the names of the metrics its spec declares."""

    decided: float | None = None
    """``lastDecision.time`` (epoch seconds)."""
    desired: int | None = None
    current: int | None = None
    starting: int | None = None
    demand: int | None = None
    metrics: Mapping[str, TierMetric] = field(default_factory=dict)
    declared: frozenset[str] = frozenset()

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> TierStatus:
        status = body.get("status")
        status = status if isinstance(status, Mapping) else {}
        decision = status.get("lastDecision")
        decision = decision if isinstance(decision, Mapping) else {}
        metrics: dict[str, TierMetric] = {}
        entries = decision.get("metrics")
        for m in entries if isinstance(entries, list) else ():
            if isinstance(m, Mapping) and isinstance(m.get("name"), str):
                state = m.get("state")
                metrics[m["name"]] = TierMetric(
                    _number(m.get("value")),
                    _time(m.get("time")),
                    state if state in _STATES else "not known",
                )
        spec = body.get("spec")
        declared: set[str] = set()
        listed = spec.get("metrics") if isinstance(spec, Mapping) else None
        for m in listed if isinstance(listed, list) else ():
            if isinstance(m, Mapping) and isinstance(m.get("name"), str):
                declared.add(m["name"])
        if body.get("kind") == "WorkerPool":
            declared.add(BACKLOG_METRIC)
        return cls(
            decided=_time(decision.get("time")),
            desired=_count(status.get("desiredCapacity")),
            current=_count(status.get("currentCapacity")),
            starting=_count(status.get("startingCapacity")),
            demand=_count(decision.get("recommendation")),
            metrics=metrics,
            declared=frozenset(declared),
        )

    def read(self, source: TierSource, what: str) -> tuple[float, float]:
        """(value, time) of ``source``'s value; MetricUnavailable when it has none."""
        if self.decided is None:
            raise MetricUnavailable(f"{what}: it has not recorded a decision yet")
        if source.value is TierValue.METRIC:
            return self._metric(source.metric or "", what)
        if source.value is TierValue.DEMAND:
            if self.demand is None:
                raise MetricUnavailable(
                    f"{what}: unknown at its last decision (one of its metrics was unknown, "
                    "or it has no metric)"
                )
            return float(self.demand), self.decided
        if source.value is TierValue.DESIRED_CAPACITY:
            if self.desired is None:
                raise MetricUnavailable(f"{what}: its status has no desiredCapacity")
            return float(self.desired), self.decided
        if self.current is None or self.starting is None:
            raise MetricUnavailable(
                f"{what}: its status has no currentCapacity and startingCapacity"
            )
        return float(max(0, self.current - self.starting)), self.decided

    def _metric(self, name: str, what: str) -> tuple[float, float]:
        found = self.metrics.get(name)
        if found is None:
            if name not in self.declared:
                raise MetricUnavailable(f"{what}: it has no metric of that name")
            raise MetricUnavailable(f"{what}: not in its last decision")
        if found.state != "Known" or found.value is None:
            raise MetricUnavailable(f"{what}: {found.state} at its last decision")
        if found.time is None:
            raise MetricUnavailable(f"{what}: its status gives no time for the value")
        return found.value, found.time


_Key = tuple[str, str, str]
"""(namespace, kind, name)."""


class TierIndex:
    """Every stackscaler resource the operator's watch has seen: its status as a tier
    source reads it, and the tier sources of its spec (who follows whom, per namespace).

    Updated by the handlers on every watch event, whatever the resource's shard or
    selection; read by :class:`TierMetricSource` and by the reconciler
    (:meth:`followed`). Single-threaded: the event loop's.
    """

    def __init__(self) -> None:
        self._status: dict[_Key, TierStatus] = {}
        self._edges: dict[str, dict[TierRef, tuple[TierEdge, ...]]] = {}
        self._followers: dict[tuple[str, TierRef], set[TierRef]] = {}

    def __len__(self) -> int:
        return len(self._status)

    def update(self, body: Mapping[str, Any]) -> None:
        """A watch event: the resource as it is now."""
        key = _key(body)
        if key is None:
            return
        namespace, kind, name = key
        self._status[key] = TierStatus.of(body)
        self._link(namespace, TierRef(kind, name), raw_tier_edges(body))

    def remove(self, body: Mapping[str, Any]) -> None:
        """The resource was deleted."""
        key = _key(body)
        if key is None:
            return
        namespace, kind, name = key
        self._status.pop(key, None)
        self._link(namespace, TierRef(kind, name), ())

    def status(self, namespace: str, kind: str, name: str) -> TierStatus | None:
        return self._status.get((namespace, kind, name))

    def followed(self, namespace: str, kind: str, name: str) -> bool:
        """Does another resource of the namespace have a tier source naming this one?"""
        return bool(self._followers.get((namespace, TierRef(kind, name))))

    def cycle(self, namespace: str, reader: TierRef, to: TierRef) -> tuple[TierRef, ...] | None:
        """The shortest cycle the tier source ``reader -> to`` closes, as the path
        ``(reader, to, ..., reader)``; None when ``to`` does not lead back to ``reader``."""
        edges = self._edges.get(namespace, {})

        def follows(ref: TierRef) -> list[TierRef]:
            if ref == reader:
                return [to]
            return [e.to for e in edges.get(ref, ())]

        return cycle_through(reader, follows)

    def _link(self, namespace: str, ref: TierRef, edges: tuple[TierEdge, ...]) -> None:
        ns = self._edges.setdefault(namespace, {})
        for old in ns.get(ref, ()):
            followers = self._followers.get((namespace, old.to))
            if followers is not None:
                followers.discard(ref)
                if not followers:
                    del self._followers[(namespace, old.to)]
        if edges:
            ns[ref] = edges
            for e in edges:
                self._followers.setdefault((namespace, e.to), set()).add(ref)
        else:
            ns.pop(ref, None)
            if not ns:
                del self._edges[namespace]


def _key(body: Mapping[str, Any]) -> _Key | None:
    meta = body.get("metadata")
    kind = body.get("kind")
    if not isinstance(meta, Mapping) or not isinstance(kind, str):
        return None
    namespace, name = meta.get("namespace"), meta.get("name")
    if not isinstance(namespace, str) or not isinstance(name, str):
        return None
    return namespace, kind, name


class TierMetricSource:
    """Reads tier sources from a :class:`TierIndex`; no I/O of its own."""

    def __init__(self, index: TierIndex) -> None:
        self.index = index

    async def read(self, query: MetricQuery, now: datetime) -> Sample:
        source = query.source
        if not isinstance(source, TierSource):
            raise PermanentError(f"{query.resource} metric {query.metric.name}: not a tier source")
        namespace, _, name = query.resource.partition("/")
        what = f"{query.resource} metric {query.metric.name}: {source}"
        path = self.index.cycle(
            namespace, TierRef(query.kind, name), TierRef(source.kind, source.name)
        )
        if path is not None:
            raise TierCycle(f"{what}: {describe_cycle(path)}")
        status = self.index.status(namespace, source.kind, source.name)
        if status is None:
            raise MetricUnavailable(
                f"{what}: no {source.kind} {source.name} in namespace {namespace} (a tier "
                "source reads its own namespace only)"
            )
        value, at = status.read(source, what)
        return check_fresh(query, Sample(value, datetime.fromtimestamp(at, UTC)), now)

    async def close(self) -> None:
        """Nothing to release: the index belongs to the operator."""
