"""What to read for a resource's forecast: the history of its metric's *load*.

The forecast is of a quantity that does not depend on the capacity that served it
(docs/forecast.md): for an ``AverageValue`` target (a total: requests per minute, a
backlog) the metric itself; for a ``Value`` target (a per-unit metric such as average
CPU) the metric times the units serving. :func:`plan_for` decides, once per spec, where
each part comes from:

* a **CloudWatch** metric is read with GetMetricData at a 5-minute period, or at its own
  period when that is longer (the same namespace, name, dimensions and statistic, or the
  same metric-math expression). A ``Sum`` or ``SampleCount`` statistic is per period, so
  its 5-minute value is scaled back to its own period (a 60 s Sum reads a fifth of the
  5-minute Sum). An expression is read at its own period (at least 60 s: sub-minute
  data are kept 3 hours only), since what it computes cannot be told from outside;
* a WorkerPool's queue ``backlog`` is read from CloudWatch's ``AWS/SQS`` metrics of the
  queue (``ApproximateNumberOfMessagesVisible``, plus ``...NotVisible`` and
  ``...Delayed`` when the pool counts them), averaged per 5 minutes;
* a **Prometheus** metric with a range query (``query_range``, a 300 s step);
* the **units serving**, for a ``Value`` target: an Auto Scaling group's
  ``GroupInServiceInstances`` (``AWS/AutoScaling``, the group's metrics collection must
  be enabled), read in the same GetMetricData call as the metric when both are in the
  same region and account; otherwise the units ready that the operator itself observed
  at its ticks, averaged per 5 minutes (kept in memory: after a restart the history of
  such a load starts again).

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from stackscaler.errors import PermanentError
from stackscaler.metrics.sqs import region_from_queue_url
from stackscaler.model.spec import (
    AutoScalingGroupTarget,
    CloudWatchQuery,
    CloudWatchSource,
    MetricSpec,
    MetricTarget,
    PrometheusSource,
    Resource,
    SqsSource,
    TargetType,
)
from stackscaler.predictive.history import STEP

PER_PERIOD_STATISTICS = frozenset({"Sum", "SampleCount"})
"""Statistics whose value grows with the period (a total per period, not a level)."""
MIN_EXPRESSION_PERIOD = 60
"""CloudWatch keeps sub-minute (high-resolution) datapoints for 3 hours only."""
CAPACITY_METRIC = ("AWS/AutoScaling", "GroupInServiceInstances")


@dataclass(frozen=True)
class CloudWatchRead:
    """One resource's history read from CloudWatch."""

    source: CloudWatchSource
    """The metric as read: its period is the read's (``period_seconds``)."""
    scale: float = 1.0
    """Each value is multiplied by this (a per-period statistic back to its own period)."""
    capacity_group: str | None = None
    """An Auto Scaling group: also read its GroupInServiceInstances and multiply."""

    @property
    def period(self) -> int:
        return self.source.period_seconds


@dataclass(frozen=True)
class PrometheusRead:
    source: PrometheusSource


@dataclass(frozen=True)
class LoadPlan:
    """How a resource's forecast reads its load (see the module docstring)."""

    metric: MetricSpec
    target: MetricTarget
    read: CloudWatchRead | PrometheusRead
    observed_capacity: bool = False
    """The load is the metric times the units the operator observed ready."""

    def describe(self) -> str:
        """``cpu x GroupInServiceInstances``: what the history is of (status messages)."""
        if isinstance(self.read, CloudWatchRead) and self.read.capacity_group is not None:
            return f"{self.metric.name} x {CAPACITY_METRIC[1]}"
        if self.observed_capacity:
            return f"{self.metric.name} x the units ready the operator observed"
        return self.metric.name


def history_period(source: CloudWatchSource) -> tuple[int, float]:
    """(the period to read ``source`` at, the factor back to its own period's values)."""
    p = source.period_seconds
    if source.per_second:  # a rate: the Sum over any period divided by that period
        period = p if p >= STEP else STEP
        return period, 1.0 / period
    if p >= STEP:
        return p, 1.0
    if source.expression is not None:
        return max(MIN_EXPRESSION_PERIOD, p), 1.0
    return STEP, (p / STEP if source.statistic in PER_PERIOD_STATISTICS else 1.0)


def queue_name(source: SqsSource) -> str:
    """The queue's name: ``name``, else the last segment of ``url``'s path."""
    if source.name:
        return source.name
    path = urlsplit(source.url or "").path.rstrip("/")
    name = path.rsplit("/", 1)[-1]
    if not name:
        raise PermanentError(f"cannot tell the queue's name from its url {source.url!r}")
    return name


def backlog_source(source: SqsSource) -> CloudWatchSource:
    """The queue's backlog as CloudWatch keeps it: the same messages the pool counts."""
    name = queue_name(source)
    region = source.region or (region_from_queue_url(source.url) if source.url else None)
    dims = (("QueueName", name),)
    counted = ["ApproximateNumberOfMessagesVisible"]
    if source.include_in_flight:
        counted.append("ApproximateNumberOfMessagesNotVisible")
    if source.include_delayed:
        counted.append("ApproximateNumberOfMessagesDelayed")
    if len(counted) == 1:
        return CloudWatchSource(
            "AWS/SQS", counted[0], dims, "Average", None, None, (), STEP, region, source.role_arn
        )
    queries = tuple(
        CloudWatchQuery(f"m{i}", "AWS/SQS", name_, dims, "Average")
        for i, name_ in enumerate(counted)
    )
    expression = " + ".join(q.id for q in queries)
    return CloudWatchSource(
        None, None, (), "Average", None, expression, queries, STEP, region, source.role_arn
    )


def _same_account(source: CloudWatchSource, target: AutoScalingGroupTarget) -> bool:
    """The group's metrics are where the metric is read: the same role, and the same
    region (one that names none is the operator's, taken to be the other's)."""
    regions = {source.region, target.region} - {None}
    return len(regions) <= 1 and source.role_arn == target.role_arn


def plan_for(resource: Resource) -> LoadPlan:
    """Where the history of ``resource``'s forecast metric comes from.

    Raises PermanentError for a metric whose history cannot be read (the model refuses
    such specs; this is the operator's own check).
    """
    predictive = resource.scaling.predictive
    if predictive is None:
        raise PermanentError(f"{resource.key} has no spec.predictive")
    try:
        metric = resource.scaling.metric(predictive.metric)
    except KeyError:
        raise PermanentError(
            f"{resource.key}: spec.predictive.metric {predictive.metric!r} is not a metric of "
            "this resource"
        ) from None
    target = metric.target
    if target is None:
        raise PermanentError(
            f"{resource.key}: spec.predictive.metric {metric.name!r} has no target"
        )
    per_unit = target.type is TargetType.VALUE
    source = metric.source
    if isinstance(source, SqsSource):
        return LoadPlan(metric, target, CloudWatchRead(backlog_source(source)), per_unit)
    if isinstance(source, CloudWatchSource):
        period, scale = history_period(source)
        read = CloudWatchRead(replace(source, period_seconds=period), scale)
        asg = resource.target
        if per_unit and isinstance(asg, AutoScalingGroupTarget) and _same_account(source, asg):
            return LoadPlan(metric, target, replace(read, capacity_group=asg.name))
        return LoadPlan(metric, target, read, per_unit)
    if isinstance(source, PrometheusSource):
        return LoadPlan(metric, target, PrometheusRead(source), per_unit)
    raise PermanentError(
        f"{resource.key}: metric {metric.name!r} has no history the forecast can read "
        "(forecast a CloudWatch or Prometheus metric, or a WorkerPool's backlog)"
    )
