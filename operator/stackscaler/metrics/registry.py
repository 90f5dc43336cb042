"""Which source reads which metric: the explicit registry (one line per source)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from stackscaler.aws import AwsCaller
from stackscaler.errors import StackscalerError
from stackscaler.metrics.base import MetricQuery, MetricSource, observe
from stackscaler.metrics.cloudwatch import CloudWatchMetricSource
from stackscaler.metrics.prometheus import PrometheusMetricSource, PrometheusSettings
from stackscaler.metrics.sqs import SqsMetricSource
from stackscaler.model.spec import (
    CloudWatchSource,
    MetricSpec,
    PrometheusSource,
    Resource,
    SqsSource,
)
from stackscaler.policy import MetricObservation

Reading = tuple[MetricObservation, StackscalerError | None]


class MetricSources:
    def __init__(self, caller: AwsCaller, prometheus: PrometheusSettings | None = None) -> None:
        self._sources: dict[type, MetricSource] = {
            CloudWatchSource: CloudWatchMetricSource(caller),
            SqsSource: SqsMetricSource(caller),
            PrometheusSource: PrometheusMetricSource(prometheus),
        }

    def for_metric(self, metric: MetricSpec) -> MetricSource:
        if metric.source is None:
            raise LookupError(f"metric {metric.name} has no source")
        return self._sources[type(metric.source)]

    async def observe_all(self, resource: Resource, now: datetime) -> dict[str, Reading]:
        """Every metric of the resource, concurrently; unknown ones carry their error."""
        metrics = resource.scaling.metrics
        readings = await asyncio.gather(
            *(observe(self.for_metric(m), MetricQuery(resource.key, m), now) for m in metrics)
        )
        return {m.name: r for m, r in zip(metrics, readings, strict=True)}

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self._sources.values()))
