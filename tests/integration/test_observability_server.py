"""HealthServer over real HTTP on loopback: /metrics, /healthz, /readyz, start and stop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stackscaler.errors import Throttled
from stackscaler.observability import HealthServer, OperatorMetrics
from stackscaler.policy import History, decide
from tests.unit.policy_helpers import NOW, metric, obs, scaling

RES = {"kind": "WebTier", "namespace": "shop", "name": "web"}


@pytest.fixture
async def served() -> AsyncIterator[tuple[HealthServer, OperatorMetrics, str]]:
    metrics = OperatorMetrics()
    server = HealthServer(metrics.registry, host="127.0.0.1", port=0)
    port = await server.start()
    try:
        yield server, metrics, f"http://127.0.0.1:{port}"
    finally:
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def sample(text: str, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and labels.items() <= s.labels.items():
                return s.value
    return None


async def test_metrics_serves_recorded_values(
    served: tuple[HealthServer, OperatorMetrics, str], http: aiohttp.ClientSession
) -> None:
    server, metrics, url = served
    assert server.port > 0
    spec = scaling([metric("cpu", 50), metric("rps", 100)], max_capacity=20)
    metrics.record_decision("WebTier", "shop", "web", decide(spec, obs(3, cpu=90), History(), NOW))
    metrics.record_error("WebTier", "shop", "web", Throttled("slow down"))

    async with http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        text = await resp.text()

    assert sample(text, "stackscaler_capacity_desired", RES) == 6
    assert sample(text, "stackscaler_metric_value", {**RES, "metric": "cpu"}) == 90
    assert sample(text, "stackscaler_metric_value", {**RES, "metric": "rps"}) is None  # unknown
    assert sample(text, "stackscaler_metric_known", {**RES, "metric": "rps"}) == 0
    assert sample(text, "stackscaler_errors_total", {**RES, "error": "Throttled"}) == 1

    metrics.forget("WebTier", "shop", "web")
    async with http.get(f"{url}/metrics") as resp:
        text = await resp.text()
    assert sample(text, "stackscaler_capacity_desired", RES) is None
    assert sample(text, "stackscaler_build_info", {}) == 1


async def test_healthz_is_ok(
    served: tuple[HealthServer, OperatorMetrics, str], http: aiohttp.ClientSession
) -> None:
    _, _, url = served
    async with http.get(f"{url}/healthz") as resp:
        assert resp.status == 200
        assert await resp.text() == "ok"


async def test_readyz_follows_the_checks(
    served: tuple[HealthServer, OperatorMetrics, str], http: aiohttp.ClientSession
) -> None:
    server, _, url = served
    state = {"watching": False, "synced": False}
    server.add_check("watching", lambda: state["watching"])
    server.add_check("synced", lambda: True if state["synced"] else "initial listing not done")

    async with http.get(f"{url}/readyz") as resp:
        assert resp.status == 503
        body = await resp.text()
    assert "watching: not ready" in body
    assert "synced: initial listing not done" in body

    state["watching"] = True
    async with http.get(f"{url}/readyz") as resp:
        assert resp.status == 503
        body = await resp.text()
    assert "watching" not in body
    assert "synced: initial listing not done" in body

    state["synced"] = True
    async with http.get(f"{url}/readyz") as resp:
        assert resp.status == 200
        assert await resp.text() == "ok"


async def test_a_check_that_raises_is_failing(
    served: tuple[HealthServer, OperatorMetrics, str], http: aiohttp.ClientSession
) -> None:
    server, _, url = served

    def broken() -> bool:
        raise RuntimeError("cache gone")

    server.add_check("cache", broken)
    async with http.get(f"{url}/readyz") as resp:
        assert resp.status == 503
        assert "cache: raised RuntimeError: cache gone" in await resp.text()
    server.add_check("cache", lambda: True)  # re-registering replaces the check
    async with http.get(f"{url}/readyz") as resp:
        assert resp.status == 200


async def test_stop_releases_the_port_and_start_twice_is_refused(
    http: aiohttp.ClientSession,
) -> None:
    server = HealthServer(OperatorMetrics().registry, host="127.0.0.1", port=0)
    with pytest.raises(RuntimeError):
        _ = server.port
    async with server:
        port = server.port
        with pytest.raises(RuntimeError, match="already started"):
            await server.start()
        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 200
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(f"http://127.0.0.1:{port}/healthz"):
            pass
    await server.stop()  # stopping again is a no-op
    # and it can serve again
    again = await server.start()
    try:
        async with http.get(f"http://127.0.0.1:{again}/healthz") as resp:
            assert resp.status == 200
    finally:
        await server.stop()


def type_lines(text: str) -> list[str]:
    return [line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE ")]


async def test_metrics_has_each_family_once(
    served: tuple[HealthServer, OperatorMetrics, str], http: aiohttp.ClientSession
) -> None:
    """Per-resource families are written by their collector, the rest by generate_latest:
    none is missing and none comes twice."""
    _, metrics, url = served
    spec = scaling([metric("cpu", 50)], max_capacity=20)
    for i in range(3):
        name = f'web-{i}"}}\n evil 1'  # a hostile name cannot add a family or a sample
        metrics.record_decision(
            "WebTier", "shop", name, decide(spec, obs(3, cpu=90), History(), NOW)
        )
        metrics.record_error("WebTier", "shop", name, Throttled("slow down"))
    with metrics.observe_reconcile("WebTier"):
        pass
    Gauge("user_registered", "A user's own gauge.", registry=metrics.registry).set(7)

    async with http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()

    names = type_lines(text)
    assert len(names) == len(set(names))
    assert set(names) == set(type_lines(generate_latest(metrics.registry).decode()))
    for family in (
        "stackscaler_capacity_desired",
        "stackscaler_decisions_total",
        "stackscaler_errors_total",
        "stackscaler_reconcile_duration_seconds",
        "stackscaler_build_info",
        "user_registered",
    ):
        assert text.count(f"# TYPE {family} ") == 1, family
        assert text.count(f"# HELP {family} ") == 1, family
    parsed = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert not any(s.name == "evil" for s in parsed)
    assert sample(text, "user_registered", {}) == 7
    assert sample(text, "stackscaler_errors_total", {"name": 'web-2"}\n evil 1'}) == 1
