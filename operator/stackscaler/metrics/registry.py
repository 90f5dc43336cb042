"""Which source reads which metric: the explicit registry (one line per source)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from stackscaler.aws import AwsCaller
from stackscaler.errors import MetricUnavailable, StackscalerError
from stackscaler.metrics.base import MetricQuery, MetricSource, observe
from stackscaler.metrics.cloudwatch import CloudWatchMetricSource
from stackscaler.metrics.prometheus import PrometheusMetricSource, PrometheusSettings
from stackscaler.metrics.sqs import SqsMetricSource
from stackscaler.metrics.tier import TierIndex, TierMetricSource
from stackscaler.model.spec import (
    CloudWatchSource,
    MetricSpec,
    PrometheusSource,
    Resource,
    SqsSource,
    TierSource,
)
from stackscaler.policy import MetricObservation

Reading = tuple[MetricObservation, StackscalerError | None]


class MetricSources:
    def __init__(
        self,
        caller: AwsCaller,
        prometheus: PrometheusSettings | None = None,
        *,
        tiers: TierIndex | None = None,
    ) -> None:
        """``tiers``: the operator's index of the resources it watches (tier sources)."""
        self._sources: dict[type, MetricSource] = {
            CloudWatchSource: CloudWatchMetricSource(caller),
            SqsSource: SqsMetricSource(caller),
            PrometheusSource: PrometheusMetricSource(prometheus),
            TierSource: TierMetricSource(tiers if tiers is not None else TierIndex()),
        }

    def for_metric(self, metric: MetricSpec) -> MetricSource:
        if metric.source is None:
            raise LookupError(f"metric {metric.name} has no source")
        return self._sources[type(metric.source)]

    async def observe_all(
        self, resource: Resource, now: datetime, *, deadline: float | None = None
    ) -> dict[str, Reading]:
        """Every metric of the resource, concurrently; unknown ones carry their error.

        A metric without an answer within ``deadline`` seconds is unknown
        (MetricUnavailable), whatever its source is still waiting for.
        """
        metrics = resource.scaling.metrics
        if len(metrics) == 1:  # the common case: no task for gather to wrap it in
            readings = [await self._observe(resource, metrics[0], now, deadline)]
        else:
            readings = list(
                await asyncio.gather(*(self._observe(resource, m, now, deadline) for m in metrics))
            )
        return {m.name: r for m, r in zip(metrics, readings, strict=True)}

    async def _observe(
        self, resource: Resource, metric: MetricSpec, now: datetime, deadline: float | None
    ) -> Reading:
        query = MetricQuery(resource.key, metric, resource.kind)
        read = observe(self.for_metric(metric), query, now)
        if deadline is None:
            return await read
        try:
            async with asyncio.timeout(deadline):
                return await read
        except TimeoutError:
            err = MetricUnavailable(
                f"no answer within {deadline:g} s (the tick's deadline): unknown, this tick is late"
            )
            return MetricObservation.unknown(str(err)), err

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self._sources.values()))
