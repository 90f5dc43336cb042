"""The per-resource series (labelled ``kind``, ``namespace``, ``name``) as one collector.

At a few thousand managed resources these are nearly all of the operator's
series (about 16 per resource), and formatting them through prometheus_client
one sample object at a time made a scrape cost half a second of CPU. Here they
are plain values in dicts keyed by resource; each series keeps the head of its
line (name and escaped labels) from when it was created, so a scrape only
formats the values. :meth:`ResourceSeries.collect` yields ordinary metric
families (``get_sample_value``, ``generate_latest``) and
:meth:`ResourceSeries.render` writes the same samples as text.

The counters (decisions, errors, scale actions) have no ``_created`` series:
they would double the series count and say only when the operator first saw
the resource. A counter starts at 0 when the operator (re)starts or forgets
the resource, which ``rate()`` handles as a reset.

Thread-safe: one lock guards every change; a decision's series change
together, and a scrape reads each resource's series as one consistent set.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from stackscaler.observability.exposition import (
    TextCollector,
    escape_label_value,
    family_header,
    format_value,
)

RESOURCE_LABELS = ("kind", "namespace", "name")

Resource = tuple[str, str, str]
"""(kind, namespace, name)."""

MetricReading = tuple[str, float | None, float | None]
"""(metric name, value or None when unknown, target or None when it has none)."""


@dataclass(frozen=True)
class Family:
    name: str
    """As in ``collect()``: counters without ``_total``."""
    doc: str
    type: str
    """``gauge`` or ``counter``."""
    extra_labels: tuple[str, ...] = ()
    """Labels after kind, namespace and name."""

    @property
    def exposed_name(self) -> str:
        return f"{self.name}_total" if self.type == "counter" else self.name


FAMILIES = (
    CAPACITY_CURRENT := Family(
        "stackscaler_capacity_current",
        "Current capacity of the scaled target (instances, replicas, pods), as last observed.",
        "gauge",
    ),
    CAPACITY_DESIRED := Family(
        "stackscaler_capacity_desired",
        "Capacity the policy decided at the last reconcile.",
        "gauge",
    ),
    CAPACITY_MIN := Family(
        "stackscaler_capacity_min",
        "Effective minimum capacity at the last decision (schedules applied).",
        "gauge",
    ),
    CAPACITY_MAX := Family(
        "stackscaler_capacity_max",
        "Effective maximum capacity at the last decision (schedules applied).",
        "gauge",
    ),
    CAPACITY_STARTING := Family(
        "stackscaler_capacity_starting",
        "Units of the current capacity still starting at the last decision (ordered, not yet "
        "in the metrics: launching, in warm-up, replicas being created, pods not ready).",
        "gauge",
    ),
    CAPACITY_LEAVING := Family(
        "stackscaler_capacity_leaving",
        "Units being removed at the last decision (not part of the current capacity).",
        "gauge",
    ),
    METRIC_VALUE := Family(
        "stackscaler_metric_value",
        "Last known value of a scaling metric, in the metric's own unit; "
        "absent while the metric is unknown or stale (missing is not zero).",
        "gauge",
        ("metric",),
    ),
    METRIC_TARGET := Family(
        "stackscaler_metric_target",
        "Target value of a target-tracking scaling metric, in the metric's own unit "
        "(per unit of capacity for per-unit targets).",
        "gauge",
        ("metric",),
    ),
    METRIC_KNOWN := Family(
        "stackscaler_metric_known",
        "1 if the scaling metric's value is known and fresh at the last decision, 0 if "
        "it is unknown or stale.",
        "gauge",
        ("metric",),
    ),
    LAST_DECISION := Family(
        "stackscaler_last_decision_timestamp_seconds",
        "Time of the resource's last decision, in Unix seconds (the status is rewritten "
        "only when something material changed or every few minutes; this is every tick).",
        "gauge",
    ),
    DECISIONS := Family(
        "stackscaler_decisions",
        "Scaling decisions made, by direction and by the rule that limited them "
        '("none" when no rule did).',
        "counter",
        ("direction", "limited_by"),
    ),
    ERRORS := Family(
        "stackscaler_errors",
        "Errors while reconciling a resource, by error class (classes outside the "
        'allow-list count as "other").',
        "counter",
        ("error",),
    ),
    SCALE_ACTIONS := Family(
        "stackscaler_scale_actions",
        "Capacity changes carried out on the target, by direction.",
        "counter",
        ("direction",),
    ),
    PAUSED := Family(
        "stackscaler_paused",
        "1 if the resource is paused (no decisions are carried out), else 0.",
        "gauge",
    ),
    DRY_RUN := Family(
        "stackscaler_dry_run",
        "1 if the resource is in dry-run mode (decisions are reported, not carried out), else 0.",
        "gauge",
    ),
    FORECAST_FLOOR := Family(
        "stackscaler_forecast_floor",
        "The capacity spec.predictive's forecast needs a lead ahead (its floor) at the last "
        "decision; absent without a ready forecast. ForecastAndScale keeps the desired "
        "capacity at least this; ForecastOnly only reports it.",
        "gauge",
    ),
)
_INDEX = {family: i for i, family in enumerate(FAMILIES)}
_HEADERS = tuple(family_header(f.exposed_name, f.doc, f.type) for f in FAMILIES)


class _Series:
    """One series: its label values after the resource's, its line head, its value."""

    __slots__ = ("extra", "family", "head", "value")

    def __init__(self, family: int, extra: tuple[str, ...], head: str, value: float) -> None:
        self.family = family
        self.extra = extra
        self.head = head
        """``name{labels} `` with the labels sorted by name and escaped, as generate_latest
        writes them."""
        self.value = value


class _Resource:
    __slots__ = ("escaped", "labels", "metric_names", "series")

    def __init__(self, labels: Resource) -> None:
        self.labels = labels
        self.escaped = tuple(
            (k, escape_label_value(v)) for k, v in zip(RESOURCE_LABELS, labels, strict=True)
        )
        """The resource's label values, escaped once."""
        self.series: dict[tuple[int, tuple[str, ...]], _Series] = {}
        """By (family index, extra label values), in creation order."""
        self.metric_names: set[str] = set()
        """Metric names with series: to remove the ones that go away."""

    def set(self, family: Family, value: float, *extra: str) -> None:
        i = _INDEX[family]
        s = self.series.get((i, extra))
        if s is None:
            pairs = [*self.escaped]
            pairs += zip(family.extra_labels, map(escape_label_value, extra), strict=True)
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(pairs))
            head = f"{family.exposed_name}{{{labels}}} "
            self.series[(i, extra)] = _Series(i, extra, head, float(value))
        else:
            s.value = float(value)

    def inc(self, family: Family, *extra: str) -> None:
        s = self.series.get((_INDEX[family], extra))
        self.set(family, 1.0 if s is None else s.value + 1.0, *extra)

    def remove(self, family: Family, *extra: str) -> None:
        self.series.pop((_INDEX[family], extra), None)


class ResourceSeries(TextCollector):
    """Every per-resource series of the operator; see the module's docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resources: dict[Resource, _Resource] = {}

    def _resource(self, res: Resource) -> _Resource:
        r = self._resources.get(res)
        if r is None:
            r = self._resources[res] = _Resource(res)
        return r

    # --- changes -------------------------------------------------------------------

    def record_decision(
        self,
        res: Resource,
        *,
        current: float,
        desired: float,
        min_capacity: float,
        max_capacity: float,
        starting: float,
        leaving: float,
        metrics: Sequence[MetricReading],
        direction: str,
        limited_by: str,
        at: float | None,
    ) -> None:
        """Capacities (units starting and leaving too), bounds, per-metric value/target/known,
        one decision counted, and the time when ``at`` is given. Metrics not in ``metrics``
        (any more) lose their series; an unknown metric has no value series and a metric
        without target no target one."""
        with self._lock:
            r = self._resource(res)
            r.set(CAPACITY_CURRENT, current)
            r.set(CAPACITY_DESIRED, desired)
            r.set(CAPACITY_MIN, min_capacity)
            r.set(CAPACITY_MAX, max_capacity)
            r.set(CAPACITY_STARTING, starting)
            r.set(CAPACITY_LEAVING, leaving)
            seen: set[str] = set()
            for name, value, target in metrics:
                seen.add(name)
                if value is None:
                    r.remove(METRIC_VALUE, name)
                else:
                    r.set(METRIC_VALUE, value, name)
                if target is None:
                    r.remove(METRIC_TARGET, name)
                else:
                    r.set(METRIC_TARGET, target, name)
                r.set(METRIC_KNOWN, 0 if value is None else 1, name)
            for name in r.metric_names - seen:
                for family in (METRIC_VALUE, METRIC_TARGET, METRIC_KNOWN):
                    r.remove(family, name)
            r.metric_names = seen
            r.inc(DECISIONS, direction, limited_by)
            if at is not None:
                r.set(LAST_DECISION, at)

    def inc_scale(self, res: Resource, direction: str) -> None:
        with self._lock:
            self._resource(res).inc(SCALE_ACTIONS, direction)

    def inc_error(self, res: Resource, error: str) -> None:
        with self._lock:
            self._resource(res).inc(ERRORS, error)

    def set_mode(self, res: Resource, *, paused: bool, dry_run: bool) -> None:
        with self._lock:
            r = self._resource(res)
            r.set(PAUSED, 1 if paused else 0)
            r.set(DRY_RUN, 1 if dry_run else 0)

    def set_forecast_floor(self, res: Resource, floor: float | None) -> None:
        """The forecast's floor; None removes the series (no ready forecast)."""
        with self._lock:
            r = self._resource(res)
            if floor is None:
                r.remove(FORECAST_FLOOR)
            else:
                r.set(FORECAST_FLOOR, floor)

    def forget(self, res: Resource) -> None:
        """Remove every series of the resource (a no-op for an unknown one)."""
        with self._lock:
            self._resources.pop(res, None)

    # --- reading -------------------------------------------------------------------

    def _snapshot(self) -> Iterator[tuple[Resource, list[_Series]]]:
        """Each resource's series, copied under the lock one resource at a time (a scrape
        never holds the lock for long)."""
        with self._lock:
            resources = list(self._resources.values())
        for r in resources:
            with self._lock:
                if self._resources.get(r.labels) is not r:
                    continue  # forgotten meanwhile
                series = [_Series(s.family, s.extra, s.head, s.value) for s in r.series.values()]
            yield r.labels, series

    def describe(self) -> Iterable[Metric]:
        """The families without samples: the registry checks names against them."""
        return [self._family(f) for f in FAMILIES]

    def collect(self) -> Iterable[Metric]:
        families = [self._family(f) for f in FAMILIES]
        for labels, series in self._snapshot():
            for s in series:
                families[s.family].add_metric([*labels, *s.extra], s.value)
        return families

    def render(self) -> str:
        lines: list[list[str]] = [[header] for header in _HEADERS]
        with self._lock:
            resources = list(self._resources.values())
        lock, current, fmt = self._lock, self._resources, format_value
        for r in resources:
            with lock:
                if current.get(r.labels) is not r:
                    continue  # forgotten meanwhile
                for s in r.series.values():
                    lines[s.family].append(f"{s.head}{fmt(s.value)}\n")
        return "".join(line for family in lines for line in family)

    @staticmethod
    def _family(family: Family) -> CounterMetricFamily | GaugeMetricFamily:
        labels = [*RESOURCE_LABELS, *family.extra_labels]
        if family.type == "counter":
            return CounterMetricFamily(family.name, family.doc, labels=labels)
        return GaugeMetricFamily(family.name, family.doc, labels=labels)
