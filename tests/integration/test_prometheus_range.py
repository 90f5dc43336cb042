"""Range queries for the forecast's history (``PrometheusMetricSource.read_range``): the
real server (Debian's prometheus, scraping the session's exporter) and hostile fakes.

A range query's answer has the same rules as an instant query's: never quoted unless it is
a Prometheus error envelope, never read past ``maxResponseBytes``, no answer at all reads
the same whatever the cause. And a range answer is never taken for more than the range
holds: at most one point per step, each within the range, NaN and infinities left out.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest

from stackscaler.errors import MetricUnavailable
from stackscaler.metrics.prometheus import (
    InvalidQuery,
    PrometheusMetricSource,
    PrometheusSettings,
    ResponseTooLarge,
)
from tests.integration.prometheus_fixtures import (
    Answer,
    Exporter,
    FakePrometheus,
    RunningPrometheus,
    metric_query,
    utcnow,
)


@pytest.fixture
async def source() -> AsyncIterator[PrometheusMetricSource]:
    src = PrometheusMetricSource(PrometheusSettings(max_response_bytes=64 * 1024))
    try:
        yield src
    finally:
        await src.close()


def _window() -> tuple[float, float]:
    end = math.floor(utcnow().timestamp() / 300) * 300
    return end - 3600, end


async def test_the_real_server_answers_a_range(
    prometheus: RunningPrometheus, source: PrometheusMetricSource
) -> None:
    start, end = _window()
    points = await source.read_range(metric_query(prometheus.url, "2 + 3 * 4"), start, end, 300)
    assert points == [(start + 300 * i, 14.0) for i in range(13)]


async def test_several_series_are_an_invalid_query(
    prometheus: RunningPrometheus, exporter: Exporter, source: PrometheusMetricSource
) -> None:
    start, end = _window()
    promql = (
        'label_replace(vector(1), "a", "x", "", "") or label_replace(vector(2), "a", "y", "", "")'
    )
    with pytest.raises(InvalidQuery, match="returned 2 series"):
        await source.read_range(metric_query(prometheus.url, promql), start, end, 300)


def _matrix(values: list[list[object]]) -> dict[str, object]:
    return {
        "status": "success",
        "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]},
    }


async def test_a_hostile_answer_is_taken_for_no_more_than_the_range(
    fake_prometheus: FakePrometheus, source: PrometheusMetricSource
) -> None:
    start, end = 3000.0, 3900.0
    fake_prometheus.answer = Answer(
        body=_matrix(
            [
                [2700, "1"],  # before the range
                [3000, "NaN"],
                [3300, "+Inf"],
                [3600, "7.5"],
                [3900, "8"],
                [3901, "9"],  # after the range
                *([[3600, "9"]] * 500),  # far more than 4 steps hold: one a step is kept
            ]
        )
    )
    points = await source.read_range(metric_query(fake_prometheus.url, "rpm"), start, end, 300)
    assert points == [(3600.0, 7.5), (3900.0, 8.0)]
    request = fake_prometheus.requests[-1]
    assert request.path == "/api/v1/query_range"
    assert dict(request.query) == {
        "query": "rpm",
        "start": "3000.000",
        "end": "3900.000",
        "step": "300",
        "timeout": "2s",
    }


@pytest.mark.parametrize(
    ("answer", "error", "said"),
    [
        (Answer(body="<html>\u202eowned\n</html>"), MetricUnavailable, "(HTTP 200, text/plain, "),
        (Answer(body=_matrix([["x", "y"]])), MetricUnavailable, "malformed sample"),
        (
            Answer(body={"status": "success", "data": {"resultType": "vector", "result": []}}),
            MetricUnavailable,
            "is not a Prometheus API response",
        ),
        (Answer(body=_matrix([[1, "2"]] * 20000)), ResponseTooLarge, "a range query of 14 days"),
    ],
    ids=["html", "malformed", "vector", "too-large"],
)
async def test_what_is_not_a_range_answer(
    fake_prometheus: FakePrometheus,
    source: PrometheusMetricSource,
    answer: Answer,
    error: type[Exception],
    said: str,
) -> None:
    fake_prometheus.answer = answer
    with pytest.raises(error) as info:
        await source.read_range(metric_query(fake_prometheus.url, "rpm"), 0, 3600, 300)
    assert said in str(info.value)
    assert "owned" not in str(info.value)


async def test_an_empty_range_is_no_history(
    fake_prometheus: FakePrometheus, source: PrometheusMetricSource
) -> None:
    fake_prometheus.answer = Answer(
        body={"status": "success", "data": {"resultType": "matrix", "result": []}}
    )
    assert await source.read_range(metric_query(fake_prometheus.url, "rpm"), 0, 3600, 300) == []
