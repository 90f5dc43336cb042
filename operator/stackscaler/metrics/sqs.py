"""SQS queue backlog, read with GetQueueAttributes.

backlog = ApproximateNumberOfMessages
          (+ ApproximateNumberOfMessagesNotVisible with ``includeInFlight``)
          (+ ApproximateNumberOfMessagesDelayed with ``includeDelayed``)

A queue is named by URL (its region is taken from the host,
``sqs.<region>.amazonaws.com`` and the legacy ``<region>.queue.amazonaws.com``,
else the operator's default region) or by name + region (resolved once with
GetQueueUrl and cached). SQS has no batch API for attributes, so reads are
not coalesced. The sample is taken now: the attributes are SQS's current
approximation, not an aggregate of a past period.

A missing queue raises :class:`~stackscaler.errors.TargetNotFound` naming the
queue and region (translated by :class:`~stackscaler.aws.AwsCaller`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from stackscaler.aws.clients import AwsCaller, RoleRef
from stackscaler.errors import MetricUnavailable, PermanentError, TargetNotFound
from stackscaler.metrics.base import MetricQuery, Sample
from stackscaler.model.spec import SqsSource

VISIBLE = "ApproximateNumberOfMessages"
IN_FLIGHT = "ApproximateNumberOfMessagesNotVisible"
DELAYED = "ApproximateNumberOfMessagesDelayed"

_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d+"
_HOSTS = (
    # sqs.us-east-1.amazonaws.com, sqs-fips.us-gov-west-1.amazonaws.com,
    # sqs.cn-north-1.amazonaws.com.cn, sqs.eu-west-1.api.aws,
    # vpce-1a2b.sqs.eu-west-1.vpce.amazonaws.com
    re.compile(rf"(?:^|\.)sqs(?:-fips)?\.({_REGION})\.(?:vpce\.)?(?:amazonaws\.com|api\.aws)"),
    # legacy: eu-west-1.queue.amazonaws.com
    re.compile(rf"^({_REGION})\.queue\.amazonaws\.com"),
)


def region_from_queue_url(url: str) -> str | None:
    """The AWS region a queue URL names, or None (a stand-in endpoint, an unknown form)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "queue.amazonaws.com":  # the oldest form: us-east-1
        return "us-east-1"
    for pattern in _HOSTS:
        match = pattern.search(host)
        if match:
            return match.group(1)
    return None


def attribute_names(source: SqsSource) -> list[str]:
    """The attributes whose sum is the backlog of ``source``."""
    names = [VISIBLE]
    if source.include_in_flight:
        names.append(IN_FLIGHT)
    if source.include_delayed:
        names.append(DELAYED)
    return names


@dataclass(frozen=True)
class _Queue:
    url: str
    region: str | None
    label: str
    """``SQS queue jobs`` / ``SQS queue https://...``: names the queue in AWS error messages."""


class SqsMetricSource:
    """Reads a queue's backlog; one GetQueueAttributes call per read, queue URLs cached."""

    def __init__(self, caller: AwsCaller) -> None:
        self._caller = caller
        self._urls: dict[tuple[str, RoleRef | None, str], str] = {}
        """(region, role, queue name) -> queue URL."""

    async def read(self, query: MetricQuery, now: datetime) -> Sample:
        source = query.source
        if not isinstance(source, SqsSource):
            raise PermanentError(f"{query.resource} metric {query.metric.name}: not an SQS queue")
        role = RoleRef.of(source.role_arn, query.resource.partition("/")[0])  # key: namespace/name
        queue = await self._queue(source, role)
        names = attribute_names(source)
        try:
            out = await self._caller.call(
                "sqs",
                "GetQueueAttributes",
                region=queue.region,
                role=role,
                resource=queue.label,
                QueueUrl=queue.url,
                AttributeNames=names,
            )
        except TargetNotFound:
            self._forget(source, queue, role)
            raise
        attributes = out.get("Attributes") or {}
        missing = [n for n in names if n not in attributes]
        if missing:
            raise MetricUnavailable(
                f"{query.resource} metric {query.metric.name}: {queue.label} returned no "
                f"{', '.join(missing)}"
            )
        try:
            backlog = sum(int(attributes[n]) for n in names)
        except ValueError as exc:
            raise MetricUnavailable(
                f"{query.resource} metric {query.metric.name}: {queue.label} returned a "
                f"non-numeric count ({exc})"
            ) from exc
        return Sample(float(backlog), now)

    async def close(self) -> None:
        """Nothing to release: the AwsCaller belongs to the caller."""

    async def _queue(self, source: SqsSource, role: RoleRef | None) -> _Queue:
        if source.url:
            return _Queue(source.url, region_from_queue_url(source.url), f"SQS queue {source.url}")
        if not source.name:
            raise PermanentError("an SQS queue needs url, or name (with region)")
        region = self._caller.clients.region(source.region)
        label = f"SQS queue {source.name}"
        key = (region, role, source.name)
        url = self._urls.get(key)
        if url is None:
            out = await self._caller.call(
                "sqs",
                "GetQueueUrl",
                region=region,
                role=role,
                resource=label,
                QueueName=source.name,
            )
            url = self._urls[key] = str(out["QueueUrl"])
        return _Queue(url, region, label)

    def _forget(self, source: SqsSource, queue: _Queue, role: RoleRef | None) -> None:
        """Drop a cached URL whose queue is gone (it may be re-created elsewhere)."""
        if source.name and queue.region:
            self._urls.pop((queue.region, role, source.name), None)
