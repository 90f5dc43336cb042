"""The operator's Prometheus metrics, on a dedicated registry.

Every metric is prefixed ``stackscaler_`` and carries its unit in its name.
Label sets are bounded: resource labels are ``kind``, ``namespace`` and
``name`` (bounded by the number of managed resources); every other label takes
values from a fixed set (directions, ``Limit`` values, error classes of an
allow-list, AWS call outcomes) or from the resource's spec (metric names, at
most 10 per resource) or from the code (AWS services and operations, Event
reasons). Free text such as messages never goes into a label.

An unknown (or stale) metric has no ``stackscaler_metric_value`` series:
missing is not zero. ``stackscaler_metric_known`` says whether it is known.

The per-resource series live in one collector of plain values
(:mod:`stackscaler.observability.resource_series`) that also writes itself as
text for ``/metrics``; the default registry is an
:class:`~stackscaler.observability.exposition.ExpositionRegistry`, which uses
that (a plain ``CollectorRegistry`` works too, through ``generate_latest``).

Hooks may be called from the AWS worker threads; prometheus_client's metrics
are thread-safe and so is the per-resource collector.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stackscaler import __version__
from stackscaler.observability.exposition import ExpositionRegistry
from stackscaler.observability.resource_series import ResourceSeries
from stackscaler.policy.types import Decision, Direction, MetricState

ERROR_CLASSES = (
    "InvalidSpec",
    "MetricUnavailable",
    "MetricStale",
    "Throttled",
    "TargetNotFound",
    "AccessDenied",
    "PermanentError",
    "TemporaryError",
)
"""Error classes reported by name; any other error is reported as ``other``."""
OTHER_ERROR = "other"

AWS_OUTCOMES = frozenset({"ok", "throttled", "denied", "not_found", "error"})
"""Outcomes of an AWS call; anything else is counted as ``error``."""

STATUS_WRITE_RESULTS = ("written", "skipped")

FORECAST_OUTCOMES = frozenset(
    {"Ready", "TooLittleHistory", "ErrorTooHigh", "NoSkill", "HistoryUnavailable"}
)
"""Outcomes of a forecast refresh (``stackscaler_forecast_refreshes``)."""

EVENT_RESULTS = frozenset({"posted", "suppressed", "failed"})
"""What became of an Event: posted, suppressed (the resource's hourly Event budget was
spent: logged, not posted) or failed (the API server refused it or could not be reached)."""

RECONCILE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
"""Seconds; a reconcile is mostly a few API calls, slow ones hit AWS throttling."""
DECISION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0)
"""Seconds from a tick's start to its decision: a few batched reads."""
LATENESS_BUCKETS = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0)
"""Seconds a decision came after one poll interval since the previous one."""


def error_label(exc: BaseException) -> str:
    """The ``error`` label for ``exc``: the nearest allow-listed class name, else ``other``.

    The class hierarchy is walked, so ``MetricStale`` stays ``MetricStale``
    while an unlisted subclass of ``TemporaryError`` is ``TemporaryError``.
    """
    for cls in type(exc).__mro__:
        if cls.__name__ in ERROR_CLASSES:
            return cls.__name__
    return OTHER_ERROR


def aws_outcome_label(outcome: str) -> str:
    """The ``outcome`` label: one of :data:`AWS_OUTCOMES` (unknown values become ``error``)."""
    return outcome if outcome in AWS_OUTCOMES else "error"


class OperatorMetrics:
    """The operator's metrics on ``registry`` (a new registry when None).

    Never registers with prometheus_client's global default registry, so
    several instances (tests, embedded runs) do not clash.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, version: str = __version__
    ) -> None:
        self.registry = registry if registry is not None else ExpositionRegistry()
        r = self.registry

        # --- per resource: one collector of plain values (see resource_series) ---------
        self.resource_series = ResourceSeries()
        r.register(self.resource_series)

        # --- operator ----------------------------------------------------------
        self.reconcile_duration = Histogram(
            "stackscaler_reconcile_duration_seconds",
            "Time taken by one reconcile of a resource, in seconds.",
            ("kind",),
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.decision_seconds = Histogram(
            "stackscaler_decision_seconds",
            "Seconds from the start of a resource's tick to its decision: reading the target "
            "and the metrics (batched with every resource due at the same time).",
            ("kind",),
            buckets=DECISION_BUCKETS,
            registry=r,
        )
        self.decision_lateness = Histogram(
            "stackscaler_decision_lateness_seconds",
            "How much later than one pollIntervalSeconds after the previous decision's tick "
            "start each decision came: the oldest the previous decision got, less the interval.",
            ("kind",),
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.aws_calls = Counter(
            "stackscaler_aws_calls",
            "AWS API calls made (after botocore's retries), by service, operation and outcome.",
            ("service", "operation", "outcome"),
            registry=r,
        )
        self.rate_limiter_wait_seconds = Counter(
            "stackscaler_rate_limiter_wait_seconds",
            "Total seconds AWS calls waited for a token of the client-side rate limiter.",
            ("service", "region"),
            registry=r,
        )
        self.rate_limiter_waits = Counter(
            "stackscaler_rate_limiter_waits",
            "AWS call attempts that had to wait for a token of the client-side rate limiter.",
            ("service", "region"),
            registry=r,
        )
        self.status_writes = Counter(
            "stackscaler_status_writes",
            'Status writes through /status: "written", or "skipped" when only volatile parts '
            "(times, metric values, messages) changed since a write younger than the refresh "
            "interval.",
            ("result",),
            registry=r,
        )
        for result in STATUS_WRITE_RESULTS:
            self.status_writes.labels(result)  # both series from the start, at 0
        self.events = Counter(
            "stackscaler_events",
            "Kubernetes Events about managed resources, by kind, type (Normal, Warning), reason "
            'and result: "posted", "suppressed" (the resource\'s hourly Event budget was spent; '
            'logged instead) or "failed".',
            ("kind", "type", "reason", "result"),
            registry=r,
        )
        self.forecast_refreshes = Counter(
            "stackscaler_forecast_refreshes",
            "Refreshes of spec.predictive's forecasts (a history read and a fit), by outcome: "
            "Ready, a refusal (TooLittleHistory, ErrorTooHigh, NoSkill) or HistoryUnavailable "
            "(the read failed).",
            ("outcome",),
            registry=r,
        )
        self.resources = Gauge(
            "stackscaler_resources",
            "Resources managed by the operator, by kind.",
            ("kind",),
            registry=r,
        )
        self.build_info = Gauge(
            "stackscaler_build_info",
            "Always 1; the version label is the running stackscaler's version.",
            ("version",),
            registry=r,
        )
        self.build_info.labels(version).set(1)

    # --- per resource --------------------------------------------------------------

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
    ) -> None:
        """Record a decision: capacities, bounds, metric values/targets/known, and the count;
        ``at`` (Unix seconds), the decision's time, sets the last-decision gauge; ``took``,
        the seconds from the tick's start to the decision, goes into
        ``stackscaler_decision_seconds``; ``late``, how much later than one poll interval
        after the previous decision's tick start it came (the oldest the previous decision
        got, less the interval; at least 0), into ``stackscaler_decision_lateness_seconds``.

        Metrics the decision no longer has (renamed or removed from the spec)
        lose their series.
        """
        self.resource_series.record_decision(
            (kind, namespace, name),
            current=decision.current,
            desired=decision.desired,
            min_capacity=decision.min_capacity,
            max_capacity=decision.max_capacity,
            starting=decision.starting,
            leaving=decision.leaving,
            metrics=[
                (m.name, m.value if m.state is MetricState.KNOWN else None, m.target)
                for m in decision.metrics
            ],
            direction=str(decision.direction),
            limited_by="none" if decision.limited_by is None else str(decision.limited_by),
            at=at,
        )
        if took is not None:
            self.decision_seconds.labels(kind).observe(max(took, 0.0))
        if late is not None:
            self.decision_lateness.labels(kind).observe(max(late, 0.0))

    def record_status_write(self, result: str) -> None:
        """Count a status write: ``result`` is "written" or "skipped"."""
        self.status_writes.labels(result).inc()

    def record_event(self, kind: str, type_: str, reason: str, result: str) -> None:
        """Count an Event: ``type_`` is Normal or Warning, ``reason`` the Event's reason (a
        word from the code, never free text), ``result`` one of :data:`EVENT_RESULTS`."""
        if result not in EVENT_RESULTS:
            raise ValueError(f"unknown Event result {result!r}")
        self.events.labels(kind, type_, reason, result).inc()

    def record_scale(self, kind: str, namespace: str, name: str, direction: Direction) -> None:
        """Count a capacity change carried out; ``Direction.NONE`` (no change) is not counted."""
        if direction is Direction.NONE:
            return
        self.resource_series.inc_scale((kind, namespace, name), str(direction))

    def record_error(self, kind: str, namespace: str, name: str, exc: BaseException) -> None:
        """Count an error by class (see :func:`error_label`); the message is never a label."""
        self.resource_series.inc_error((kind, namespace, name), error_label(exc))

    def set_mode(
        self, kind: str, namespace: str, name: str, *, paused: bool, dry_run: bool
    ) -> None:
        self.resource_series.set_mode((kind, namespace, name), paused=paused, dry_run=dry_run)

    def record_forecast(self, kind: str, namespace: str, name: str, floor: int | None) -> None:
        """The floor of spec.predictive's forecast at this decision (None: no ready one)."""
        self.resource_series.set_forecast_floor((kind, namespace, name), floor)

    def record_forecast_refresh(self, outcome: str) -> None:
        """Count one forecast refresh by its outcome (one of :data:`FORECAST_OUTCOMES`;
        anything else counts as HistoryUnavailable)."""
        label = outcome if outcome in FORECAST_OUTCOMES else "HistoryUnavailable"
        self.forecast_refreshes.labels(label).inc()

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """Remove every series of a (deleted) resource, per-metric ones included."""
        self.resource_series.forget((kind, namespace, name))

    # --- operator ------------------------------------------------------------------

    @contextmanager
    def observe_reconcile(self, kind: str) -> Iterator[None]:
        """Time the block into ``stackscaler_reconcile_duration_seconds`` (also if it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.reconcile_duration.labels(kind).observe(time.perf_counter() - start)

    def set_resources(self, kind: str, count: int) -> None:
        self.resources.labels(kind).set(count)

    def aws_call_hook(self) -> Callable[[str, str, str], None]:
        """A ``CallHook`` for ``AwsCaller(hook=...)``: counts calls by outcome."""

        def hook(service: str, operation: str, outcome: str) -> None:
            self.aws_calls.labels(service, operation, aws_outcome_label(outcome)).inc()

        return hook

    def limiter_wait_hook(self) -> Callable[[str, str, float], None]:
        """An ``on_wait`` hook for ``RateLimiters``: counts waits and seconds waited."""

        def hook(service: str, region: str, seconds: float) -> None:
            self.rate_limiter_waits.labels(service, region).inc()
            self.rate_limiter_wait_seconds.labels(service, region).inc(max(seconds, 0.0))

        return hook
