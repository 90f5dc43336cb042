"""History reads from CloudWatch: GetMetricData over a window, batched across resources.

Every :meth:`CloudWatchHistory.read` joins a :class:`~stackscaler.batching.Coalescer`
batch keyed by (region, role), like the operator's instant reads
(:mod:`stackscaler.metrics.cloudwatch`, whose request building it reuses: the same ids,
expressions and statistics). The batch is cut into as few calls as GetMetricData's
limits allow:

* at most :data:`MAX_QUERIES_PER_CALL` (500) MetricDataQueries per call, a read's queries
  always in one call;
* at most :data:`MAX_DATAPOINTS_PER_CALL` (100,800) datapoints returned per call, counted
  from each read's window: ``ceil(window / period)`` per series returned. A call has one
  StartTime, the earliest of its reads', so reads are packed shortest window first and a
  read's points before its own start are dropped. A refresh that reads the last hour of
  1,000 resources (12 periods each) is limited by the queries: 2 calls, or 4 when each
  read also returns its Auto Scaling group's GroupInServiceInstances; a first read of 14
  days at 300 s (4,032 periods) fits 25 reads, or 12 with the group's series, per call.

At most :data:`MAX_CALLS_IN_FLIGHT` calls are in flight at once, so that history reads
never hold the CloudWatch threads the ticks' reads need. Each call follows ``NextToken``
(AWS may still page). A failing call fails its reads only,
each with a copy of the error naming its resource; a call AWS rejects as invalid is split
in halves until the offending read is alone (as the instant reads do).

The load of a read (see :mod:`stackscaler.predictive.plan`) is the metric's value times
its scale, times the group's GroupInServiceInstances at the same timestamp when it has a
group (a period with either missing is missing), averaged into the 5-minute bins its
period covers.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stackscaler.aws.clients import AwsCaller, RoleRef
from stackscaler.batching import Coalescer
from stackscaler.errors import AccessDenied, MetricUnavailable, PermanentError, StackscalerError
from stackscaler.metrics.cloudwatch import (
    MAX_QUERIES_PER_CALL,
    QueryResult,
    build_request,
    get_metric_data,
    prefixed,
)
from stackscaler.predictive.history import STEP, bin_of
from stackscaler.predictive.plan import CAPACITY_METRIC, CloudWatchRead

MAX_DATAPOINTS_PER_CALL = 100_800
"""GetMetricData returns at most this many datapoints per call (more would page)."""
MAX_CALLS_IN_FLIGHT = 2
"""History calls in flight at once, per process: a first read of 1,000 tiers is 84 calls of
up to 100,800 datapoints, and the AwsCaller's CloudWatch threads (8 per region) are the
ones the ticks' own reads need; history reads take at most this many of them."""
QUIET, WINDOW = 1.0, 10.0
"""History reads are not urgent: a batch waits for a second without a new read, or 10 s
after its first one, so that the reads of one refresh (a sub-wave of ticks, spread over
the scheduler's jitter) share calls."""

Points = list[tuple[int, float]]
"""(5-minute bin, load) pairs, oldest first."""


@dataclass(frozen=True)
class HistoryRequest:
    """One resource's read: its plan and its window (complete periods, epoch seconds)."""

    resource: str
    """``namespace/name``: the role's namespace, and messages."""
    read: CloudWatchRead
    start: float
    end: float
    description: str


@dataclass(frozen=True)
class _Planned:
    index: int
    request: HistoryRequest
    queries: tuple[Mapping[str, Any], ...]
    result_id: str
    capacity_id: str | None

    @property
    def series(self) -> int:
        return 1 if self.capacity_id is None else 2

    def points(self, start: float) -> int:
        """Datapoints this read returns in a call starting at ``start``."""
        period = self.request.read.period
        return self.series * max(1, math.ceil((self.request.end - start) / period))


def _capacity_query(query_id: str, group: str, period: int) -> dict[str, Any]:
    namespace, name = CAPACITY_METRIC
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {
                "Namespace": namespace,
                "MetricName": name,
                "Dimensions": [{"Name": "AutoScalingGroupName", "Value": group}],
            },
            "Period": period,
            "Stat": "Average",
        },
        "ReturnData": True,
    }


def plan_request(index: int, request: HistoryRequest) -> _Planned:
    """The MetricDataQueries of one read, ids prefixed ``h<index>``."""
    prefix = f"h{index}"
    built = build_request(request.read.source, prefix)
    queries = list(built.queries)
    cap_id = None
    if request.read.capacity_group is not None:
        cap_id = f"{prefix}_cap"
        queries.append(_capacity_query(cap_id, request.read.capacity_group, request.read.period))
    return _Planned(index, request, tuple(queries), built.result_id, cap_id)


def pack(planned: Sequence[_Planned]) -> list[list[_Planned]]:
    """Reads of one (period, end) grouped into calls within both limits, shortest window
    first (a call starts at its earliest read's start). A read over the limits alone
    gets a call of its own (AWS pages it)."""
    ordered = sorted(planned, key=lambda p: -p.request.start)
    calls: list[list[_Planned]] = []
    current: list[_Planned] = []
    queries = 0
    for p in ordered:
        if current:
            start = p.request.start  # the earliest so far: ordered by start, latest first
            points = sum(q.points(start) for q in current) + p.points(start)
            if queries + len(p.queries) > MAX_QUERIES_PER_CALL or points > MAX_DATAPOINTS_PER_CALL:
                calls.append(current)
                current, queries = [], 0
        current.append(p)
        queries += len(p.queries)
    if current:
        calls.append(current)
    return calls


def _epoch(ts: datetime) -> float:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


def load_points(
    result: QueryResult | None,
    capacity: QueryResult | None,
    *,
    read: CloudWatchRead,
    start: float,
    end: float,
    description: str,
) -> Points:
    """The load per 5-minute bin from one read's results (see the module docstring)."""
    for r in (result, capacity):
        if r is None:
            continue
        if r.status == "Forbidden":
            raise AccessDenied(
                f"{description}: CloudWatch denied access to the metric's history "
                f"({'; '.join(r.messages) or 'Forbidden'})"
            )
        if r.messages or r.status == "InternalError":
            said = "; ".join(r.messages) or r.status
            raise MetricUnavailable(f"{description}: CloudWatch reported {said}")
        if r.series > 1:
            raise MetricUnavailable(
                f"{description}: the expression returned {r.series} time series; it must return one"
            )
    period = read.period
    caps: dict[float, float] | None = None
    if read.capacity_group is not None:
        caps = {_epoch(ts): v for ts, v in (capacity.points if capacity else ())}
        if not caps and result is not None and result.points:
            raise MetricUnavailable(
                f"{description}: the Auto Scaling group {read.capacity_group} has no "
                "GroupInServiceInstances datapoints (AWS/AutoScaling), which the load of a "
                "per-unit metric needs: enable the group's metrics collection "
                "(EnableMetricsCollection), or set the metric's cloudWatch.region to the group's"
            )
    sums: dict[int, list[float]] = {}
    for ts, v in result.points if result else ():
        t = _epoch(ts)
        if not (start <= t and t + period <= end and math.isfinite(v)):
            continue
        load = v * read.scale
        if caps is not None:
            units = caps.get(t)
            if units is None or not math.isfinite(units):
                continue
            load *= units
        for k in range(bin_of(t), bin_of(t + period - 1) + 1):
            acc = sums.setdefault(k, [0.0, 0.0])
            acc[0] += load
            acc[1] += 1
    return [(k, s / n) for k, (s, n) in sorted(sums.items())]


_Key = tuple[str, RoleRef | None]


class CloudWatchHistory:
    """Reads resources' metric histories; concurrent reads share GetMetricData calls."""

    def __init__(self, caller: AwsCaller, *, quiet: float = QUIET, window: float = WINDOW) -> None:
        self._caller = caller
        self._coalescer: Coalescer[_Key, HistoryRequest, Points] = Coalescer(
            self._flush, quiet=quiet, window=window
        )
        self._in_flight = asyncio.Semaphore(MAX_CALLS_IN_FLIGHT)

    async def read(self, request: HistoryRequest) -> Points:
        """The load per 5-minute bin over the request's window (empty: no datapoints)."""
        source = request.read.source
        region = self._caller.clients.region(source.region)
        role = RoleRef.of(source.role_arn, request.resource.partition("/")[0])
        return await self._coalescer.submit((region, role), request)

    async def _flush(
        self, key: _Key, requests: Sequence[HistoryRequest]
    ) -> list[Points | BaseException]:
        region, role = key
        outcomes: list[Points | BaseException | None] = [None] * len(requests)
        groups: dict[tuple[int, float], list[_Planned]] = {}
        for i, request in enumerate(requests):
            try:
                planned = plan_request(i, request)
            except StackscalerError as exc:
                outcomes[i] = prefixed(exc, request.description)
                continue
            groups.setdefault((request.read.period, request.end), []).append(planned)
        calls = [
            self._fetch(region, role, chunk) for group in groups.values() for chunk in pack(group)
        ]
        for results in await asyncio.gather(*calls):
            for index, outcome in results:
                outcomes[index] = outcome
        return [
            o if o is not None else MetricUnavailable(f"{r.description}: no result")
            for o, r in zip(outcomes, requests, strict=True)
        ]

    async def _fetch(
        self, region: str, role: RoleRef | None, planned: list[_Planned], splits: int = -1
    ) -> list[tuple[int, Points | BaseException]]:
        """One call for ``planned``; when AWS rejects it, bisect to the culprit."""
        if splits < 0:
            splits = math.ceil(math.log2(max(1, len(planned)))) + 2
        start = min(p.request.start for p in planned)
        end = planned[0].request.end
        try:
            results = await self._get(region, role, planned, start, end)
        except StackscalerError as exc:
            if type(exc) is PermanentError and len(planned) > 1 and splits > 0:
                half = len(planned) // 2
                first, second = await asyncio.gather(
                    self._fetch(region, role, planned[:half], splits - 1),
                    self._fetch(region, role, planned[half:], splits - 1),
                )
                return first + second
            return [(p.index, prefixed(exc, p.request.description)) for p in planned]
        except Exception as exc:  # a malformed answer: this read fails, nothing crashes
            return [
                (
                    p.index,
                    MetricUnavailable(
                        f"{p.request.description}: unexpected GetMetricData response "
                        f"({type(exc).__name__})"
                    ),
                )
                for p in planned
            ]
        out: list[tuple[int, Points | BaseException]] = []
        for p in planned:
            try:
                points = load_points(
                    results.get(p.result_id),
                    results.get(p.capacity_id) if p.capacity_id else None,
                    read=p.request.read,
                    start=p.request.start,
                    end=p.request.end,
                    description=p.request.description,
                )
            except StackscalerError as exc:
                out.append((p.index, exc))
            else:
                out.append((p.index, points))
        return out

    async def _get(
        self,
        region: str,
        role: RoleRef | None,
        planned: list[_Planned],
        start: float,
        end: float,
    ) -> dict[str, QueryResult]:
        params: dict[str, Any] = {
            "MetricDataQueries": [q for p in planned for q in p.queries],
            "StartTime": datetime.fromtimestamp(start, UTC),
            "EndTime": datetime.fromtimestamp(end, UTC),
            "ScanBy": "TimestampAscending",
        }
        return await get_metric_data(
            self._caller,
            params,
            region=region,
            role=role,
            resource="CloudWatch metric history",
            gate=self._in_flight,
        )


def window(end_time: float, period: int, since: float | None, history_seconds: int) -> float:
    """The start of a read ending at ``end_time``: ``since`` (the end of the last read,
    less one period to re-read the last one, which CloudWatch may have completed since),
    or ``history_seconds`` back for a first read; aligned down to the period."""
    start = end_time - history_seconds if since is None else since - max(period, STEP)
    start = max(start, end_time - history_seconds)
    return math.floor(start / period) * period


def end_of_complete(now: float, period: int, delivery: float) -> float:
    """The end of the newest period CloudWatch should have complete at ``now``."""
    return math.floor((now - delivery) / period) * period
