"""The metric-source interface: one small Protocol, one module per source.

A source reads the current value of one metric of one resource. Sources
batch internally (concurrent reads in the same tick share provider calls),
so callers simply ``await source.read(...)`` for each metric they need.

Missing is not zero: a source raises :class:`~stackscaler.errors.MetricUnavailable`
(no datapoints, empty result, source down) or :class:`~stackscaler.errors.MetricStale`
(newest sample too old) rather than returning a number it does not have.
Permanent problems (a bad query, a missing queue, no permission) raise the
matching permanent error. :func:`observe` turns either into an unknown
:class:`~stackscaler.policy.MetricObservation` for the policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from stackscaler.errors import MetricStale, StackscalerError
from stackscaler.model.spec import MetricSource as SourceSpec
from stackscaler.model.spec import MetricSpec
from stackscaler.policy import MetricObservation


@dataclass(frozen=True)
class Sample:
    value: float
    timestamp: datetime
    """When the value was measured (end of a CloudWatch period, Prometheus sample time)."""


@dataclass(frozen=True)
class MetricQuery:
    """One metric of one resource to read now."""

    resource: str
    """``namespace/name`` of the resource, for messages."""
    metric: MetricSpec
    kind: str = ""
    """The resource's kind (a tier source needs it to tell a cycle)."""

    @property
    def source(self) -> SourceSpec:
        assert self.metric.source is not None
        return self.metric.source


class MetricSource(Protocol):
    async def read(self, query: MetricQuery, now: datetime) -> Sample:
        """The metric's current value; raise an error of the error tree when unknown."""
        ...

    async def close(self) -> None: ...


def check_fresh(query: MetricQuery, sample: Sample, now: datetime) -> Sample:
    """Raise MetricStale when the sample is older than the metric's staleAfterSeconds."""
    age = (now - sample.timestamp).total_seconds()
    if age > query.metric.stale_after_seconds:
        raise MetricStale(
            f"{query.resource} metric {query.metric.name}: newest sample is {age:.0f}s old "
            f"(staleAfterSeconds {query.metric.stale_after_seconds})"
        )
    return sample


async def observe(
    source: MetricSource, query: MetricQuery, now: datetime
) -> tuple[MetricObservation, StackscalerError | None]:
    """Read a metric for the policy: a value, or unknown with the error that made it so."""
    try:
        sample = await source.read(query, now)
    except StackscalerError as exc:
        return MetricObservation.unknown(str(exc)), exc
    return MetricObservation(sample.value, sample.timestamp), None
