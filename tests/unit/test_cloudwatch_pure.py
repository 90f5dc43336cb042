"""CloudWatch source: the pure helpers, and the flush against a scripted caller (no I/O).

The scripted caller covers what moto cannot produce (see
tests/integration/test_cloudwatch.py): pagination, per-query Messages,
PartialData, several series for one id, and AWS rejecting a request.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from stackscaler.aws import AwsCaller, AwsSettings, RoleRef
from stackscaler.errors import (
    AccessDenied,
    MetricStale,
    MetricUnavailable,
    PermanentError,
    Throttled,
)
from stackscaler.metrics import MetricQuery
from stackscaler.metrics.cloudwatch import (
    MAX_QUERIES_PER_CALL,
    CloudWatchMetricSource,
    QueryResult,
    ReadRequest,
    align_down,
    build_request,
    chunk_requests,
    collect,
    rewrite_ids,
    sample_from,
    time_window,
    uses_metrics_function,
)
from stackscaler.model.spec import CloudWatchQuery, CloudWatchSource, MetricSpec

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")


def single(
    asg: str = "web", *, statistic: str = "Average", unit: str | None = None, period: int = 60
) -> CloudWatchSource:
    return CloudWatchSource(
        "AWS/EC2",
        "CPUUtilization",
        (("AutoScalingGroupName", asg),),
        statistic,
        unit,
        None,
        (),
        period,
        None,
        None,
    )


def expression(expr: str, *ids: str, period: int = 60) -> CloudWatchSource:
    queries = tuple(
        CloudWatchQuery(i, "AWS/ApplicationELB", "RequestCount", (("LoadBalancer", "lb"),), "Sum")
        for i in ids
    )
    return CloudWatchSource(None, None, (), "Average", None, expr, queries, period, None, None)


def query(source: CloudWatchSource, resource: str = "default/web", stale: int = 300) -> MetricQuery:
    return MetricQuery(resource, MetricSpec("cpu", source, stale_after_seconds=stale))


# --- period alignment and the time window -------------------------------------


@pytest.mark.parametrize(
    ("moment", "period", "aligned"),
    [
        (T0 + timedelta(seconds=59, microseconds=999_999), 60, T0),
        (T0, 60, T0),
        (T0 + timedelta(minutes=7, seconds=1), 300, T0 + timedelta(minutes=5)),
        (T0 + timedelta(seconds=17.5), 5, T0 + timedelta(seconds=15)),
        (T0 + timedelta(seconds=0.4), 1, T0),
        (T0 + timedelta(hours=5), 86400, datetime(2025, 3, 1, tzinfo=UTC)),
        (T0 + timedelta(minutes=59), 3600, T0),
    ],
)
def test_align_down(moment: datetime, period: int, aligned: datetime) -> None:
    assert align_down(moment, period) == aligned


def test_align_down_handles_other_zones_and_naive_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert align_down(datetime(2025, 3, 1, 14, 0, 42, tzinfo=plus2), 60) == T0
    assert align_down(datetime(2025, 3, 1, 12, 0, 42), 60) == T0  # naive = UTC


@pytest.mark.parametrize(
    ("period", "stale", "periods"),
    [
        (60, 300, 6),  # staleAfter + one period
        (60, 60, 3),  # never fewer than 3 periods
        (300, 300, 3),
        (60, 90, 3),  # ceil(90/60) + 1 = 3
        (60, 150, 4),
        (3600, 300, 3),
    ],
)
def test_time_window(period: int, stale: int, periods: int) -> None:
    now = T0 + timedelta(seconds=period * 10 + 7)  # 7 s into a period
    start, end = time_window(now, period, stale)
    assert end == align_down(now, period) == T0 + timedelta(seconds=period * 10)
    assert end - start == timedelta(seconds=periods * period)


def test_time_window_excludes_the_current_period_even_on_a_boundary() -> None:
    _, end = time_window(T0, 60, 300)
    assert end == T0  # the period starting at T0 has just begun: not requested


def test_high_resolution_and_insights_windows_stay_within_three_hours() -> None:
    start, end = time_window(T0, 1, 86400)
    assert end - start == timedelta(hours=3)
    start, end = time_window(T0, 60, 86400, short_retention=True)
    assert end - start == timedelta(hours=3)
    start, end = time_window(T0, 60, 86400)  # regular resolution: not capped
    assert end - start == timedelta(seconds=86400 + 60)


# --- id rewriting -------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("m1 / m2 * 100", "q7_m1 / q7_m2 * 100"),
        ("(m1+m2)/m10", "(q7_m1+q7_m2)/m10"),  # m10 is not m1
        ("m1*1e3 + e3", "q7_m1*1e3 + e3"),  # 1e3 is a number, not the id e3
        ("FILL(m1, 0) + RATE(m2)", "FILL(q7_m1, 0) + RATE(q7_m2)"),
        (
            "SUM(SEARCH('{AWS/EC2,InstanceId} m1 MetricName=\"m2\"', 'Average', 60)) / m1",
            "SUM(SEARCH('{AWS/EC2,InstanceId} m1 MetricName=\"m2\"', 'Average', 60)) / q7_m1",
        ),
        ('IF(m1 > 5, m2, "m1")', 'IF(q7_m1 > 5, q7_m2, "m1")'),
        ("SEARCH('it\\'s m1', 'Sum', 60)", "SEARCH('it\\'s m1', 'Sum', 60)"),
        ("m1_total + m1", "m1_total + q7_m1"),
    ],
)
def test_rewrite_ids(expr: str, expected: str) -> None:
    assert rewrite_ids(expr, {"m1": "q7_m1", "m2": "q7_m2"}) == expected


def test_rewrite_ids_keeps_an_unterminated_string_as_is() -> None:
    assert rewrite_ids("m1 + 'm1", {"m1": "x_m1"}) == "x_m1 + 'm1"


@pytest.mark.parametrize(
    ("expr", "uses"),
    [
        ("SUM(METRICS())", True),
        ("AVG(METRICS ('errors'))", True),
        ("metrics + 1", False),  # an id called metrics
        ("SEARCH('METRICS()', 'Sum', 60)", False),
        ("m1 + m2", False),
    ],
)
def test_uses_metrics_function(expr: str, uses: bool) -> None:
    assert uses_metrics_function(expr) is uses


# --- request building ---------------------------------------------------------


def test_single_metric_request() -> None:
    request = build_request(single(statistic="p90", unit="Percent", period=300), "q3")
    assert request == ReadRequest(
        "q3",
        (
            {
                "Id": "q3",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/EC2",
                        "MetricName": "CPUUtilization",
                        "Dimensions": [{"Name": "AutoScalingGroupName", "Value": "web"}],
                    },
                    "Period": 300,
                    "Stat": "p90",
                    "Unit": "Percent",
                },
                "ReturnData": True,
            },
        ),
    )
    assert "Unit" not in build_request(single(), "q0").queries[0]["MetricStat"]


def test_expression_request_hides_and_renames_its_sub_queries() -> None:
    request = build_request(expression("errors / requests * 100", "errors", "requests"), "q12")
    subs, main = request.queries[:-1], request.queries[-1]
    assert [q["Id"] for q in subs] == ["q12_errors", "q12_requests"]
    assert all(q["ReturnData"] is False for q in subs)
    assert all(q["MetricStat"]["Period"] == 60 and q["MetricStat"]["Stat"] == "Sum" for q in subs)
    assert main == {
        "Id": "q12",
        "Expression": "q12_errors / q12_requests * 100",
        "ReturnData": True,
    }
    assert request.result_id == "q12"
    assert request.size == 3
    assert not request.alone


def test_requests_that_cannot_share_a_call_are_marked_alone() -> None:
    metrics = build_request(expression("SUM(METRICS())", "m1", "m2"), "q0")
    insights = build_request(
        expression('SELECT AVG(CPUUtilization) FROM "AWS/EC2"', period=300), "q1"
    )
    assert metrics.alone
    assert insights.alone and insights.short_retention
    assert insights.queries == (
        {
            "Id": "q1",
            "Expression": 'SELECT AVG(CPUUtilization) FROM "AWS/EC2"',
            "ReturnData": True,
            "Period": 300,
        },
    )


def test_ids_are_valid_and_unique_across_reads() -> None:
    long_id = "x" * 255
    sources = [expression("m1 + m2", "m1", "m2"), expression(long_id, long_id), single()] * 40
    ids = [q["Id"] for i, s in enumerate(sources) for q in build_request(s, f"q{i}").queries]
    assert len(ids) == len(set(ids))
    assert all(ID.match(i) and len(i) <= 255 for i in ids)
    long_request = build_request(expression(long_id, long_id), "q5")
    assert long_request.queries[-1]["Expression"] == long_request.queries[0]["Id"] == "q5_0"


def test_a_source_without_metric_or_expression_is_rejected() -> None:
    broken = CloudWatchSource(None, None, (), "Average", None, None, (), 60, None, None)
    with pytest.raises(PermanentError, match="namespace and metricName"):
        build_request(broken, "q0")


# --- chunking -----------------------------------------------------------------


def sized(n: int, *, alone: bool = False) -> ReadRequest:
    return ReadRequest("q", tuple({"Id": f"x{i}"} for i in range(n)), alone=alone)


def test_chunks_hold_at_most_500_queries() -> None:
    chunks = chunk_requests([sized(1)] * 600)
    assert [len(c) for c in chunks] == [500, 100]
    assert [i for c in chunks for i in c] == list(range(600))


def test_an_expression_and_its_sub_queries_stay_in_one_call() -> None:
    requests = [sized(1)] * 495 + [sized(11)] + [sized(1)] * 3
    chunks = chunk_requests(requests)
    assert chunks == [list(range(495)), [495, 496, 497, 498]]
    for chunk in chunks:
        assert sum(requests[i].size for i in chunk) <= MAX_QUERIES_PER_CALL


def test_reads_marked_alone_get_their_own_call() -> None:
    requests = [sized(1), sized(3, alone=True), sized(1), sized(1), sized(2)]
    assert chunk_requests(requests, alone=[3]) == [[1], [3], [0, 2, 4]]


def test_a_read_larger_than_the_limit_goes_alone() -> None:
    assert chunk_requests([sized(2), sized(9), sized(2)], limit=5) == [[1], [0, 2]]


# --- results ------------------------------------------------------------------


def result(rid: str, points: list[tuple[datetime, float]], **extra: Any) -> dict[str, Any]:
    return {
        "Id": rid,
        "Label": rid,
        "Timestamps": [t for t, _ in points],
        "Values": [v for _, v in points],
        "StatusCode": "Complete",
        **extra,
    }


def test_collect_merges_pages_by_id() -> None:
    pages = [
        {"MetricDataResults": [result("q0", [(T0, 1.0)], StatusCode="PartialData")]},
        {"MetricDataResults": [result("q0", [(T0 - timedelta(minutes=1), 2.0)]), result("q1", [])]},
    ]
    merged = collect(pages)
    assert merged["q0"].points == ((T0, 1.0), (T0 - timedelta(minutes=1), 2.0))
    assert merged["q0"].status == "Complete"
    assert merged["q0"].series == 1
    assert merged["q1"] == QueryResult()


def test_sample_is_the_newest_complete_period_stamped_at_its_end() -> None:
    end = T0
    points = (
        (end - timedelta(minutes=3), 1.0),
        (end - timedelta(minutes=1), 3.0),
        (end - timedelta(minutes=2), 2.0),
        (end, 99.0),  # the incomplete period (never requested, but ignored if returned)
    )
    sample = sample_from(QueryResult(points=points), period=60, end=end, description="d")
    assert (sample.value, sample.timestamp) == (3.0, end)


def test_non_finite_values_are_skipped() -> None:
    points = ((T0 - timedelta(minutes=1), float("nan")), (T0 - timedelta(minutes=2), 4.0))
    sample = sample_from(QueryResult(points=points), period=60, end=T0, description="d")
    assert sample.value == 4.0


@pytest.mark.parametrize(
    ("res", "error", "text"),
    [
        (None, MetricUnavailable, "d: no datapoints"),
        (QueryResult(), MetricUnavailable, "d: no datapoints"),
        (
            QueryResult(
                points=((T0 - timedelta(minutes=1), 1.0),), messages=("ArithmeticError: /0",)
            ),
            MetricUnavailable,
            "d: CloudWatch reported ArithmeticError: /0",
        ),
        (QueryResult(status="InternalError"), MetricUnavailable, "InternalError"),
        (QueryResult(status="Forbidden"), AccessDenied, "denied"),
        (
            QueryResult(points=((T0 - timedelta(minutes=1), 1.0),), series=4),
            MetricUnavailable,
            "returned 4 time series",
        ),
    ],
)
def test_results_that_are_not_a_value(
    res: QueryResult | None, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=re.escape(text)):
        sample_from(res, period=60, end=T0, description="d")


def test_partial_data_with_values_is_used() -> None:
    res = QueryResult(points=((T0 - timedelta(minutes=1), 7.0),), status="PartialData")
    assert sample_from(res, period=60, end=T0, description="d").value == 7.0


# --- the flush against a scripted caller ----------------------------------------

Script = Callable[[Mapping[str, Any]], dict[str, Any]]


class ScriptedCaller(AwsCaller):
    """An AwsCaller whose GetMetricData answers come from ``script`` (no network)."""

    def __init__(self, script: Script) -> None:
        super().__init__(AwsSettings(default_region="us-east-1"))
        self.script = script
        self.requests: list[dict[str, Any]] = []

    async def call(
        self,
        service: str,
        operation: str,
        *,
        region: str | None,
        role: RoleRef | None = None,
        resource: str,
        **params: Any,
    ) -> dict[str, Any]:
        assert (service, operation) == ("cloudwatch", "GetMetricData")
        self.requests.append(params)
        self.clients.calls[(service, operation)] += 1
        await asyncio.sleep(0)
        return self.script(params)


def answer_each(value: Callable[[str], float], end: datetime) -> Script:
    """Every returned query gets one datapoint in the newest complete minute."""

    def script(params: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "MetricDataResults": [
                result(q["Id"], [(end - timedelta(minutes=1), value(q["Id"]))])
                for q in params["MetricDataQueries"]
                if q.get("ReturnData", True)
            ]
        }

    return script


NOW = T0 + timedelta(seconds=30)


async def test_pages_are_followed_and_mapped_back_by_id() -> None:
    pages = {
        None: {
            "MetricDataResults": [result("q0", [(T0 - timedelta(minutes=1), 5.0)])],
            "NextToken": "page-2",
        },
        "page-2": {"MetricDataResults": [result("q1", [(T0 - timedelta(minutes=2), 6.0)])]},
    }
    caller = ScriptedCaller(lambda p: pages[p.get("NextToken")])
    source = CloudWatchMetricSource(caller)
    first, second = await asyncio.gather(
        source.read(query(single("a")), NOW), source.read(query(single("b")), NOW)
    )
    assert (first.value, second.value) == (5.0, 6.0)
    assert second.timestamp == T0 - timedelta(minutes=1)
    assert len(caller.requests) == 2
    assert caller.requests[1]["MetricDataQueries"] == caller.requests[0]["MetricDataQueries"]
    assert caller.requests[0]["ScanBy"] == "TimestampDescending"
    assert caller.requests[0]["EndTime"] == T0
    assert caller.requests[0]["StartTime"] == T0 - timedelta(minutes=6)


async def test_messages_fail_only_their_read() -> None:
    def script(params: Mapping[str, Any]) -> dict[str, Any]:
        good = result("q0", [(T0 - timedelta(minutes=1), 1.0)])
        bad = result("q1", [], Messages=[{"Code": "ArithmeticError", "Value": "division by 0"}])
        return {"MetricDataResults": [good, bad]}

    source = CloudWatchMetricSource(ScriptedCaller(script))
    ok, failed = await asyncio.gather(
        source.read(query(single("a"), "ns/a"), NOW),
        source.read(query(expression("m1 / m2", "m1", "m2"), "ns/b"), NOW),
        return_exceptions=True,
    )
    assert not isinstance(ok, BaseException) and ok.value == 1.0
    assert isinstance(failed, MetricUnavailable)
    assert "ns/b metric cpu" in str(failed)
    assert "expression 'm1 / m2'" in str(failed)
    assert "ArithmeticError: division by 0" in str(failed)


async def test_mixed_periods_are_separate_calls_with_aligned_windows() -> None:
    now = T0 + timedelta(minutes=7, seconds=30)
    caller = ScriptedCaller(answer_each(lambda rid: 1.0, align_down(now, 300)))
    source = CloudWatchMetricSource(caller)
    await asyncio.gather(
        source.read(query(single("a", period=60)), now),
        source.read(query(single("b", period=60)), now),
        source.read(query(single("c", period=300)), now),
        return_exceptions=True,
    )
    windows = sorted((r["EndTime"], len(r["MetricDataQueries"])) for r in caller.requests)
    assert windows == [(T0 + timedelta(minutes=5), 1), (T0 + timedelta(minutes=7), 2)]


async def test_a_rejected_call_is_bisected_and_the_culprit_runs_alone_afterwards() -> None:
    def script(params: Mapping[str, Any]) -> dict[str, Any]:
        if any("BROKEN(" in q.get("Expression", "") for q in params["MetricDataQueries"]):
            raise PermanentError("cloudwatch GetMetricData on CloudWatch metrics: ValidationError")
        return answer_each(lambda rid: float(rid.removeprefix("q")), T0)(params)

    caller = ScriptedCaller(script)
    source = CloudWatchMetricSource(caller)
    reads = [query(single(f"asg-{i}"), f"ns/r{i}") for i in range(16)]
    reads[11] = query(expression("BROKEN(m1)", "m1"), "ns/bad")
    results = await asyncio.gather(*(source.read(r, NOW) for r in reads), return_exceptions=True)
    for i, res in enumerate(results):
        if i == 11:
            assert type(res) is PermanentError
            assert str(res).startswith("ns/bad metric cpu")
        else:
            assert not isinstance(res, BaseException) and res.value == float(i)
    assert len(caller.requests) == 1 + 2 * 4  # 16 reads: four levels of halves

    caller.requests.clear()
    await asyncio.gather(*(source.read(r, NOW) for r in reads), return_exceptions=True)
    assert sorted(len(r["MetricDataQueries"]) for r in caller.requests) == [2, 15]


async def test_bisection_is_bounded_when_every_request_is_rejected() -> None:
    def script(params: Mapping[str, Any]) -> dict[str, Any]:
        raise PermanentError("cloudwatch GetMetricData: ValidationError")

    caller = ScriptedCaller(script)
    source = CloudWatchMetricSource(caller)
    results = await asyncio.gather(
        *(source.read(query(single(f"a{i}")), NOW) for i in range(64)), return_exceptions=True
    )
    assert all(type(r) is PermanentError for r in results)
    splits = 6 + 2  # ceil(log2(64)) + 2
    assert len(caller.requests) <= 1 + 2 * splits


async def test_throttling_is_not_bisected_and_keeps_its_delay() -> None:
    def script(params: Mapping[str, Any]) -> dict[str, Any]:
        raise Throttled("cloudwatch GetMetricData: throttled", delay=12.0)

    caller = ScriptedCaller(script)
    source = CloudWatchMetricSource(caller)
    results = await asyncio.gather(
        *(source.read(query(single(f"a{i}"), f"ns/a{i}"), NOW) for i in range(8)),
        return_exceptions=True,
    )
    assert len(caller.requests) == 1
    for i, res in enumerate(results):
        assert isinstance(res, Throttled) and res.delay == 12.0
        assert str(res).startswith(f"ns/a{i} metric cpu")


async def test_stale_is_judged_per_read() -> None:
    def script(params: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "MetricDataResults": [
                result(q["Id"], [(T0 - timedelta(minutes=4), 1.0)])
                for q in params["MetricDataQueries"]
            ]
        }

    source = CloudWatchMetricSource(ScriptedCaller(script))
    strict, lenient = await asyncio.gather(
        source.read(query(single("a"), stale=180), NOW),
        source.read(query(single("b"), stale=300), NOW),
        return_exceptions=True,
    )
    assert isinstance(strict, MetricStale) and "210s old" in str(strict)
    assert not isinstance(lenient, BaseException) and lenient.value == 1.0


async def test_a_malformed_response_makes_its_reads_unknown() -> None:
    def script(params: Mapping[str, Any]) -> dict[str, Any]:
        return {"MetricDataResults": [{"Id": "q0", "Timestamps": ["soon"], "Values": [1.0]}]}

    source = CloudWatchMetricSource(ScriptedCaller(script))
    with pytest.raises(
        MetricUnavailable, match=r"default/web metric cpu .*unexpected GetMetricData"
    ):
        await source.read(query(single()), NOW)
