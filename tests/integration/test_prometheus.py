"""The Prometheus metric source against the real Prometheus server and scripted fakes.

The real server (Debian's prometheus 2.42) scrapes an in-process exporter every
second; tests set and remove the exporter's gauges and poll the source (bounded)
until Prometheus reflects them. Answers a healthy server never gives (HTTP 500,
hangs, auth checks, TLS, old timestamps) come from a small aiohttp fake on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web

from stackscaler.errors import (
    AccessDenied,
    MetricStale,
    MetricUnavailable,
    PermanentError,
)
from stackscaler.metrics import Sample, observe
from stackscaler.metrics.prometheus import (
    BasicAuth,
    InvalidQuery,
    InvalidSettings,
    PrometheusAuth,
    PrometheusMetricSource,
    PrometheusServer,
    PrometheusSettings,
)
from tests.integration.netutil import free_port
from tests.integration.prometheus_fixtures import (
    Answer,
    Exporter,
    FakePrometheus,
    HttpsFake,
    RunningPrometheus,
    eventually,
    metric_query,
    utcnow,
)


@pytest.fixture
async def source() -> AsyncIterator[PrometheusMetricSource]:
    src = PrometheusMetricSource()
    try:
        yield src
    finally:
        await src.close()


async def value_of(src: PrometheusMetricSource, address: str, promql: str) -> float:
    sample = await src.read(metric_query(address, promql), utcnow())
    return sample.value


# --- the real server --------------------------------------------------------------


async def test_reads_the_exported_value(
    prometheus: RunningPrometheus, exporter: Exporter, source: PrometheusMetricSource
) -> None:
    exporter.requests.set(1234.5)
    query = metric_query(prometheus.url, "web_requests_per_minute")

    async def scraped() -> Sample:
        now = utcnow()
        sample = await source.read(query, now)
        assert sample.value == 1234.5, sample
        # an instant query's vector sample carries the evaluation time we asked for
        assert abs((sample.timestamp - now).total_seconds()) < 0.001, (sample, now)
        return sample

    await eventually(scraped, what="web_requests_per_minute == 1234.5")

    exporter.requests.set(17)

    async def changed() -> None:
        assert await value_of(source, prometheus.url, "web_requests_per_minute") == 17

    await eventually(changed, what="web_requests_per_minute == 17")


async def test_scalar_result_and_query_encoding(
    prometheus: RunningPrometheus, source: PrometheusMetricSource
) -> None:
    # '+' and spaces survive URL encoding; a scalar answer is a value too
    assert await value_of(source, prometheus.url, "2 + 3 * 4") == 14


async def test_empty_result_is_unknown_and_names_resource_metric_and_query(
    prometheus: RunningPrometheus, source: PrometheusMetricSource
) -> None:
    query = metric_query(prometheus.url, 'no_such_metric{job="exporter"}', name="rpm")
    with pytest.raises(MetricUnavailable) as info:
        await source.read(query, utcnow())
    assert not isinstance(info.value, MetricStale)
    message = str(info.value)
    assert "empty result" in message
    assert "shop/web" in message
    assert "metric rpm" in message
    assert 'no_such_metric{job="exporter"}' in message


async def test_series_gone_from_the_exporter_becomes_unknown(
    prometheus: RunningPrometheus, exporter: Exporter, source: PrometheusMetricSource
) -> None:
    exporter.probe.labels(case="goes-stale").set(42)
    promql = 'probe_value{case="goes-stale"}'

    async def present() -> None:
        assert await value_of(source, prometheus.url, promql) == 42

    await eventually(present, what="the probe series is scraped")

    exporter.probe.remove("goes-stale")

    async def gone() -> MetricUnavailable:
        try:
            value = await value_of(source, prometheus.url, promql)
        except MetricUnavailable as exc:
            return exc
        raise AssertionError(f"still reads {value}")

    # the next scrape lacks the series: Prometheus writes a staleness marker, the
    # instant query drops the series (long before the 5m lookback), the source says unknown
    error = await eventually(gone, what="the removed series reads as unknown")
    assert "empty result" in str(error)


async def test_several_series_is_an_invalid_query_naming_the_label_sets(
    prometheus: RunningPrometheus, exporter: Exporter, source: PrometheusMetricSource
) -> None:
    for name, depth in (("orders", 3), ("emails", 5), ("images", 8)):
        exporter.queue_depth.labels(queue=name).set(depth)
    query = metric_query(prometheus.url, "queue_depth")

    async def several() -> InvalidQuery:
        try:
            sample = await source.read(query, utcnow())
        except InvalidQuery as exc:
            return exc
        raise AssertionError(f"read a single value {sample}")

    error = await eventually(several, what="three queue_depth series")
    assert isinstance(error, PermanentError)
    message = str(error)
    assert "returned 3 series" in message
    for name in ("orders", "emails", "images"):
        assert f'queue="{name}"' in message
    assert "sum(queue_depth)" in message

    # aggregated, the same series are one value
    async def summed() -> None:
        assert await value_of(source, prometheus.url, "sum(queue_depth)") == 16

    await eventually(summed, what="sum(queue_depth) == 16")


async def test_malformed_promql_is_an_invalid_query_with_prometheus_parse_error(
    prometheus: RunningPrometheus, source: PrometheusMetricSource
) -> None:
    with pytest.raises(InvalidQuery) as info:
        await source.read(metric_query(prometheus.url, "sum(rate(x[5m])"), utcnow())
    message = str(info.value)
    assert "parse error" in message  # Prometheus's own text
    assert "bad_data" in message
    assert "sum(rate(x[5m])" in message


async def test_range_vector_is_an_invalid_query(
    prometheus: RunningPrometheus, source: PrometheusMetricSource
) -> None:
    with pytest.raises(InvalidQuery, match="range vector"):
        await source.read(metric_query(prometheus.url, "web_requests_per_minute[1m]"), utcnow())


@pytest.mark.parametrize("promql", ["0 / 0", "1 / 0", "-1 / 0"])
async def test_nan_and_infinite_values_are_unknown(
    prometheus: RunningPrometheus, source: PrometheusMetricSource, promql: str
) -> None:
    with pytest.raises(MetricUnavailable, match="not a number"):
        await source.read(metric_query(prometheus.url, promql), utcnow())


async def test_prometheus_down_is_unknown(source: PrometheusMetricSource) -> None:
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(MetricUnavailable) as info:
        await source.read(metric_query(address, "up"), utcnow())
    assert str(info.value) == (
        f"shop/web metric requests: cannot get an answer from the Prometheus server {address}; "
        "see the operator's log"
    )


async def test_observe_turns_errors_into_unknown_and_leaves_other_metrics_alone(
    prometheus: RunningPrometheus, exporter: Exporter, source: PrometheusMetricSource
) -> None:
    exporter.probe.labels(case="observed").set(7.5)
    good = metric_query(prometheus.url, 'probe_value{case="observed"}', name="good")
    down = f"http://127.0.0.1:{free_port()}"
    bad = metric_query(down, "up", name="bad")

    async def both() -> None:
        now = utcnow()
        (good_obs, good_err), (bad_obs, bad_err) = await asyncio.gather(
            observe(source, good, now), observe(source, bad, now)
        )
        assert good_err is None, good_err
        assert good_obs.value == 7.5
        assert isinstance(bad_err, MetricUnavailable)
        assert bad_obs.value is None
        assert bad_obs.error is not None
        assert "metric bad" in bad_obs.error
        assert down in bad_obs.error

    await eventually(both, what="one metric known, the other unknown")


# --- answers only a fake gives ----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, {"status": "error", "errorType": "internal", "error": "boom"}, "internal: boom"),
        (503, {"status": "error", "errorType": "timeout", "error": "timed out"}, "timeout: timed"),
        # not Prometheus's error envelope: described, never quoted
        (502, "<html>Bad Gateway</html>", "(HTTP 502, text/plain, 24 bytes)"),
        (429, "slow down", "(HTTP 429, text/plain, 9 bytes)"),
    ],
)
async def test_server_errors_are_unknown(
    fake_prometheus: FakePrometheus,
    source: PrometheusMetricSource,
    status: int,
    body: object,
    expected: str,
) -> None:
    fake_prometheus.answer = Answer(status, body)
    with pytest.raises(MetricUnavailable) as info:
        await source.read(metric_query(fake_prometheus.url, "up"), utcnow())
    assert not isinstance(info.value, MetricStale)
    assert f"HTTP {status}" in str(info.value)
    assert expected in str(info.value)
    assert fake_prometheus.url in str(info.value)
    assert "Bad Gateway" not in str(info.value)
    assert "slow down" not in str(info.value)


async def test_retry_after_becomes_the_retry_delay(
    fake_prometheus: FakePrometheus, source: PrometheusMetricSource
) -> None:
    fake_prometheus.answer = Answer(503, "maintenance", {"Retry-After": "120"})
    with pytest.raises(MetricUnavailable) as info:
        await source.read(metric_query(fake_prometheus.url, "up"), utcnow())
    assert info.value.delay == 120


async def test_a_slow_server_times_out_as_unknown(
    fake_prometheus: FakePrometheus, source: PrometheusMetricSource
) -> None:
    fake_prometheus.answer = Answer(hang=True)
    query = metric_query(fake_prometheus.url, "up", timeout_seconds=1)
    with pytest.raises(MetricUnavailable) as info:
        await source.read(query, utcnow())
    # the same words as refused or unresolvable: status must not tell them apart
    assert "cannot get an answer from the Prometheus server" in str(info.value)
    assert len(fake_prometheus.requests) == 1


async def test_sends_the_instant_query_with_evaluation_time_and_timeout(
    fake_prometheus: FakePrometheus, source: PrometheusMetricSource
) -> None:
    now = utcnow()
    fake_prometheus.vector(({"job": "web"}, now.timestamp(), 3))
    promql = 'sum(rate(http_requests_total{code=~"5.."}[5m])) + 1'
    query = metric_query(fake_prometheus.url + "/", promql, timeout_seconds=7)
    assert (await source.read(query, now)).value == 3
    (request,) = fake_prometheus.requests
    assert request.method == "GET"
    assert request.path == "/api/v1/query"
    assert request.query["query"] == promql
    assert float(request.query["time"]) == pytest.approx(now.timestamp(), abs=0.001)
    assert request.query["timeout"] == "7s"


async def test_a_path_prefix_in_the_server_address_is_kept(
    fake_prometheus: FakePrometheus, source: PrometheusMetricSource
) -> None:
    fake_prometheus.vector(({}, utcnow().timestamp(), 1))
    await source.read(metric_query(fake_prometheus.url + "/prometheus", "up"), utcnow())
    assert fake_prometheus.requests[0].path == "/prometheus/api/v1/query"


async def test_an_old_evaluation_timestamp_is_stale(
    fake_prometheus: FakePrometheus, source: PrometheusMetricSource
) -> None:
    # e.g. a caching proxy replaying an answer evaluated ten minutes ago
    now = utcnow()
    fake_prometheus.vector(({"job": "web"}, (now - timedelta(minutes=10)).timestamp(), 5))
    query = metric_query(fake_prometheus.url, "up", stale_after_seconds=300)
    with pytest.raises(MetricStale, match="600s old"):
        await source.read(query, now)
    # within staleAfterSeconds the same answer is a value
    fresh = metric_query(fake_prometheus.url, "up", stale_after_seconds=900)
    assert (await source.read(fresh, now)).value == 5


async def test_many_series_are_listed_truncated(
    fake_prometheus: FakePrometheus, source: PrometheusMetricSource
) -> None:
    now = utcnow().timestamp()
    fake_prometheus.vector(
        *(({"__name__": "up", "instance": f"pod-{i}" + "x" * 300}, now, 1) for i in range(8))
    )
    with pytest.raises(InvalidQuery) as info:
        await source.read(metric_query(fake_prometheus.url, "up"), utcnow())
    message = str(info.value)
    assert "returned 8 series" in message
    assert 'up{instance="pod-0' in message
    assert "pod-4" in message
    assert "pod-5" not in message
    assert "and 3 more" in message
    assert len(message) < 1500


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (Answer(302, "", {"Location": "https://sso.example/login"}), PermanentError, "redirected"),
        (Answer(301, "", {"Location": "https://sso.example/login"}), PermanentError, "HTTP 301"),
        (Answer(404, "404 page not found"), PermanentError, "does not serve the Prometheus API"),
        (
            Answer(422, {"status": "error", "errorType": "execution", "error": "many-to-many"}),
            InvalidQuery,
            "many-to-many",
        ),
        (Answer(200, "<html>hello</html>"), MetricUnavailable, "not a Prometheus API response"),
        (
            Answer(200, {"status": "success", "data": {"resultType": "string", "result": []}}),
            InvalidQuery,
            "returns a string",
        ),
    ],
)
async def test_other_answers(
    fake_prometheus: FakePrometheus,
    source: PrometheusMetricSource,
    answer: Answer,
    error: type[Exception],
    text: str,
) -> None:
    fake_prometheus.answer = answer
    with pytest.raises(error, match=text) as info:
        await source.read(metric_query(fake_prometheus.url, "up"), utcnow())
    assert info.value.temporary == (error is MetricUnavailable)  # type: ignore[attr-defined]
    assert len(fake_prometheus.requests) == 1  # redirects are not followed


async def test_credentials_in_the_server_address_are_refused_unsent(
    fake_prometheus: FakePrometheus, source: PrometheusMetricSource
) -> None:
    address = fake_prometheus.url.replace("http://", "http://admin:hunter2@")
    with pytest.raises(PermanentError) as info:
        await source.read(metric_query(address, "up"), utcnow())
    assert "must not contain credentials" in str(info.value)
    assert "hunter2" not in str(info.value)
    assert fake_prometheus.requests == []


# --- credentials and TLS ----------------------------------------------------------


def _require(header: str) -> Callable[[web.Request], Answer | None]:
    """A server-side check: 401 unless the Authorization header is exactly ``header``."""

    def check(request: web.Request) -> Answer | None:
        got = request.headers.get("Authorization")
        if got != header:
            return Answer(401, {"status": "error", "errorType": "unauthorized", "error": "no"})
        return None

    return check


async def test_bearer_token_is_sent_and_rotation_is_picked_up(
    fake_prometheus: FakePrometheus, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    settings = PrometheusSettings(
        (PrometheusServer(fake_prometheus.url, PrometheusAuth(bearer_token_file=token)),)
    )
    fake_prometheus.vector(({}, utcnow().timestamp(), 1))
    fake_prometheus.check = _require("Bearer first-token")
    src = PrometheusMetricSource(settings)
    try:
        query = metric_query(fake_prometheus.url, "up")
        assert (await src.read(query, utcnow())).value == 1

        # the Secret is updated (atomically, like a Kubernetes Secret volume): the new
        # token is sent, and the server's 401 for the old one means AccessDenied
        fake_prometheus.check = _require("Bearer second-token")
        new = tmp_path / "token.new"
        new.write_text("second-token")
        os.replace(new, token)
        assert (await src.read(query, utcnow())).value == 1

        fake_prometheus.check = _require("Bearer third-token")
        with pytest.raises(AccessDenied, match="HTTP 401"):
            await src.read(query, utcnow())
    finally:
        await src.close()
    sent = [r.headers.get("Authorization") for r in fake_prometheus.requests]
    assert sent == ["Bearer first-token", "Bearer second-token", "Bearer second-token"]


async def test_basic_auth_is_sent(fake_prometheus: FakePrometheus, tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    auth = PrometheusAuth(basic_auth=BasicAuth("stackscaler", password), headers=(("X-T", "a"),))
    settings = PrometheusSettings((PrometheusServer(fake_prometheus.url, auth),))
    expected = "Basic " + base64.b64encode(b"stackscaler:s3cret").decode()
    fake_prometheus.check = _require(expected)
    fake_prometheus.vector(({}, utcnow().timestamp(), 2))
    src = PrometheusMetricSource(settings)
    try:
        assert (await src.read(metric_query(fake_prometheus.url, "up"), utcnow())).value == 2
    finally:
        await src.close()
    assert fake_prometheus.requests[0].headers["X-T"] == "a"


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_are_access_denied(
    fake_prometheus: FakePrometheus, source: PrometheusMetricSource, status: int
) -> None:
    fake_prometheus.answer = Answer(status, "Unauthorized")
    with pytest.raises(AccessDenied) as info:
        await source.read(metric_query(fake_prometheus.url, "up"), utcnow())
    assert f"HTTP {status}" in str(info.value)
    assert not info.value.temporary


async def test_longest_prefix_chooses_the_credentials(
    fake_prometheus: FakePrometheus, tmp_path: Path
) -> None:
    (tmp_path / "a").write_text("token-a")
    (tmp_path / "b").write_text("token-b")
    settings = PrometheusSettings(
        (
            PrometheusServer(fake_prometheus.url, PrometheusAuth(tmp_path / "a")),
            PrometheusServer(fake_prometheus.url + "/tenant-b", PrometheusAuth(tmp_path / "b")),
        )
    )
    fake_prometheus.vector(({}, utcnow().timestamp(), 1))
    src = PrometheusMetricSource(settings)
    try:
        for address in ("/tenant-b", "/tenant-bb", "", "/tenant-b/x"):
            await src.read(metric_query(fake_prometheus.url + address, "up"), utcnow())
    finally:
        await src.close()
    sent = [r.headers.get("Authorization") for r in fake_prometheus.requests]
    assert sent == ["Bearer token-b", "Bearer token-a", "Bearer token-a", "Bearer token-b"]


async def test_a_missing_token_file_is_a_settings_error(
    fake_prometheus: FakePrometheus, tmp_path: Path
) -> None:
    auth = PrometheusAuth(bearer_token_file=tmp_path / "missing")
    src = PrometheusMetricSource(PrometheusSettings((PrometheusServer(fake_prometheus.url, auth),)))
    try:
        with pytest.raises(InvalidSettings, match="missing"):
            await src.read(metric_query(fake_prometheus.url, "up"), utcnow())
    finally:
        await src.close()
    assert fake_prometheus.requests == []


async def test_custom_ca_is_trusted_only_when_configured(
    https_fake_prometheus: HttpsFake,
    source: PrometheusMetricSource,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, ca_file = https_fake_prometheus.fake, https_fake_prometheus.ca_file
    fake.vector(({}, utcnow().timestamp(), 9))
    query = metric_query(fake.url, "up")

    # system CAs only: the throwaway CA is not trusted. The resource's status says
    # what it says for a refused connection (a TLS port must not be told apart from
    # a closed one); the operator's log names the cause and the fix.
    caplog.set_level(logging.WARNING, logger="stackscaler.metrics.prometheus")
    with pytest.raises(MetricUnavailable, match="cannot get an answer") as info:
        await source.read(query, utcnow())
    assert "caFile" not in str(info.value)
    (logged,) = [r.getMessage() for r in caplog.records if "certificate" in r.getMessage()]
    assert "caFile" in logged

    for auth in (PrometheusAuth(ca_file=ca_file), PrometheusAuth(insecure_skip_verify=True)):
        src = PrometheusMetricSource(PrometheusSettings((PrometheusServer(fake.url, auth),)))
        try:
            assert (await src.read(query, utcnow())).value == 9
        finally:
            await src.close()
    assert len(fake.requests) == 2  # the untrusted handshake never got to send a request


async def test_an_unloadable_ca_file_is_a_settings_error(
    https_fake_prometheus: HttpsFake, tmp_path: Path
) -> None:
    fake = https_fake_prometheus.fake
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    auth = PrometheusAuth(ca_file=bad)
    src = PrometheusMetricSource(PrometheusSettings((PrometheusServer(fake.url, auth),)))
    try:
        with pytest.raises(InvalidSettings, match="caFile: cannot load"):
            await src.read(metric_query(fake.url, "up"), utcnow())
    finally:
        await src.close()
    assert fake.requests == []
