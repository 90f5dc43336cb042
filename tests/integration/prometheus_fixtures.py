"""Fixtures for the Prometheus metric source: the real server, an exporter, fake servers.

* ``exporter``: a prometheus-client exporter (own CollectorRegistry, in-process
  thread) on loopback, with gauges the tests set and remove.
* ``prometheus``: the real Prometheus (Debian's ``prometheus`` package,
  /usr/bin/prometheus) scraping the exporter every second, on a free loopback
  port, once per session; stopped at the end, also when tests fail, and it dies
  with the test process. Missing: skipped ("apt-get install prometheus"),
  except under CI=true, where the tests fail.
* ``fake_prometheus`` / ``https_fake_prometheus``: a small aiohttp server on
  loopback answering whatever a test scripts (errors, slow answers, auth
  checks, TLS), recording every request.
* ``serve_handler``: any aiohttp handler on loopback (hostile answers that
  stream, trickle or never end).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from stackscaler.devtools.controlplane import exit_with_parent
from stackscaler.devtools.pki import make_pki
from stackscaler.errors import MetricUnavailable
from stackscaler.metrics import MetricQuery
from stackscaler.model.spec import MetricSpec, PrometheusSource
from tests.integration.netutil import free_port

__all__ = [
    "Answer",
    "Exporter",
    "FakePrometheus",
    "HttpsFake",
    "RunningPrometheus",
    "eventually",
    "exporter_fixture",
    "fake_prometheus_fixture",
    "https_fake_prometheus_fixture",
    "metric_query",
    "prometheus_fixture",
    "serve_handler",
    "utcnow",
]

T = TypeVar("T")


PROMETHEUS_BINARY = "/usr/bin/prometheus"
READY_TIMEOUT = 30.0
DATA_TIMEOUT = 20.0
"""Upper bound of every wait for Prometheus to have (or lose) data."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def metric_query(
    address: str,
    promql: str,
    *,
    name: str = "requests",
    timeout_seconds: int = 2,
    stale_after_seconds: int = 300,
    resource: str = "shop/web",
) -> MetricQuery:
    return MetricQuery(
        resource,
        MetricSpec(
            name=name,
            source=PrometheusSource(address, promql, timeout_seconds),
            stale_after_seconds=stale_after_seconds,
        ),
    )


async def eventually(
    check: Callable[[], Awaitable[T]], *, what: str, timeout: float = DATA_TIMEOUT
) -> T:
    """Retry ``check`` until it returns; AssertionError or MetricUnavailable mean 'not yet'.

    Bounded: fails with the last reason after ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await check()
        except (AssertionError, MetricUnavailable) as exc:
            if loop.time() > deadline:
                raise AssertionError(f"{what}: not within {timeout:g}s; last: {exc}") from exc
        await asyncio.sleep(0.2)


# --- the exporter ---------------------------------------------------------------


@dataclass
class Exporter:
    """Gauges served on loopback for Prometheus to scrape."""

    registry: CollectorRegistry
    requests: Gauge
    """``web_requests_per_minute``: one series."""
    queue_depth: Gauge
    """``queue_depth{queue=...}``: one series per label value (several-series case)."""
    probe: Gauge
    """``probe_value{case=...}``: a series per test case, removed to make it go stale."""
    address: str
    stop: Callable[[], None]


@pytest.fixture(name="exporter", scope="session")
def exporter_fixture() -> Iterator[Exporter]:
    registry = CollectorRegistry()
    requests = Gauge("web_requests_per_minute", "Requests per minute", registry=registry)
    depth = Gauge("queue_depth", "Messages waiting", ["queue"], registry=registry)
    probe = Gauge("probe_value", "A series a test can remove", ["case"], registry=registry)
    httpd, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    port = httpd.server_address[1]

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)

    try:
        yield Exporter(registry, requests, depth, probe, f"127.0.0.1:{port}", stop)
    finally:
        stop()


# --- the real Prometheus --------------------------------------------------------


@dataclass(frozen=True)
class RunningPrometheus:
    url: str
    log: Path


def _prometheus_binary() -> str:
    found = shutil.which("prometheus")
    path = PROMETHEUS_BINARY if os.access(PROMETHEUS_BINARY, os.X_OK) else found
    if path is None:
        message = "Prometheus is not installed: apt-get install prometheus"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires the real Prometheus server: {message}", pytrace=False)
        pytest.skip(message)
    return path


def _tail(path: Path, chars: int = 3000) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-chars:]
    return ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def start_prometheus(
    binary: str, scrape: str, directory: Path, port: int
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start Prometheus on 127.0.0.1:``port`` scraping ``scrape`` every second, with its
    data and log in ``directory``; return once /-/ready answers (the process and its log)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: exporter\n"
        "    static_configs:\n"
        f"      - targets: ['{scrape}']\n"
    )
    url = f"http://127.0.0.1:{port}"
    log = directory / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=exit_with_parent,  # noqa: PLW1509 - only prctl, no locks
        )
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "/-/ready", timeout=1) as r:
            if r.status == 200:
                return proc, log
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            pytest.fail(f"Prometheus did not become ready:\n{_tail(log)}", pytrace=False)
        time.sleep(0.1)


@pytest.fixture(name="prometheus", scope="session")
def prometheus_fixture(
    exporter: Exporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPrometheus]:
    port = free_port()
    proc, log = start_prometheus(
        _prometheus_binary(), exporter.address, tmp_path_factory.mktemp("prometheus"), port
    )
    try:
        yield RunningPrometheus(f"http://127.0.0.1:{port}", log)
    finally:
        _stop(proc)


# --- fake servers ---------------------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    body: Any = None
    """A dict (sent as JSON), a str (sent as text) or bytes (sent as they are, the
    Content-Type header too)."""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    """Do not answer until the test ends (for client timeouts)."""


@dataclass
class FakePrometheus:
    """An aiohttp server on loopback answering what the test sets in ``answer``."""

    url: str
    answer: Answer = field(default_factory=Answer)
    check: Callable[[web.Request], Answer | None] | None = None
    """Called first for each request; its Answer, if any, wins (e.g. an auth check)."""
    requests: list[web.Request] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def vector(self, *series: tuple[dict[str, str], float, float | str]) -> None:
        """Answer a vector: (labels, timestamp, value) per series."""
        self.answer = Answer(
            body={
                "status": "success",
                "data": {
                    "resultType": "vector",
                    "result": [
                        {"metric": labels, "value": [ts, str(v)]} for labels, ts, v in series
                    ],
                },
            }
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        answer = (self.check(request) if self.check else None) or self.answer
        if answer.hang:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.release.wait(), timeout=60)
        if isinstance(answer.body, dict):
            return web.json_response(answer.body, status=answer.status, headers=answer.headers)
        if isinstance(answer.body, bytes):
            return web.Response(body=answer.body, status=answer.status, headers=answer.headers)
        return web.Response(text=answer.body or "", status=answer.status, headers=answer.headers)


@contextlib.asynccontextmanager
async def serve_handler(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[str]:
    """Serve ``handler`` for every path on a free loopback port; yield the base URL."""
    scheme = "https" if ssl_context else "http"
    port = free_port()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _serve(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[FakePrometheus]:
    fake = FakePrometheus("")
    async with serve_handler(fake.handle, ssl_context) as url:
        fake.url = url
        try:
            yield fake
        finally:
            fake.release.set()  # before the server's cleanup waits for hanging handlers


@pytest.fixture(name="fake_prometheus")
async def fake_prometheus_fixture() -> AsyncIterator[FakePrometheus]:
    async with _serve() as fake:
        yield fake


@dataclass(frozen=True)
class HttpsFake:
    fake: FakePrometheus
    ca_file: Path


@pytest.fixture(name="https_fake_prometheus")
async def https_fake_prometheus_fixture(tmp_path: Path) -> AsyncIterator[HttpsFake]:
    """A fake serving HTTPS with a certificate for 127.0.0.1 signed by a throwaway CA."""
    pki = tmp_path / "pki"
    await asyncio.to_thread(make_pki, pki)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")
    async with _serve(context) as fake:
        yield HttpsFake(fake, pki / "ca.crt")
