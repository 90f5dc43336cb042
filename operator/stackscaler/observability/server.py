"""Health and metrics endpoints: ``/metrics``, ``/healthz``, ``/readyz`` (aiohttp).

* ``GET /metrics``: the registry in the Prometheus text exposition format
  (see :func:`~stackscaler.observability.exposition.exposition`: collectors
  that write their own text do, the others go through ``generate_latest``).
* ``GET /healthz``: liveness, 200 ``ok`` when the event loop serves it and
  every liveness check passes (a stuck operator answers 503 and is restarted).
* ``GET /readyz``: readiness, 200 only when every registered check passes,
  else 503 with one line per failing check.

A readiness check is a quick, non-blocking callable run on the event loop: it
returns True when ready, and False or a string (the reason) when not. A check
that raises counts as failing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from stackscaler.observability.exposition import exposition

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], bool | str]
"""() -> True when ready; False or a reason (str) when not."""


class HealthServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port``.

    ``port=0`` binds a free port; :meth:`start` returns the bound port (also
    :attr:`port`). Production binds ``0.0.0.0``; tests bind ``127.0.0.1``.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        host: str = "0.0.0.0",  # probes and scrapes come from outside the pod
        port: int = 8080,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.registry = registry
        self.host = host
        self._requested_port = port
        self._shutdown_timeout = shutdown_timeout
        self._checks: dict[str, ReadinessCheck] = {}
        self._liveness: dict[str, ReadinessCheck] = {}
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # --- readiness -------------------------------------------------------------

    def add_check(self, name: str, fn: ReadinessCheck) -> None:
        """Register (or replace) the readiness check ``name``."""
        self._checks[name] = fn

    def add_liveness_check(self, name: str, fn: ReadinessCheck) -> None:
        """Register (or replace) the liveness check ``name`` (same contract as readiness)."""
        self._liveness[name] = fn

    def failing_checks(self, *, liveness: bool = False) -> dict[str, str]:
        """The failing checks and why, by name (empty when ready, or alive)."""
        failing: dict[str, str] = {}
        checks = self._liveness if liveness else self._checks
        for name, fn in list(checks.items()):
            try:
                result = fn()
            except Exception as exc:
                log.warning("readiness check %s raised", name, exc_info=True)
                failing[name] = f"raised {type(exc).__name__}: {exc}"
                continue
            if result is True:
                continue
            failing[name] = result if isinstance(result, str) and result else "not ready"
        return failing

    # --- lifecycle -------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port; only once started."""
        if self._port is None:
            raise RuntimeError("HealthServer is not started")
        return self._port

    async def start(self) -> int:
        """Bind and serve; return the bound port."""
        if self._runner is not None:
            raise RuntimeError("HealthServer is already started")
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        # no access log: probes and scrapes every few seconds would drown the operator's log
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self._shutdown_timeout)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        log.info("serving /metrics, /healthz and /readyz on %s:%d", self.host, self._port)
        return self._port

    async def stop(self) -> None:
        """Stop serving and release the port; a no-op when not started."""
        runner, self._runner, self._port = self._runner, None, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- handlers --------------------------------------------------------------

    async def _metrics(self, _: web.Request) -> web.Response:
        # walks every series: off the loop, so a large registry never stalls it
        body = await asyncio.to_thread(exposition, self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        failing = self.failing_checks(liveness=True)
        if not failing:
            return web.Response(text="ok")
        lines = "".join(f"{name}: {why}\n" for name, why in sorted(failing.items()))
        return web.Response(status=503, text="not alive\n" + lines)

    async def _readyz(self, _: web.Request) -> web.Response:
        failing = self.failing_checks()
        if not failing:
            return web.Response(text="ok")
        lines = "".join(f"{name}: {why}\n" for name, why in sorted(failing.items()))
        return web.Response(status=503, text="not ready\n" + lines)
