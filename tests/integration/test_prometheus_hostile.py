"""The Prometheus source against hostile or wrong servers (issue 10, finding 2).

``prometheus.serverAddress`` is written by a namespace's users, and what the
source says about the answer lands in that namespace's status and Events. So:

* a non-Prometheus answer is never quoted, only described by its shape (HTTP
  status, content type, byte count); only a well-formed Prometheus error
  envelope's ``error``/``errorType`` are shown, capped and cleaned;
* a response is never read past ``maxResponseBytes`` (a declared length above
  it is refused before the body is read; a chunked or compressed body is cut
  as soon as it passes the limit), measured here by what a lazily streaming
  server managed to send before the client hung up;
* every way of not getting an answer (refused, reset, closed, a banner that is
  not HTTP, DNS, timeout, TLS) reads the same to the user, so status cannot
  be used to scan ports; the cause goes to the operator's log;
* redirects are not followed, and the deadline covers the body too.

Timeouts here are hang guards only; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import struct
import tempfile
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from stackscaler.devtools.pki import make_pki
from stackscaler.errors import AccessDenied, MetricUnavailable, PermanentError
from stackscaler.metrics import prometheus as prom
from stackscaler.metrics.prometheus import (
    InvalidQuery,
    PrometheusAuth,
    PrometheusMetricSource,
    PrometheusServer,
    PrometheusSettings,
)
from tests.integration.netutil import free_port
from tests.integration.prometheus_fixtures import (
    Answer,
    FakePrometheus,
    HttpsFake,
    metric_query,
    serve_handler,
    utcnow,
)

HANG_GUARD = 60.0
"""Upper bound for anything a test awaits; never an assertion about speed."""
MiB = 1024 * 1024
DEFAULT_CAP = MiB
HUGE = 600_000_000
"""The size of the answer that took the operator to 0.9 GB."""
SLACK = 16 * MiB
"""What socket buffers on both ends may hold beyond what the client read."""
WHERE = "shop/web metric requests"
LOGGER = "stackscaler.metrics.prometheus"

# what a cloud metadata service or an internal API would hand out
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
CREDENTIALS = {
    "Code": "Success",
    "AccessKeyId": "ASIAFAKEACCESSKEY",
    "SecretAccessKey": SECRET,
    "Token": "IQoJb3JpZ2luX2VjEFAKE",
}


@pytest.fixture
async def source() -> AsyncIterator[PrometheusMetricSource]:
    src = PrometheusMetricSource()
    try:
        yield src
    finally:
        await src.close()


async def read_error(
    src: PrometheusMetricSource, address: str, *, timeout_seconds: int = 2
) -> Exception:
    """The error of one read (a read that returns a value fails the test)."""
    query = metric_query(address, "up", timeout_seconds=timeout_seconds)
    try:
        sample = await asyncio.wait_for(src.read(query, utcnow()), HANG_GUARD)
    except Exception as exc:
        return exc
    raise AssertionError(f"read a value from a hostile server: {sample}")


def body_bytes(body: Any) -> int:
    """The length of what FakePrometheus sends for ``body``."""
    if isinstance(body, dict):
        return len(json.dumps(body).encode())
    if isinstance(body, bytes):
        return len(body)
    return len(str(body).encode())


# --- never quote a non-Prometheus answer -------------------------------------------


@pytest.mark.parametrize(
    ("answer", "error", "expected"),
    [
        (
            Answer(200, CREDENTIALS),
            MetricUnavailable,
            "the answer from {url} is not a Prometheus API response "
            "(HTTP 200, application/json, {n} bytes)",
        ),
        (
            Answer(200, f"<html><pre>{SECRET}</pre></html>", {"Content-Type": "text/html"}),
            MetricUnavailable,
            "(HTTP 200, text/html, {n} bytes)",
        ),
        (
            Answer(200, {"status": "success", "data": SECRET}),
            MetricUnavailable,
            "is not a Prometheus API response (HTTP 200, application/json, {n} bytes)",
        ),
        (
            Answer(200, {"status": "success", "data": {"resultType": SECRET, "result": []}}),
            MetricUnavailable,
            "is not a Prometheus API response (HTTP 200, application/json, {n} bytes)",
        ),
        (
            Answer(200, {"status": "error", "errorType": "internal", "error": {"k": SECRET}}),
            MetricUnavailable,
            "is not a Prometheus API response (HTTP 200, application/json, {n} bytes)",
        ),
        (
            Answer(
                200,
                {"status": "success", "data": {"resultType": "vector", "result": [SECRET]}},
            ),
            MetricUnavailable,
            "malformed sample",
        ),
        (
            Answer(
                200,
                {"status": "success", "data": {"resultType": "scalar", "result": [SECRET, 1]}},
            ),
            MetricUnavailable,
            "malformed sample",
        ),
        (Answer(401, f"token {SECRET} expired"), AccessDenied, "(HTTP 401, text/plain, {n} bytes)"),
        (Answer(403, CREDENTIALS), AccessDenied, "(HTTP 403, application/json, {n} bytes)"),
        (Answer(500, f"panic: {SECRET}"), MetricUnavailable, "(HTTP 500, text/plain, {n} bytes)"),
        (
            Answer(502, f"<h1>{SECRET}</h1>", {"Content-Type": "text/html; charset=utf-8"}),
            MetricUnavailable,
            "(HTTP 502, text/html, {n} bytes)",
        ),
        (Answer(429, SECRET), MetricUnavailable, "(HTTP 429, text/plain, {n} bytes)"),
        (Answer(400, SECRET), InvalidQuery, "(HTTP 400, text/plain, {n} bytes)"),
        (Answer(422, CREDENTIALS), InvalidQuery, "(HTTP 422, application/json, {n} bytes)"),
        (Answer(418, SECRET), PermanentError, "(HTTP 418, text/plain, {n} bytes)"),
        (Answer(404, SECRET), PermanentError, "does not serve the Prometheus API"),
        (
            Answer(200, SECRET.encode(), {"Content-Type": f"text/{SECRET}; charset=utf-8"}),
            MetricUnavailable,
            "(HTTP 200, an invalid content type, {n} bytes)",
        ),
        (
            Answer(200, SECRET.encode(), {"Content-Type": "application/x-" + "a" * 100}),
            MetricUnavailable,
            "(HTTP 200, an invalid content type, {n} bytes)",
        ),
        (
            Answer(200, SECRET.encode()),
            MetricUnavailable,
            "(HTTP 200, application/octet-stream, {n} bytes)",
        ),
        (
            Answer(200, SECRET.encode(), {"Content-Type": ""}),
            MetricUnavailable,
            "(HTTP 200, no content type, {n} bytes)",
        ),
    ],
)
async def test_a_non_prometheus_answer_is_described_by_its_shape_only(
    fake_prometheus: FakePrometheus,
    source: PrometheusMetricSource,
    answer: Answer,
    error: type[Exception],
    expected: str,
) -> None:
    fake_prometheus.answer = answer
    exc = await read_error(source, fake_prometheus.url)
    assert isinstance(exc, error), repr(exc)
    message = str(exc)
    assert SECRET not in message
    assert "ASIAFAKE" not in message
    assert "IQoJ" not in message
    assert message.startswith(f"{WHERE}: ")
    assert expected.format(url=fake_prometheus.url, n=body_bytes(answer.body)) in message
    assert len(message) < 600


async def test_prometheus_error_text_is_shown_capped_and_without_control_characters(
    fake_prometheus: FakePrometheus, source: PrometheusMetricSource
) -> None:
    error = "line one\nline two\u202eevil\x1b[31mred\x00\u200b\u2028end " + "A" * 5000
    fake_prometheus.answer = Answer(
        422, {"status": "error", "errorType": "execution\u202e", "error": error}
    )
    exc = await read_error(source, fake_prometheus.url)
    assert isinstance(exc, InvalidQuery)
    message = str(exc)
    assert "HTTP 422 execution" in message
    assert "line one line two evil [31mred end AAAA" in message
    for bad in ("\n", "\u202e", "\x1b", "\x00", "\u200b", "\u2028"):
        assert bad not in message, repr(bad)
    assert "A" * 200 in message
    assert "A" * 300 not in message  # the error text is cut at 300 characters
    assert len(message) < 600


async def test_label_sets_of_several_series_are_cleaned_and_capped(
    fake_prometheus: FakePrometheus, source: PrometheusMetricSource
) -> None:
    now = utcnow().timestamp()
    fake_prometheus.vector(
        ({"instance": "a\nERROR forged\u202eline", "job\u2066x": "web"}, now, 1),
        ({"instance": "b" * 10_000}, now, 2),
    )
    exc = await read_error(source, fake_prometheus.url)
    assert isinstance(exc, InvalidQuery)
    message = str(exc)
    assert "returned 2 series" in message
    assert 'instance="a ERROR forged line"' in message
    for bad in ("\n", "\u202e", "\u2066"):
        assert bad not in message, repr(bad)
    assert "b" * 200 not in message
    assert len(message) < 1000


async def test_deeply_nested_json_is_not_a_prometheus_answer(
    fake_prometheus: FakePrometheus, source: PrometheusMetricSource
) -> None:
    body = "[" * 200_000
    fake_prometheus.answer = Answer(200, body, {"Content-Type": "application/json"})
    exc = await read_error(source, fake_prometheus.url)
    assert isinstance(exc, MetricUnavailable), repr(exc)
    assert "(HTTP 200, application/json, 200000 bytes)" in str(exc)


# --- bounded response size ---------------------------------------------------------


@dataclass
class Streamer:
    """Streams ``total`` bytes of a Prometheus-looking answer, lazily, 64 KiB at a time,
    counting what it managed to send (each write waits for the socket to drain)."""

    total: int = HUGE
    declare_length: bool = False
    sent: int = 0
    finished: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        head = b'{"status":"success","data":{"resultType":"vector","result":['
        series = b'{"metric":{"instance":"pod"},"value":[1,"1"]},'
        chunk = series * (64 * 1024 // len(series))
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if self.declare_length:
            resp.content_length = self.total
        try:
            await resp.prepare(request)
            await resp.write(head)
            self.sent += len(head)
            while self.sent < self.total:
                part = chunk[: self.total - self.sent]
                await resp.write(part)
                self.sent += len(part)
            await resp.write_eof()
            self.finished = True
        except ConnectionError:
            pass  # the client hung up: what we want
        finally:
            self.done.set()
        return resp


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
async def test_a_huge_answer_is_cut_at_the_limit_and_is_a_permanent_error(
    source: PrometheusMetricSource, declare_length: bool
) -> None:
    streamer = Streamer(declare_length=declare_length)
    async with serve_handler(streamer.handle) as url:
        exc = await read_error(source, url, timeout_seconds=60)
        await asyncio.wait_for(streamer.done.wait(), HANG_GUARD)
    assert isinstance(exc, PermanentError), repr(exc)
    assert not isinstance(exc, MetricUnavailable)
    assert f"larger than {DEFAULT_CAP} bytes" in str(exc)
    assert "maxResponseBytes" in str(exc)
    assert not streamer.finished
    # the client hung up once past the limit: what was sent is the limit plus what
    # the socket buffers on both ends hold, nowhere near the 600 MB on offer
    assert streamer.sent < DEFAULT_CAP + SLACK, streamer.sent


async def test_a_declared_length_above_the_limit_is_refused_before_reading(
    source: PrometheusMetricSource,
) -> None:
    streamer = Streamer(declare_length=True)
    async with serve_handler(streamer.handle) as url:
        exc = await read_error(source, url, timeout_seconds=60)
        await asyncio.wait_for(streamer.done.wait(), HANG_GUARD)
    assert isinstance(exc, PermanentError), repr(exc)
    assert f"declares {HUGE} bytes" in str(exc)
    assert streamer.sent < SLACK, streamer.sent


async def test_a_compressed_answer_is_limited_by_its_decompressed_size(
    source: PrometheusMetricSource,
) -> None:
    # 200 MB of zeros in about 200 KB of gzip: small on the wire, huge in memory
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"0" * MiB
    bomb = b"".join(packer.compress(block) for _ in range(200)) + packer.flush()
    assert len(bomb) < DEFAULT_CAP

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=bomb,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    async with serve_handler(handle) as url:
        exc = await read_error(source, url, timeout_seconds=60)
    assert isinstance(exc, PermanentError), repr(exc)
    assert f"larger than {DEFAULT_CAP} bytes" in str(exc)


def padded_vector(size: int) -> dict[str, Any]:
    """A one-series vector answer that FakePrometheus sends in exactly ``size`` bytes."""
    now = utcnow().timestamp()

    def answer(pad: str) -> dict[str, Any]:
        return {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [{"metric": {"pad": pad}, "value": [now, "7"]}],
            },
        }

    short = body_bytes(answer(""))
    assert short <= size
    body = answer("x" * (size - short))
    assert body_bytes(body) == size
    return body


async def test_the_limit_is_a_setting_and_an_answer_of_exactly_the_limit_is_read(
    fake_prometheus: FakePrometheus,
) -> None:
    src = PrometheusMetricSource(PrometheusSettings(max_response_bytes=2048))
    try:
        fake_prometheus.answer = Answer(200, padded_vector(2048))
        sample = await src.read(metric_query(fake_prometheus.url, "up"), utcnow())
        assert sample.value == 7
        fake_prometheus.answer = Answer(200, padded_vector(2049))
        exc = await read_error(src, fake_prometheus.url)
    finally:
        await src.close()
    assert isinstance(exc, PermanentError), repr(exc)
    assert "larger than 2048 bytes" in str(exc)


# --- one message for every way of not getting an answer ----------------------------


@contextlib.asynccontextmanager
async def raw_server(
    on_connect: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A TCP server on loopback speaking whatever ``on_connect`` writes."""
    tasks: set[asyncio.Task[None]] = set()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await asyncio.wait_for(on_connect(reader, writer), HANG_GUARD)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST


async def _close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1)


async def _banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3 internal-bastion\r\n")
    await writer.drain()
    await reader.read()  # until the client gives up


async def _cut_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(1)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b'{"status":"succ')
    await writer.drain()


Scenario = Callable[[contextlib.AsyncExitStack], Awaitable[str]]


async def _refused(stack: contextlib.AsyncExitStack) -> str:
    return f"http://127.0.0.1:{free_port()}"


def _raw(handler: Callable[..., Awaitable[None]]) -> Scenario:
    async def scenario(stack: contextlib.AsyncExitStack) -> str:
        return await stack.enter_async_context(raw_server(handler))

    return scenario


async def _dns(stack: contextlib.AsyncExitStack) -> str:
    return "http://no-such-host.invalid:9090"  # RFC 2606: never resolves


async def _hang(stack: contextlib.AsyncExitStack) -> str:
    release = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), HANG_GUARD)
        return web.Response(text="late")

    url = await stack.enter_async_context(serve_handler(handle))
    stack.callback(release.set)  # runs before the server's cleanup
    return url


async def _tls_untrusted(stack: contextlib.AsyncExitStack) -> str:
    pki = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "pki"
    await asyncio.to_thread(make_pki, pki)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.json_response(CREDENTIALS)

    return await stack.enter_async_context(serve_handler(handle, context))


async def _tls_to_plain_http(stack: contextlib.AsyncExitStack) -> str:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.json_response(CREDENTIALS)

    url = await stack.enter_async_context(serve_handler(handle))
    return url.replace("http://", "https://")


SCENARIOS: dict[str, Scenario] = {
    "refused": _refused,
    "reset": _raw(_reset),
    "closed": _raw(_close),
    "ssh-banner": _raw(_banner),
    "body-cut-short": _raw(_cut_body),
    "dns": _dns,
    "timeout": _hang,
    "tls-untrusted-certificate": _tls_untrusted,
    "tls-to-a-plain-http-port": _tls_to_plain_http,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_every_way_of_not_getting_an_answer_reads_the_same(
    source: PrometheusMetricSource, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with contextlib.AsyncExitStack() as stack:
        address = await SCENARIOS[name](stack)
        exc = await read_error(source, address, timeout_seconds=2)
    origin = prom.normalize_address(address)
    assert isinstance(exc, MetricUnavailable), repr(exc)
    assert str(exc) == (
        f"{WHERE}: cannot get an answer from the Prometheus server {origin}; see the operator's log"
    )
    assert exc.delay == 30.0
    # the platform team gets the cause, in the operator's log
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    logged = warnings[0].getMessage()
    assert origin in logged
    assert WHERE in logged


@pytest.mark.parametrize(
    ("name", "cause"),
    [
        ("refused", "refused"),
        ("timeout", "no answer within 2s"),
        ("tls-untrusted-certificate", "caFile"),
        ("ssh-banner", "SSH-2.0"),
    ],
)
async def test_the_cause_is_in_the_operator_log(
    source: PrometheusMetricSource, caplog: pytest.LogCaptureFixture, name: str, cause: str
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with contextlib.AsyncExitStack() as stack:
        address = await SCENARIOS[name](stack)
        await read_error(source, address, timeout_seconds=2)
    (record,) = [r for r in caplog.records if r.name == LOGGER]
    assert cause in record.getMessage()


async def test_the_cause_is_logged_once_a_minute_per_server_not_per_read(
    source: PrometheusMetricSource, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    address = f"http://127.0.0.1:{free_port()}"
    first = await read_error(source, address)
    second = await read_error(source, address)
    assert str(first) == str(second)
    assert len([r for r in caplog.records if r.name == LOGGER]) == 1


# --- redirects and the deadline -----------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_not_followed_and_its_target_not_shown(
    fake_prometheus: FakePrometheus, source: PrometheusMetricSource, status: int
) -> None:
    location = f"{fake_prometheus.url}/elsewhere?token={SECRET}"
    fake_prometheus.answer = Answer(status, "", {"Location": location})
    exc = await read_error(source, fake_prometheus.url)
    assert isinstance(exc, PermanentError), repr(exc)
    assert not isinstance(exc, MetricUnavailable)
    message = str(exc)
    assert f"HTTP {status}" in message
    assert "redirect" in message
    assert "elsewhere" not in message
    assert SECRET not in message
    assert len(fake_prometheus.requests) == 1  # not followed


async def test_the_deadline_covers_a_body_that_trickles_forever(
    source: PrometheusMetricSource,
) -> None:
    stop = asyncio.Event()

    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            await resp.write(b'{"status":"success",')
            while not stop.is_set():  # one byte at a time: never a read timeout
                await resp.write(b" ")
                await asyncio.sleep(0.05)
        return resp

    async with serve_handler(trickle) as url:
        try:
            exc = await read_error(source, url, timeout_seconds=1)
        finally:
            stop.set()
    assert isinstance(exc, MetricUnavailable), repr(exc)
    assert "cannot get an answer from the Prometheus server" in str(exc)


async def test_the_limit_applies_to_configured_servers_with_credentials(
    https_fake_prometheus: HttpsFake, tmp_path: Path
) -> None:
    fake = https_fake_prometheus.fake
    token = tmp_path / "token"
    token.write_text("t")
    auth = PrometheusAuth(bearer_token_file=token, ca_file=https_fake_prometheus.ca_file)
    settings = PrometheusSettings((PrometheusServer(fake.url, auth),), max_response_bytes=4096)
    fake.answer = Answer(200, padded_vector(5000))
    src = PrometheusMetricSource(settings)
    try:
        exc = await read_error(src, fake.url)
    finally:
        await src.close()
    assert isinstance(exc, PermanentError), repr(exc)
    assert "larger than 4096 bytes" in str(exc)
