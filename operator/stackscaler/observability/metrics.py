"""The operator's Prometheus metrics, on a dedicated registry.

Every metric is prefixed ``stackscaler_`` and carries its unit in its name.
Label sets are bounded: resource labels are ``kind``, ``namespace`` and
``name`` (bounded by the number of managed resources); every other label takes
values from a fixed set (directions, ``Limit`` values, error classes of an
allow-list, AWS call outcomes) or from the resource's spec (metric names, at
most 10 per resource) or from the code (AWS services and operations). Free
text such as messages never goes into a label.

An unknown (or stale) metric has no ``stackscaler_metric_value`` series:
missing is not zero. ``stackscaler_metric_known`` says whether it is known.

Hooks may be called from the AWS worker threads; prometheus_client's metrics
are thread-safe and so is the bookkeeping here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stackscaler import __version__
from stackscaler.policy.types import Decision, Direction, Limit, MetricState

RESOURCE_LABELS = ("kind", "namespace", "name")

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

LIMITED_BY_VALUES = (*(str(limit) for limit in Limit), "none")
DIRECTIONS = tuple(str(d) for d in Direction)
SCALE_DIRECTIONS = (str(Direction.OUT), str(Direction.IN))
STATUS_WRITE_RESULTS = ("written", "skipped")

RECONCILE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
"""Seconds; a reconcile is mostly a few API calls, slow ones hit AWS throttling."""


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
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        res = RESOURCE_LABELS

        # --- per resource ------------------------------------------------------
        self.capacity_current = Gauge(
            "stackscaler_capacity_current",
            "Current capacity of the scaled target (instances, replicas, pods), as last observed.",
            res,
            registry=r,
        )
        self.capacity_desired = Gauge(
            "stackscaler_capacity_desired",
            "Capacity the policy decided at the last reconcile.",
            res,
            registry=r,
        )
        self.capacity_min = Gauge(
            "stackscaler_capacity_min",
            "Effective minimum capacity at the last decision (schedules applied).",
            res,
            registry=r,
        )
        self.capacity_max = Gauge(
            "stackscaler_capacity_max",
            "Effective maximum capacity at the last decision (schedules applied).",
            res,
            registry=r,
        )
        self.metric_value = Gauge(
            "stackscaler_metric_value",
            "Last known value of a scaling metric, in the metric's own unit; "
            "absent while the metric is unknown or stale (missing is not zero).",
            (*res, "metric"),
            registry=r,
        )
        self.metric_target = Gauge(
            "stackscaler_metric_target",
            "Target value of a target-tracking scaling metric, in the metric's own unit "
            "(per unit of capacity for per-unit targets).",
            (*res, "metric"),
            registry=r,
        )
        self.metric_known = Gauge(
            "stackscaler_metric_known",
            "1 if the scaling metric's value is known and fresh at the last decision, 0 if "
            "it is unknown or stale.",
            (*res, "metric"),
            registry=r,
        )
        self.last_decision = Gauge(
            "stackscaler_last_decision_timestamp_seconds",
            "Time of the resource's last decision, in Unix seconds (the status is rewritten "
            "only when something material changed or every few minutes; this is every tick).",
            res,
            registry=r,
        )
        self.decisions = Counter(
            "stackscaler_decisions",
            "Scaling decisions made, by direction and by the rule that limited them "
            '("none" when no rule did).',
            (*res, "direction", "limited_by"),
            registry=r,
        )
        self.errors = Counter(
            "stackscaler_errors",
            "Errors while reconciling a resource, by error class (classes outside the "
            'allow-list count as "other").',
            (*res, "error"),
            registry=r,
        )
        self.scale_actions = Counter(
            "stackscaler_scale_actions",
            "Capacity changes carried out on the target, by direction.",
            (*res, "direction"),
            registry=r,
        )
        self.paused = Gauge(
            "stackscaler_paused",
            "1 if the resource is paused (no decisions are carried out), else 0.",
            res,
            registry=r,
        )
        self.dry_run = Gauge(
            "stackscaler_dry_run",
            "1 if the resource is in dry-run mode (decisions are reported, not carried "
            "out), else 0.",
            res,
            registry=r,
        )

        # --- operator ----------------------------------------------------------
        self.reconcile_duration = Histogram(
            "stackscaler_reconcile_duration_seconds",
            "Time taken by one reconcile of a resource, in seconds.",
            ("kind",),
            buckets=RECONCILE_BUCKETS,
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

        self._lock = threading.Lock()
        self._metric_names: dict[tuple[str, str, str], set[str]] = {}
        """Metric names with series, per resource: to remove the ones that go away."""

    # --- per resource --------------------------------------------------------------

    def record_decision(
        self, kind: str, namespace: str, name: str, decision: Decision, *, at: float | None = None
    ) -> None:
        """Record a decision: capacities, bounds, metric values/targets/known, and the count;
        ``at`` (Unix seconds), the decision's time, sets the last-decision gauge.

        Metrics the decision no longer has (renamed or removed from the spec)
        lose their series.
        """
        res = (kind, namespace, name)
        limited_by = "none" if decision.limited_by is None else str(decision.limited_by)
        with self._lock:  # one resource's series change together (forget may run meanwhile)
            self.capacity_current.labels(*res).set(decision.current)
            self.capacity_desired.labels(*res).set(decision.desired)
            self.capacity_min.labels(*res).set(decision.min_capacity)
            self.capacity_max.labels(*res).set(decision.max_capacity)
            seen: set[str] = set()
            for m in decision.metrics:
                seen.add(m.name)
                labels = (*res, m.name)
                value = m.value if m.state is MetricState.KNOWN else None
                if value is None:
                    self.metric_value.remove(*labels)
                else:
                    self.metric_value.labels(*labels).set(value)
                self.metric_known.labels(*labels).set(0 if value is None else 1)
                if m.target is None:
                    self.metric_target.remove(*labels)
                else:
                    self.metric_target.labels(*labels).set(m.target)
            for metric in self._metric_names.get(res, set()) - seen:
                self._remove_metric(res, metric)
            self._metric_names[res] = seen
            self.decisions.labels(*res, str(decision.direction), limited_by).inc()
            if at is not None:
                self.last_decision.labels(*res).set(at)

    def record_status_write(self, result: str) -> None:
        """Count a status write: ``result`` is "written" or "skipped"."""
        self.status_writes.labels(result).inc()

    def record_scale(self, kind: str, namespace: str, name: str, direction: Direction) -> None:
        """Count a capacity change carried out; ``Direction.NONE`` (no change) is not counted."""
        if direction is Direction.NONE:
            return
        self.scale_actions.labels(kind, namespace, name, str(direction)).inc()

    def record_error(self, kind: str, namespace: str, name: str, exc: BaseException) -> None:
        """Count an error by class (see :func:`error_label`); the message is never a label."""
        self.errors.labels(kind, namespace, name, error_label(exc)).inc()

    def set_mode(
        self, kind: str, namespace: str, name: str, *, paused: bool, dry_run: bool
    ) -> None:
        self.paused.labels(kind, namespace, name).set(1 if paused else 0)
        self.dry_run.labels(kind, namespace, name).set(1 if dry_run else 0)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """Remove every series of a (deleted) resource, per-metric ones included."""
        res = (kind, namespace, name)
        with self._lock:
            for metric in self._metric_names.pop(res, set()):
                self._remove_metric(res, metric)
            for gauge in (
                self.capacity_current,
                self.capacity_desired,
                self.capacity_min,
                self.capacity_max,
                self.last_decision,
                self.paused,
                self.dry_run,
            ):
                gauge.remove(*res)
            for direction in DIRECTIONS:
                for limited_by in LIMITED_BY_VALUES:
                    self.decisions.remove(*res, direction, limited_by)
            for error in (*ERROR_CLASSES, OTHER_ERROR):
                self.errors.remove(*res, error)
            for direction in SCALE_DIRECTIONS:
                self.scale_actions.remove(*res, direction)

    def _remove_metric(self, res: tuple[str, str, str], metric: str) -> None:
        for gauge in (self.metric_value, self.metric_target, self.metric_known):
            gauge.remove(*res, metric)

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
