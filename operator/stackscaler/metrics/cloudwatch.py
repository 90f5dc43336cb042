"""CloudWatch metrics, read with batched GetMetricData calls.

Every ``read`` joins a :class:`~stackscaler.batching.Coalescer` batch keyed by
(region, role ARN). The flush turns the batch into as few GetMetricData calls
as the API allows:

* **Ids.** Read ``i`` of a batch owns the id prefix ``q<i>``: a single metric
  is the query ``q<i>``; a metric-math read is the expression ``q<i>`` plus its
  sub-queries ``q<i>_<id>`` (``ReturnData`` false), with the ids inside the
  expression rewritten outside quoted strings (``SEARCH('...')`` text is left
  alone). Ids are unique per call and match ``^[a-z][a-zA-Z0-9_]*$``.
* **Windows.** A call has one StartTime/EndTime, so reads are grouped by
  (period, EndTime); with the usual shared period that is one group. EndTime
  is ``now`` aligned *down* to the period, so the newest, still incomplete
  period is never requested; StartTime reaches back
  ``max(3 periods, staleAfterSeconds + 1 period)`` so that a too-old datapoint
  is still seen and reported as stale rather than missing.
* **Chunks.** A group is cut into calls of at most 500 MetricDataQueries; a
  read's queries (an expression with its sub-queries) always stay in one call.
  Reads that cannot share a call run alone: Metrics Insights (``SELECT``, one
  per call), ``METRICS()`` (it sees every metric of the request), and reads
  that AWS rejected before (see below).
* **Pages.** Each call follows ``NextToken``; results are mapped back by id.
* **Failures.** A failing call fails only the reads in that call, each with a
  copy of the error prefixed by its own resource and metric. When AWS rejects
  a call as invalid (a bad expression of one resource), the call is split in
  halves until the offending read is alone, so one resource's mistake does
  not make every other metric of the batch unknown; that read then runs alone
  until it succeeds again.

Sample timestamps are the **end** of the newest complete period (datapoint
timestamp + period): the value describes the period up to then, so staleness
(``now - timestamp``) is measured from the moment the newest value was
complete. With EndTime aligned down, the freshest possible sample is between
0 and one period old; ``staleAfterSeconds`` should therefore be at least the
period (plus the metric's publishing delay).

No datapoints is :class:`MetricUnavailable` (never 0); a datapoint older than
``staleAfterSeconds`` is :class:`MetricStale`; a per-query error reported by
CloudWatch (``Messages``) is :class:`MetricUnavailable` naming the message.
``PartialData`` with values is used.
"""

from __future__ import annotations

import asyncio
import copy
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from stackscaler.aws.clients import AwsCaller, RoleRef
from stackscaler.batching import QUIET, WINDOW, Coalescer
from stackscaler.errors import (
    AccessDenied,
    MetricUnavailable,
    PermanentError,
    StackscalerError,
)
from stackscaler.metrics.base import MetricQuery, Sample, check_fresh
from stackscaler.model.spec import CloudWatchSource

MAX_QUERIES_PER_CALL = 500
"""GetMetricData's limit of MetricDataQueries per request."""
MAX_PAGES = 50
"""Pages followed per call before giving up (a runaway NextToken must not loop forever)."""
MAX_ID_LENGTH = 255
HIGH_RESOLUTION_SPAN = 3 * 3600
"""Periods under 60 s (and Metrics Insights) only reach back 3 hours."""
MIN_PERIODS = 3

ID_PATTERN = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_STATUS_ERRORS = ("Forbidden", "InternalError")


# --- pure helpers: time ------------------------------------------------------


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; a naive datetime is taken to be UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def align_down(moment: datetime, period: int) -> datetime:
    """The start of the ``period``-second interval (aligned to the Unix epoch) holding ``moment``.

    CloudWatch periods (1, 5, 10, 30 s and multiples of 60 s) aligned this way
    line up with whole minutes, hours and (UTC) days.
    """
    if period < 1:
        raise ValueError("period must be >= 1 second")
    seconds = math.floor(as_utc(moment).timestamp())
    return datetime.fromtimestamp(seconds - seconds % period, UTC)


def time_window(
    now: datetime, period: int, stale_after: int, *, short_retention: bool = False
) -> tuple[datetime, datetime]:
    """(StartTime, EndTime) for one read: complete periods only, reaching back past staleness.

    EndTime is ``now`` aligned down to the period, so the current, incomplete
    period is excluded. StartTime is EndTime minus ``max(3, ceil(stale_after /
    period) + 1)`` periods: at least three, and enough that a datapoint just
    older than ``stale_after`` is still returned (and reported stale). Periods
    under 60 s and Metrics Insights queries (``short_retention``) only have
    3 hours of data, so their window is capped there.
    """
    end = align_down(now, period)
    periods = max(MIN_PERIODS, math.ceil(stale_after / period) + 1)
    if period < 60 or short_retention:
        periods = min(periods, max(1, HIGH_RESOLUTION_SPAN // period))
    return end - timedelta(seconds=periods * period), end


# --- pure helpers: expressions -----------------------------------------------


def _tokens(expression: str) -> Iterator[tuple[str, str]]:
    """(kind, text) tokens: ``str`` (a quoted string), ``word``, ``num`` or ``other``.

    Joining the texts gives the expression back unchanged.
    """
    i, n = 0, len(expression)
    while i < n:
        c = expression[i]
        if c in "'\"":
            j = i + 1
            while j < n and expression[j] != c:
                j += 2 if expression[j] == "\\" else 1
            j = min(j + 1, n)
            yield "str", expression[i:j]
            i = j
            continue
        word = _WORD.match(expression, i)
        if word:
            yield "word", word.group()
            i = word.end()
            continue
        number = _NUMBER.match(expression, i)
        if number:
            yield "num", number.group()
            i = number.end()
            continue
        yield "other", c
        i += 1


def rewrite_ids(expression: str, mapping: Mapping[str, str]) -> str:
    """``expression`` with every id in ``mapping`` renamed; quoted strings are left untouched.

    Only whole identifiers are renamed (``m1`` but not ``m10``, nor the ``e3`` of
    ``1e3``), and never inside ``'...'`` or ``"..."`` (search terms, labels).
    """
    return "".join(
        mapping.get(text, text) if kind == "word" else text for kind, text in _tokens(expression)
    )


def uses_metrics_function(expression: str) -> bool:
    """Whether the expression calls ``METRICS()``, which sees every metric of the request."""
    tokens = [t for t in _tokens(expression) if not (t[0] == "other" and t[1].isspace())]
    return any(
        kind == "word"
        and text.upper() == "METRICS"
        and i + 1 < len(tokens)
        and tokens[i + 1][1] == "("
        for i, (kind, text) in enumerate(tokens)
    )


def is_insights_query(expression: str) -> bool:
    """Whether the expression is a Metrics Insights query (``SELECT ...``)."""
    return expression.lstrip().upper().startswith("SELECT")


# --- pure helpers: requests --------------------------------------------------


@dataclass(frozen=True)
class ReadRequest:
    """The MetricDataQueries of one read; the query ``result_id`` carries its value."""

    result_id: str
    queries: tuple[Mapping[str, Any], ...]
    alone: bool = False
    """Must be the only read in its call (Metrics Insights, METRICS())."""
    short_retention: bool = False
    """Metrics Insights: only the last 3 hours can be queried."""

    @property
    def size(self) -> int:
        return len(self.queries)


def sub_id(prefix: str, original: str, index: int) -> str:
    """The id of sub-query ``original`` of the read with ``prefix``; valid and unique per call."""
    candidate = f"{prefix}_{original}"
    return candidate if len(candidate) <= MAX_ID_LENGTH else f"{prefix}_{index}"


def _metric(namespace: str, name: str, dimensions: Iterable[tuple[str, str]]) -> dict[str, Any]:
    return {
        "Namespace": namespace,
        "MetricName": name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions],
    }


def build_request(source: CloudWatchSource, prefix: str) -> ReadRequest:
    """The MetricDataQueries for one read, its ids prefixed with ``prefix`` (``q17``).

    Statistics, percentiles included (``p90``), pass as ``Stat``; ``unit``
    applies to a single metric (metric math combines metrics of any unit).
    """
    if not ID_PATTERN.match(prefix):
        raise ValueError(f"invalid id prefix {prefix!r}")
    period = source.period_seconds
    if source.expression is not None:
        mapping = {q.id: sub_id(prefix, q.id, j) for j, q in enumerate(source.queries)}
        queries: list[Mapping[str, Any]] = [
            {
                "Id": mapping[q.id],
                "MetricStat": {
                    "Metric": _metric(q.namespace, q.metric_name, q.dimensions),
                    "Period": period,
                    "Stat": q.statistic,
                },
                "ReturnData": False,
            }
            for q in source.queries
        ]
        insights = is_insights_query(source.expression)
        main: dict[str, Any] = {
            "Id": prefix,
            "Expression": rewrite_ids(source.expression, mapping),
            "ReturnData": True,
        }
        if insights:
            main["Period"] = period  # required for Metrics Insights queries
        queries.append(main)
        return ReadRequest(
            prefix,
            tuple(queries),
            alone=insights or uses_metrics_function(source.expression),
            short_retention=insights,
        )
    if source.namespace is None or source.metric_name is None:
        raise PermanentError("cloudWatch needs namespace and metricName, or an expression")
    stat: dict[str, Any] = {
        "Metric": _metric(source.namespace, source.metric_name, source.dimensions),
        "Period": period,
        "Stat": source.statistic,
    }
    if source.unit:
        stat["Unit"] = source.unit
    return ReadRequest(prefix, ({"Id": prefix, "MetricStat": stat, "ReturnData": True},))


def chunk_requests(
    requests: Sequence[ReadRequest],
    *,
    limit: int = MAX_QUERIES_PER_CALL,
    alone: Iterable[int] = (),
) -> list[list[int]]:
    """Indexes of ``requests`` grouped into calls of at most ``limit`` queries.

    A read's queries are never split across calls. Reads marked ``alone`` (and
    the indexes in ``alone``) get a call of their own, as does a read larger
    than the limit (AWS rejects that call, and only it).
    """
    solo = set(alone)
    chunks: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, request in enumerate(requests):
        if request.alone or i in solo or request.size > limit:
            chunks.append([i])
            continue
        if current and size + request.size > limit:
            chunks.append(current)
            current, size = [], 0
        current.append(i)
        size += request.size
    if current:
        chunks.append(current)
    return chunks


# --- pure helpers: results ---------------------------------------------------


@dataclass(frozen=True)
class QueryResult:
    """Everything the pages of one call said about one query id."""

    points: tuple[tuple[datetime, float], ...] = ()
    status: str = "Complete"
    messages: tuple[str, ...] = ()
    series: int = 1
    """Most results with this id in one page: >1 means the expression returned several series."""


async def get_metric_data(
    caller: AwsCaller,
    params: Mapping[str, Any],
    *,
    region: str,
    role: RoleRef | None,
    resource: str,
    gate: asyncio.Semaphore | None = None,
) -> dict[str, QueryResult]:
    """One GetMetricData request, every page of it (at most ``MAX_PAGES``), collected.

    ``gate``: held around each page's call (a bound on the calls in flight)."""
    params = dict(params)
    pages: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        if gate is None:
            page = await caller.call(
                "cloudwatch", "GetMetricData", region=region, role=role, resource=resource, **params
            )
        else:
            async with gate:
                page = await caller.call(
                    "cloudwatch",
                    "GetMetricData",
                    region=region,
                    role=role,
                    resource=resource,
                    **params,
                )
        pages.append(page)
        token = page.get("NextToken")
        if not token:
            return collect(pages)
        params["NextToken"] = token
    raise MetricUnavailable(
        f"cloudwatch GetMetricData in {region}: still paginating after {MAX_PAGES} pages"
    )


def collect(pages: Iterable[Mapping[str, Any]]) -> dict[str, QueryResult]:
    """Merge the MetricDataResults of all pages of one call, by id."""
    merged: dict[str, QueryResult] = {}
    for page in pages:
        seen: dict[str, int] = {}
        for result in page.get("MetricDataResults", ()):
            rid = str(result["Id"])
            seen[rid] = seen.get(rid, 0) + 1
            old = merged.get(rid, QueryResult())
            points = tuple(
                (as_utc(ts), float(v))
                for ts, v in zip(
                    result.get("Timestamps", ()), result.get("Values", ()), strict=False
                )
            )
            messages = tuple(
                f"{m.get('Code', 'Error')}: {m.get('Value', '')}".rstrip(": ")
                for m in result.get("Messages", ()) or ()
            )
            status = str(result.get("StatusCode", "Complete"))
            merged[rid] = QueryResult(
                points=old.points + points,
                status=old.status if old.status in _STATUS_ERRORS else status,
                messages=old.messages + tuple(m for m in messages if m not in old.messages),
                series=max(old.series, seen[rid]),
            )
    return merged


def describe(query: MetricQuery, source: CloudWatchSource, region: str | None = None) -> str:
    """``default/web metric cpu (CloudWatch AWS/EC2 CPUUtilization ... in us-east-1)``."""
    if source.expression is not None:
        what = f"expression {source.expression!r}"
    else:
        dims = ",".join(f"{k}={v}" for k, v in source.dimensions)
        what = f"{source.namespace}/{source.metric_name}" + (f" [{dims}]" if dims else "")
        what += f" {source.statistic}"
    where = f" in {region}" if region else ""
    return f"{query.resource} metric {query.metric.name} (CloudWatch {what}{where})"


def sample_from(
    result: QueryResult | None,
    *,
    period: int,
    end: datetime,
    description: str,
    per_second: bool = False,
    absent_is_zero: bool = False,
) -> Sample:
    """The newest complete period's value of one read, or the error that makes it unknown.

    The Sample's timestamp is the end of that period. Datapoints of periods
    ending after ``end`` (incomplete) and non-finite values are ignored.
    ``per_second``: the value divided by the period (a Sum as a rate).
    ``absent_is_zero``: no datapoint is 0 at ``end`` (a metric published only when
    non-zero); an error CloudWatch reports is still unknown.
    """
    if result is not None:
        if result.status == "Forbidden":
            raise AccessDenied(
                f"{description}: CloudWatch denied access to the metric "
                f"({'; '.join(result.messages) or 'Forbidden'})"
            )
        if result.messages:
            raise MetricUnavailable(
                f"{description}: CloudWatch reported {'; '.join(result.messages)}"
            )
        if result.status == "InternalError":
            raise MetricUnavailable(f"{description}: CloudWatch returned InternalError")
        if result.series > 1:
            raise MetricUnavailable(
                f"{description}: the expression returned {result.series} time series; it must "
                "return one (aggregate it, for example SUM(...) or MAX(...))"
            )
    step = timedelta(seconds=period)
    points = [
        (ts + step, v)
        for ts, v in (result.points if result else ())
        if math.isfinite(v) and ts + step <= end
    ]
    if not points and absent_is_zero:
        return Sample(0.0, end)
    if not points:
        raise MetricUnavailable(
            f"{description}: no datapoints in the complete periods up to "
            f"{end:%Y-%m-%dT%H:%M:%SZ} (check namespace, metric name, dimensions and statistic, "
            "and that the metric is being published)"
        )
    period_end, value = max(points, key=lambda p: p[0])
    return Sample(value / period if per_second else value, period_end)


def prefixed(error: StackscalerError, prefix: str) -> StackscalerError:
    """A copy of ``error`` (same type, same ``delay``) whose message starts with ``prefix``."""
    try:
        clone = copy.copy(error)
        clone.args = (f"{prefix}: {error}",)
    except Exception:  # an error type that cannot be copied: keep the original
        return error
    clone.__cause__ = error
    return clone


# --- the source --------------------------------------------------------------


@dataclass(frozen=True)
class _Read:
    query: MetricQuery
    source: CloudWatchSource
    now: datetime


@dataclass(frozen=True)
class _Planned:
    index: int
    read: _Read
    request: ReadRequest
    start: datetime
    description: str


@dataclass(frozen=True)
class _Call:
    """What the reads of one GetMetricData call share."""

    region: str
    role: RoleRef | None
    start: datetime
    end: datetime
    period: int


_Key = tuple[str, RoleRef | None]
"""(region, role): the reads one set of credentials makes together; a role assumed for
two namespaces is two sessions, never one call."""
_Outcome = Sample | StackscalerError
"""A read's result: the Coalescer raises the error in that read alone."""


class _Splits:
    """How many more times a rejected call may be split in halves (bounds the extra calls).

    ``ceil(log2(n)) + 2`` splits isolate one bad read among ``n`` (two calls per
    level) and keep the cost bounded when AWS rejects every request alike.
    """

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining

    def take(self) -> bool:
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


def _rejected(error: StackscalerError) -> bool:
    """AWS refused the request itself (ValidationError and friends): retrying it won't help."""
    return type(error) is PermanentError


class CloudWatchMetricSource:
    """Reads CloudWatch metrics; concurrent reads share GetMetricData calls."""

    def __init__(self, caller: AwsCaller, *, quiet: float = QUIET, window: float = WINDOW) -> None:
        self._caller = caller
        self._coalescer: Coalescer[_Key, _Read, Sample] = Coalescer(
            self._flush, quiet=quiet, window=window, max_batch=MAX_QUERIES_PER_CALL
        )
        self._suspects: set[CloudWatchSource] = set()
        """Sources whose request AWS rejected: they run alone until they succeed."""

    async def read(self, query: MetricQuery, now: datetime) -> Sample:
        source = query.source
        if not isinstance(source, CloudWatchSource):
            raise PermanentError(
                f"{query.resource} metric {query.metric.name}: not a CloudWatch metric"
            )
        now = as_utc(now)
        region = self._caller.clients.region(source.region)
        role = RoleRef.of(source.role_arn, query.resource.partition("/")[0])  # key: namespace/name
        sample = await self._coalescer.submit((region, role), _Read(query, source, now))
        return check_fresh(query, sample, now)

    async def close(self) -> None:
        """Nothing to release: the AwsCaller belongs to the caller."""

    async def _flush(self, key: _Key, reads: Sequence[_Read]) -> list[Sample | BaseException]:
        region, role = key
        outcomes: list[_Outcome | None] = [None] * len(reads)
        groups: dict[tuple[int, datetime], list[_Planned]] = {}
        for i, read in enumerate(reads):
            description = describe(read.query, read.source, region)
            try:
                request = build_request(read.source, f"q{i}")
            except StackscalerError as exc:
                outcomes[i] = prefixed(exc, description)
                continue
            period = read.source.period_seconds
            start, end = time_window(
                read.now,
                period,
                read.query.metric.stale_after_seconds,
                short_retention=request.short_retention,
            )
            groups.setdefault((period, end), []).append(
                _Planned(i, read, request, start, description)
            )
        calls = []
        for (period, end), planned in groups.items():
            call = _Call(region, role, min(p.start for p in planned), end, period)
            suspects = [j for j, p in enumerate(planned) if p.read.source in self._suspects]
            for chunk in chunk_requests([p.request for p in planned], alone=suspects):
                calls.append(self._fetch(call, [planned[j] for j in chunk]))
        for results in await asyncio.gather(*calls):
            for index, outcome in results:
                outcomes[index] = outcome
        return [
            o if o is not None else MetricUnavailable(f"{describe(r.query, r.source)}: no result")
            for o, r in zip(outcomes, reads, strict=True)
        ]

    async def _fetch(
        self, call: _Call, planned: list[_Planned], splits: _Splits | None = None
    ) -> list[tuple[int, _Outcome]]:
        """One call (all its pages) for ``planned``; when AWS rejects it, bisect to the culprit."""
        queries = [q for p in planned for q in p.request.queries]
        if splits is None:
            splits = _Splits(math.ceil(math.log2(max(1, len(planned)))) + 2)
        try:
            results = await self._get(call, queries)
        except StackscalerError as exc:
            if _rejected(exc) and len(planned) > 1 and splits.take():
                half = len(planned) // 2
                first, second = await asyncio.gather(
                    self._fetch(call, planned[:half], splits),
                    self._fetch(call, planned[half:], splits),
                )
                return first + second
            if _rejected(exc):
                self._suspects.add(planned[0].read.source)
            return [(p.index, prefixed(exc, p.description)) for p in planned]
        except Exception as exc:  # a malformed response: unknown, never a crash of the batch
            return [
                (
                    p.index,
                    MetricUnavailable(
                        f"{p.description}: unexpected GetMetricData response "
                        f"({type(exc).__name__}: {exc})"
                    ),
                )
                for p in planned
            ]
        if len(planned) == 1:
            self._suspects.discard(planned[0].read.source)
        out: list[tuple[int, _Outcome]] = []
        for p in planned:
            try:
                sample = sample_from(
                    results.get(p.request.result_id),
                    period=call.period,
                    end=call.end,
                    description=p.description,
                    per_second=p.read.source.per_second,
                    absent_is_zero=p.read.source.absent_is_zero,
                )
            except StackscalerError as exc:
                out.append((p.index, exc))
            else:
                out.append((p.index, sample))
        return out

    async def _get(self, call: _Call, queries: list[Mapping[str, Any]]) -> dict[str, QueryResult]:
        params: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": call.start,
            "EndTime": call.end,
            "ScanBy": "TimestampDescending",
        }
        return await get_metric_data(
            self._caller, params, region=call.region, role=call.role, resource="CloudWatch metrics"
        )
