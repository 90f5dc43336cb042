"""The operator's forecasts (predictive/): the history in memory, what is read for which
metric, how reads share GetMetricData calls, and the reconciler's tick with
spec.predictive (fake history reads; the reads against moto are in
tests/integration/test_forecast_history.py)."""

from __future__ import annotations

import asyncio
import copy
import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stackscaler.errors import AccessDenied, MetricUnavailable, PermanentError
from stackscaler.metrics.cloudwatch import QueryResult
from stackscaler.model.spec import CloudWatchSource, Resource, parse_resource
from stackscaler.observability.metrics import OperatorMetrics
from stackscaler.predictive import Forecasts
from stackscaler.predictive.cloudwatch import (
    MAX_DATAPOINTS_PER_CALL,
    CloudWatchHistory,
    HistoryRequest,
    Points,
    load_points,
    pack,
    plan_request,
    window,
)
from stackscaler.predictive.history import STEP, Bins, CapacityRecorder, bin_of, load_series
from stackscaler.predictive.plan import CloudWatchRead, PrometheusRead, plan_for
from stackscaler.reconcile import Reconciler
from stackscaler.status.render import render_tier, tier_dict
from stackscaler.status.view import tier_view
from tests.conftest import example, mutate
from tests.unit.forecast_helpers import web_day
from tests.unit.test_cloudwatch_pure import ScriptedCaller, result
from tests.unit.test_reconcile import FakeActuator, FakeActuators, FakeSources, Recorder

DAY = 86400
T0 = datetime(2026, 11, 26, 12, 0, 20, tzinfo=UTC)
"""A Thursday, 20 s past noon: a tick of a 30 s poll."""

# --- the history in memory ------------------------------------------------------------


def test_bins_keep_at_most_their_limit_and_line_up_with_the_clock() -> None:
    b = Bins(limit=12)
    b.put([(100, 1.0), (103, 4.0)])
    assert (b.first, b.stop, b.known()) == (100, 104, 2)
    assert b.get(100) == 1.0 and math.isnan(b.get(101)) and b.get(103) == 4.0
    b.put([(120, 2.0)])  # 21 bins from 100: the oldest go
    assert (b.first, b.stop, len(b)) == (109, 121, 12)
    assert math.isnan(b.get(103)) and b.get(120) == 2.0
    b.put([(105, 9.0), (110, 3.0)])  # older than the window: dropped; inside: kept
    assert (b.first, len(b), b.get(110)) == (109, 12, 3.0)
    b.extend_to(125)
    assert (b.first, b.stop, b.known()) == (113, 125, 1)


def test_bins_ignore_what_is_not_a_number() -> None:
    b = Bins(limit=5)
    b.put([(1, math.nan), (2, math.inf)])
    assert b.first is None
    b.put([(3, 1.5)])
    b.put([(1, 0.5)])  # an older point: the range grows backwards
    assert (b.first, b.stop, b.get(1), b.get(3), b.known()) == (1, 4, 0.5, 1.5, 2)


def test_load_series_multiplies_by_the_units_and_leaves_gaps_missing() -> None:
    metric, units = Bins(10), CapacityRecorder(10)
    metric.put([(0, 40.0), (1, 50.0), (2, 60.0)])
    units.record(0.0, 2)
    units.record(100.0, 4)  # the bin's mean: 3
    units.record(2 * STEP + 1, 5)
    s = load_series(metric, units.bins, 3)
    assert s is not None
    assert (s.start, s.step, s.values) == (0.0, 300.0, (120.0, None, 300.0))
    assert load_series(Bins(3), None, 5) is None


# --- what is read -----------------------------------------------------------------------


def _resource(kind: str = "WebTier", **changes: Any) -> Resource:
    doc = example(kind)
    for path, value in changes.items():
        doc = mutate(doc, path.replace("__", "."), value)
    return parse_resource(doc)


def test_a_per_unit_cloudwatch_metric_of_a_group_reads_its_units_in_the_same_call() -> None:
    r = _resource(spec__predictive={"mode": "ForecastOnly", "metric": "cpu"})
    plan = plan_for(r)
    assert isinstance(plan.read, CloudWatchRead)
    assert (plan.read.capacity_group, plan.read.period, plan.read.scale) == ("shop-web", 300, 1.0)
    assert not plan.observed_capacity
    assert plan.describe() == "cpu x GroupInServiceInstances"


def test_a_per_unit_metric_of_another_target_uses_the_units_the_operator_saw() -> None:
    r = _resource(
        "ReadReplicaPool", spec__predictive={"mode": "ForecastOnly", "metric": "replica-cpu"}
    )
    plan = plan_for(r)
    assert isinstance(plan.read, CloudWatchRead) and plan.read.capacity_group is None
    assert plan.observed_capacity


def test_a_total_from_prometheus_is_read_as_it_is() -> None:
    r = _resource(spec__predictive={"mode": "ForecastOnly", "metric": "requests-per-minute"})
    plan = plan_for(r)
    assert isinstance(plan.read, PrometheusRead) and not plan.observed_capacity


@pytest.mark.parametrize(
    ("statistic", "period", "read_at", "scale"),
    [
        ("Average", 60, 300, 1.0),
        ("Sum", 60, 300, 0.2),
        ("p90", 10, 300, 1.0),
        ("Sum", 900, 900, 1.0),
    ],
)
def test_the_period_read_and_the_scale_back(
    statistic: str, period: int, read_at: int, scale: float
) -> None:
    r = _resource(
        spec__metrics=[
            {
                "name": "rpm",
                "cloudWatch": {
                    "namespace": "AWS/ApplicationELB",
                    "metricName": "RequestCount",
                    "statistic": statistic,
                    "periodSeconds": period,
                },
                "staleAfterSeconds": max(300, period),
                "target": {"type": "AverageValue", "value": 1000},
            }
        ],
        spec__predictive={"mode": "ForecastOnly", "metric": "rpm"},
    )
    read = plan_for(r).read
    assert isinstance(read, CloudWatchRead)
    assert (read.period, read.scale) == (read_at, scale)


def test_a_queue_backlog_is_read_from_cloudwatchs_sqs_metrics() -> None:
    r = _resource(
        "WorkerPool",
        spec__queue__includeInFlight=False,
        spec__predictive={"mode": "ForecastOnly", "metric": "backlog"},
    )
    read = plan_for(r).read
    assert isinstance(read, CloudWatchRead)
    s = read.source
    assert (s.namespace, s.metric_name, s.dimensions, s.statistic, s.period_seconds) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        (("QueueName", "shop-jobs"),),
        "Average",
        300,
    )
    r = _resource(
        "WorkerPool",
        spec__queue__includeInFlight=True,
        spec__predictive={"mode": "ForecastOnly", "metric": "backlog"},
    )
    read = plan_for(r).read
    assert isinstance(read, CloudWatchRead)
    assert read.source.expression == "m0 + m1"
    assert [q.metric_name for q in read.source.queries] == [
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible",
    ]


# --- how reads share calls ----------------------------------------------------------------

END = 1_800_000_000.0 // 300 * 300


def _requests(n: int, seconds: float, *, group: bool) -> list[HistoryRequest]:
    source = CloudWatchSource(
        "AWS/EC2", "CPUUtilization", (), "Average", None, None, (), 300, None, None
    )
    read = CloudWatchRead(source, 1.0, "web" if group else None)
    return [HistoryRequest(f"ns/t{i}", read, END - seconds, END, f"t{i}") for i in range(n)]


@pytest.mark.parametrize(
    ("seconds", "group", "calls"),
    [
        (3600 + 300, False, 2),  # the last hour (+ the last period again): 500 queries a call
        (3600 + 300, True, 4),  # with the group's units: 250 reads of 2 queries
        (14 * DAY, False, 40),  # a first read: 25 reads of 4,032 periods a call
        (14 * DAY, True, 84),  # 12 reads of 2 x 4,032
    ],
)
def test_a_refresh_of_1000_resources_takes_a_handful_of_calls(
    seconds: float, group: bool, calls: int
) -> None:
    planned = [plan_request(i, r) for i, r in enumerate(_requests(1000, seconds, group=group))]
    chunks = pack(planned)
    assert len(chunks) == calls
    assert sorted(p.index for c in chunks for p in c) == list(range(1000))
    for chunk in chunks:
        start = min(p.request.start for p in chunk)
        assert sum(len(p.queries) for p in chunk) <= 500
        assert sum(p.points(start) for p in chunk) <= MAX_DATAPOINTS_PER_CALL


def test_first_reads_do_not_make_the_short_ones_long() -> None:
    """A call starts at its earliest read's start: new resources' 14-day reads are packed
    apart from the hour-long ones."""
    reqs = _requests(990, 3900, group=False) + _requests(10, 14 * DAY, group=False)
    chunks = pack([plan_request(i, r) for i, r in enumerate(reqs)])
    assert len(chunks) == 2 + 1
    assert {len(c) for c in chunks} == {500, 490, 10}


def test_windows_first_full_then_incremental() -> None:
    assert window(END, 300, None, 14 * DAY) == END - 14 * DAY
    assert window(END, 300, END - 3600, 14 * DAY) == END - 3600 - 300
    assert window(END, 3600, END - 3600, 14 * DAY) == END - 7200  # aligned to the period
    assert window(END, 300, END - 30 * DAY, 14 * DAY) == END - 14 * DAY  # never longer


def _result(points: list[tuple[float, float]], **kw: Any) -> QueryResult:
    return QueryResult(tuple((datetime.fromtimestamp(t, UTC), v) for t, v in points), **kw)


def test_the_load_is_the_metric_times_the_units_per_timestamp() -> None:
    source = _requests(1, 0, group=True)[0].read
    cpu = _result([(0, 50.0), (300, 40.0), (600, 30.0), (900, 99.0)])
    units = _result([(0, 4.0), (600, 10.0), (900, 2.0)])
    out = load_points(cpu, units, read=source, start=0, end=900, description="d")
    assert out == [(0, 200.0), (2, 300.0)]  # 300: no units known; 900: not complete by end


def test_a_group_without_metrics_collection_says_so() -> None:
    source = _requests(1, 0, group=True)[0].read
    with pytest.raises(MetricUnavailable, match="GroupInServiceInstances"):
        load_points(
            _result([(0, 5.0)]), _result([]), read=source, start=0, end=600, description="d"
        )


def test_a_longer_period_fills_every_bin_it_covers_and_a_sum_is_scaled() -> None:
    hourly = replace(_requests(1, 0, group=False)[0].read.source, period_seconds=3600)
    read = CloudWatchRead(hourly, 0.5)
    out = load_points(_result([(0, 10.0)]), None, read=read, start=0, end=3600, description="d")
    assert out == [(k, 5.0) for k in range(12)]


def test_cloudwatch_refusals_are_errors_of_the_tree() -> None:
    read = _requests(1, 0, group=False)[0].read
    with pytest.raises(AccessDenied):
        load_points(
            _result([], status="Forbidden"), None, read=read, start=0, end=600, description="d"
        )
    with pytest.raises(MetricUnavailable, match="2 time series"):
        load_points(_result([], series=2), None, read=read, start=0, end=600, description="d")


# --- the reconciler's tick with spec.predictive -------------------------------------------


def web_load(t: float) -> float:
    """Total CPU (average % x instances) of a tier with a daily shape: 4-16 instances at 50%."""
    return 800.0 * web_day(t)


@dataclass
class FakeHistory:
    """CloudWatch history reads, answered from a function of time."""

    load: Any = web_load
    reads: list[tuple[float, float]] = field(default_factory=list)
    error: Exception | None = None

    async def read(self, request: HistoryRequest) -> Points:
        self.reads.append((request.start, request.end))
        if self.error is not None:
            raise self.error
        ks = range(bin_of(request.start), bin_of(request.end - 1) + 1)
        return [(k, self.load(k * STEP)) for k in ks]


def predictive_body(mode: str = "ForecastOnly", **predictive: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stackscaler.dev/v1alpha1",
        "kind": "WebTier",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "generation": 1},
        "spec": {
            "target": {"kind": "AutoScalingGroup", "name": "web"},
            "minCapacity": 1,
            "maxCapacity": 30,
            "metrics": [
                {
                    "name": "cpu",
                    "cloudWatch": {
                        "namespace": "AWS/EC2",
                        "metricName": "CPUUtilization",
                        "dimensions": [{"name": "AutoScalingGroupName", "value": "web"}],
                    },
                    "target": {"value": 50},
                }
            ],
            "predictive": {"mode": mode, "metric": "cpu", "leadSeconds": 600, **predictive},
        },
    }


class Harness:
    def __init__(self, doc: dict[str, Any], history: FakeHistory, *, current: int = 3) -> None:
        self.body = doc
        self.history = history
        self.actuator = FakeActuator(current=current)
        self.rec = Recorder()
        self.now = T0
        self.metrics = OperatorMetrics()
        self.forecasts = Forecasts(
            history,  # type: ignore[arg-type]
            None,
            on_refresh=self.metrics.record_forecast_refresh,
        )
        self.reconciler = Reconciler(
            FakeSources({"cpu": 50.0}),  # type: ignore[arg-type]
            FakeActuators(self.actuator),  # type: ignore[arg-type]
            self.rec,
            self.rec,
            clock=lambda: self.now,
            forecasts=self.forecasts,
            metrics=self.metrics,
        )

    async def tick(self, after: float = 0.0) -> Any:
        self.now += timedelta(seconds=after)
        result = await self.reconciler.tick(copy.deepcopy(self.body))
        if self.rec.statuses:
            self.body["status"] = self.rec.statuses[-1]
        return result

    async def settle(self) -> None:
        """Let the refresh a tick started finish (the tick itself never waits for it)."""
        await self.forecasts.idle()

    @property
    def forecast(self) -> dict[str, Any]:
        return dict(self.body["status"]["forecast"])

    def floor_gauge(self) -> float | None:
        return self.metrics.registry.get_sample_value(
            "stackscaler_forecast_floor", {"kind": "WebTier", "namespace": "shop", "name": "web"}
        )


async def test_forecast_only_reports_what_it_would_do_and_changes_nothing() -> None:
    h = Harness(predictive_body(), FakeHistory())
    await h.tick()
    assert h.forecast["state"] == "Pending"
    assert h.forecast["message"] == "reading the last 14 days of cpu x GroupInServiceInstances"
    await h.settle()
    assert h.history.reads == [(h.history.reads[0][0], h.history.reads[0][1])]
    start, end = h.history.reads[0]
    assert end - start == 14 * DAY and end % 300 == 0 and end <= T0.timestamp() - 60
    await h.tick(30)
    f = h.forecast
    assert (f["mode"], f["state"], f["reason"], f["leadSeconds"]) == (
        "ForecastOnly",
        "Ready",
        "Ready",
        600,
    )
    assert f["message"].startswith("back-test error ")
    assert f["backtestError"] < 0.05
    assert f["historyHours"] == 14 * 24
    # noon UTC on a web day: about 800 x 0.9 of total CPU at 50% per instance: ~15 units
    assert f["load"] == pytest.approx(web_load(T0.timestamp() + 630), rel=0.05)
    assert f["floor"] == math.ceil(f["load"] / 50)
    assert f["wouldRaiseTo"] == f["floor"] > 3
    assert h.actuator.applied == []  # the reactive decision: 50% on 3 = hold 3
    assert h.body["status"]["desiredCapacity"] == 3
    assert h.floor_gauge() == f["floor"]
    assert [r for _, r, _ in h.rec.events] == ["ForecastReady"]
    await h.tick(30)  # the same state: no second Event
    assert [r for _, r, _ in h.rec.events] == ["ForecastReady"]


async def test_forecast_and_scale_raises_the_decision_to_the_floor() -> None:
    h = Harness(predictive_body("ForecastAndScale"), FakeHistory())
    await h.tick()
    assert h.actuator.applied == []  # no forecast yet: the reactive decision alone
    await h.settle()
    await h.tick(30)
    f = h.forecast
    assert "wouldRaiseTo" not in f
    assert h.actuator.applied == [f["floor"]]
    reasons = h.body["status"]["lastDecision"]["reasons"]
    assert any(
        r.startswith(f"forecast floor {f['floor']}: cpu forecast over the next 600 s")
        for r in reasons
    )


async def test_refreshes_on_the_hour_and_reads_only_what_is_new() -> None:
    h = Harness(predictive_body(), FakeHistory())
    await h.tick()
    await h.settle()
    for _ in range(2 * 60 * 2):  # two hours of 30 s ticks
        await h.tick(30)
        await h.settle()
    starts = [s for s, _ in h.history.reads]
    ends = [e for _, e in h.history.reads]
    assert len(h.history.reads) == 3  # the first tick, 13:00 and 14:00
    assert [datetime.fromtimestamp(e, UTC).strftime("%H:%M") for e in ends[1:]] == [
        "12:55",
        "13:55",
    ]
    assert [ends[i] - starts[i + 1] for i in range(2)] == [300, 300]  # the last period again
    assert (
        h.metrics.registry.get_sample_value(
            "stackscaler_forecast_refreshes_total", {"outcome": "Ready"}
        )
        == 3
    )


async def test_a_failed_read_is_reported_and_never_stops_the_reactive_decision() -> None:
    history = FakeHistory(error=MetricUnavailable("ns/web metric cpu history: throttled"))
    h = Harness(predictive_body("ForecastAndScale"), history, current=3)
    await h.tick()
    await h.settle()
    await h.tick(30)
    f = h.forecast
    assert (f["state"], f["reason"]) == ("Refused", "HistoryUnavailable")
    assert f["message"] == "ns/web metric cpu history: throttled; retrying at the next refresh"
    assert h.rec.events[-1][:2] == ("Warning", "ForecastHistoryUnavailable")
    assert h.body["status"]["conditions"][0]["reason"] == "Reconciled"  # Ready: the tick went on
    assert h.floor_gauge() is None
    # recovered at the next refresh (13:00), not before
    history.error = None
    await h.tick(20 * 60)
    await h.settle()
    assert len(history.reads) == 1
    await h.tick(40 * 60)
    await h.settle()
    assert len(history.reads) == 2
    await h.tick(30)
    assert (h.forecast["state"], h.forecast["reason"]) == ("Ready", "Ready")
    assert history.reads[-1][1] - history.reads[-1][0] == 14 * DAY  # never read before: full


async def test_too_little_history_refuses_and_says_why() -> None:
    def young(t: float) -> float:
        return web_load(t) if t > T0.timestamp() - 30 * 3600 else math.nan

    h = Harness(predictive_body("ForecastAndScale"), FakeHistory(load=young))
    await h.tick()
    await h.settle()
    await h.tick(30)
    f = h.forecast
    assert (f["state"], f["reason"]) == ("Refused", "TooLittleHistory")
    assert f["message"].startswith("too little history: ")
    assert h.rec.events[-1][:2] == ("Normal", "ForecastRefused")
    assert h.actuator.applied == []


async def test_removing_predictive_removes_the_block_and_the_history() -> None:
    h = Harness(predictive_body(), FakeHistory())
    await h.tick()
    await h.settle()
    await h.tick(30)
    del h.body["spec"]["predictive"]
    h.body["metadata"]["generation"] = 2
    await h.tick(30)
    assert "forecast" not in h.body["status"]
    assert len(h.forecasts) == 0


async def test_a_restart_keeps_the_last_state_until_the_first_refresh() -> None:
    h = Harness(predictive_body(), FakeHistory())
    await h.tick()
    await h.settle()
    await h.tick(30)
    h.forecasts = Forecasts(h.history, None)  # type: ignore[arg-type]
    h.reconciler = Reconciler(
        FakeSources({"cpu": 50.0}),  # type: ignore[arg-type]
        FakeActuators(h.actuator),  # type: ignore[arg-type]
        h.rec,
        h.rec,
        clock=lambda: h.now,
        forecasts=h.forecasts,
    )
    await h.tick(30)
    assert (h.forecast["state"], "floor" in h.forecast) == ("Ready", False)
    await h.settle()
    await h.tick(330)  # the figures are volatile: written with the next refresh of the status
    assert (h.forecast["state"], "floor" in h.forecast) == ("Ready", True)
    assert h.forecast["refreshTime"] == "2026-11-26T12:01:20Z"  # this process's first
    assert [r for _, r, _ in h.rec.events] == ["ForecastReady"]  # not again after the restart


# --- what moto cannot answer: metric math, pages, CloudWatch's messages, a rejected call -----


def _backlog_request(name: str, start: float, end: float) -> HistoryRequest:
    r = _resource(
        "WorkerPool",
        metadata__name=name,
        spec__queue__name=f"jobs-{name}",
        spec__queue__includeInFlight=True,
        spec__predictive={"mode": "ForecastOnly", "metric": "backlog"},
    )
    read = plan_for(r).read
    assert isinstance(read, CloudWatchRead)
    return HistoryRequest(r.key, read, start, end, f"{r.key} backlog history")


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


async def test_a_backlog_expression_is_sent_as_metric_math_and_pages_are_followed() -> None:
    start, end = END - 900, END
    pages = {
        None: {
            "MetricDataResults": [result("h0", [(_at(start), 7.0)])],
            "NextToken": "more",
        },
        "more": {"MetricDataResults": [result("h1", [(_at(start + 300), 9.0)])]},
    }
    caller = ScriptedCaller(lambda p: pages[p.get("NextToken")])
    history = CloudWatchHistory(caller, quiet=0.01, window=0.05)
    a, b = await asyncio.gather(
        history.read(_backlog_request("a", start, end)),
        history.read(_backlog_request("b", start, end)),
    )
    assert (a, b) == ([(bin_of(start), 7.0)], [(bin_of(start) + 1, 9.0)])
    first = caller.requests[0]["MetricDataQueries"]
    assert [(q["Id"], q.get("ReturnData")) for q in first] == [
        ("h0_m0", False),
        ("h0_m1", False),
        ("h0", True),
        ("h1_m0", False),
        ("h1_m1", False),
        ("h1", True),
    ]
    assert first[2]["Expression"] == "h0_m0 + h0_m1"
    assert first[0]["MetricStat"]["Metric"] == {
        "Namespace": "AWS/SQS",
        "MetricName": "ApproximateNumberOfMessagesVisible",
        "Dimensions": [{"Name": "QueueName", "Value": "jobs-a"}],
    }
    assert first[0]["MetricStat"]["Period"] == 300
    assert caller.clients.calls[("cloudwatch", "GetMetricData")] == 2  # one call, two pages


async def test_cloudwatchs_messages_fail_the_read_they_are_about() -> None:
    start, end = END - 900, END

    def script(params: Any) -> dict[str, Any]:
        return {
            "MetricDataResults": [
                result("h0", [(_at(start), 1.0)]),
                result("h1", [], Messages=[{"Code": "MaxQueryTimeRangeExceed", "Value": "no"}]),
            ]
        }

    history = CloudWatchHistory(ScriptedCaller(script), quiet=0.01, window=0.05)
    a, b = await asyncio.gather(
        history.read(_backlog_request("a", start, end)),
        history.read(_backlog_request("b", start, end)),
        return_exceptions=True,
    )
    assert a == [(bin_of(start), 1.0)]
    assert isinstance(b, MetricUnavailable)
    assert "shop/b backlog history: CloudWatch reported MaxQueryTimeRangeExceed: no" in str(b)


async def test_a_rejected_call_is_split_until_the_culprit_is_alone() -> None:
    start, end = END - 900, END

    def script(params: Any) -> dict[str, Any]:
        queries = params["MetricDataQueries"]
        if any("jobs-bad" in str(q) for q in queries):
            raise PermanentError("ValidationError: bad expression")
        return {"MetricDataResults": [result(q["Id"], []) for q in queries]}

    caller = ScriptedCaller(script)
    history = CloudWatchHistory(caller, quiet=0.01, window=0.05)
    outcomes = await asyncio.gather(
        *(history.read(_backlog_request(n, start, end)) for n in ("a", "b", "bad", "c")),
        return_exceptions=True,
    )
    assert outcomes[0] == outcomes[1] == outcomes[3] == []
    assert isinstance(outcomes[2], PermanentError)
    assert str(outcomes[2]).startswith("shop/bad backlog history: ValidationError")


async def test_stackscaler_status_shows_the_forecast_line() -> None:
    h = Harness(predictive_body(), FakeHistory())
    await h.tick()
    await h.settle()
    await h.tick(30)
    now = h.now
    view = tier_view(h.body, now)
    lines = render_tier(view, now.timestamp())
    f = h.forecast
    line = next(ln for ln in lines if ln.startswith("  forecast"))
    assert line == (
        f"  forecast   ForecastOnly cpu Ready: floor {f['floor']}, would raise to "
        f"{f['wouldRaiseTo']} (lead 10m00s); {f['message']}; next refresh 2026-11-26T13:00:00Z"
    )
    assert tier_dict(view, now.timestamp())["forecast"]["wouldRaiseTo"] == f["wouldRaiseTo"]


class SlowCaller(ScriptedCaller):
    """Answers after a few loop turns, counting the calls in flight at once."""

    def __init__(self) -> None:
        super().__init__(lambda p: {"MetricDataResults": []})
        self.in_flight = self.most = 0

    async def call(self, service: str, operation: str, **kw: Any) -> dict[str, Any]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            for _ in range(5):
                await asyncio.sleep(0)
            return await super().call(service, operation, **kw)
        finally:
            self.in_flight -= 1


async def test_history_reads_take_at_most_two_of_the_callers_threads() -> None:
    caller = SlowCaller()
    history = CloudWatchHistory(caller, quiet=0.01, window=0.05)
    reqs = _requests(100, 14 * DAY, group=True)  # first reads: 9 calls
    await asyncio.gather(*(history.read(r) for r in reqs))
    assert caller.clients.calls[("cloudwatch", "GetMetricData")] == 9
    assert caller.most == 2
