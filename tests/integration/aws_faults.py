"""A reverse proxy in front of moto that answers chosen operations with AWS errors.

It speaks the real wire protocols: it forwards requests to moto unchanged and,
while a fault is active, answers with the error document AWS itself sends
(query protocol XML, or JSON with ``__type``), so botocore's retry logic and
our error translation see exactly what they would see from AWS.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "host",
}


@dataclass
class Fault:
    operation: str | None
    """None: every operation."""
    code: str
    status: int
    until: float
    """time.monotonic() deadline."""
    message: str


def operation_of(request: web.Request, body: bytes) -> str:
    target = request.headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    if "/operation/" in request.path:
        return request.path.rsplit("/", 1)[-1]
    if body:
        action = parse_qs(body.decode(errors="replace")).get("Action")
        if action:
            return action[0]
    action = request.query.get("Action")
    return action or "?"


class LoopbackProxy:
    """An HTTP server on a free loopback port in front of ``upstream``, with a client
    session to it; subclasses answer requests in ``_handle``."""

    MAX_BODY = 64 * 1024 * 1024

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.endpoint = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def start(self) -> str:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=self.MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.endpoint = f"http://127.0.0.1:{port}"
        return self.endpoint

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


class FaultProxy(LoopbackProxy):
    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.faults: list[Fault] = []
        self.frozen_until = 0.0
        """time.monotonic() until which every request hangs (an endpoint that stopped answering)."""
        self.received: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.times: list[tuple[float, str]] = []
        self.upstream_seconds: list[tuple[float, str, float]] = []
        """(time.time() sent, operation, seconds upstream took to answer), per forwarded request."""

    def fail(
        self,
        code: str,
        *,
        status: int = 400,
        seconds: float = 3600.0,
        operation: str | None = None,
        message: str = "Rate exceeded",
    ) -> None:
        self.faults.append(Fault(operation, code, status, time.monotonic() + seconds, message))

    def freeze(self, seconds: float) -> None:
        """Stop answering for ``seconds``: requests hang, then go upstream as usual."""
        self.frozen_until = time.monotonic() + seconds

    def thaw(self) -> None:
        self.frozen_until = 0.0

    def _active(self, operation: str) -> Fault | None:
        now = time.monotonic()
        for f in self.faults:
            if now < f.until and f.operation in (None, operation):
                return f
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        op = operation_of(request, body)
        self.received[op] += 1
        self.times.append((time.monotonic(), op))
        while time.monotonic() < self.frozen_until:  # bounded by the freeze
            await asyncio.sleep(0.05)
        fault = self._active(op)
        if fault is not None:
            self.answered[op] += 1
            if request.headers.get("X-Amz-Target") or "json" in request.headers.get(
                "Content-Type", ""
            ):
                return web.json_response(
                    {"__type": fault.code, "message": fault.message},
                    status=fault.status,
                    headers={"x-amzn-query-error": f"{fault.code};Sender"},
                )
            xml = (
                f"<ErrorResponse><Error><Type>Sender</Type><Code>{fault.code}</Code>"
                f"<Message>{fault.message}</Message></Error>"
                "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
            )
            return web.Response(text=xml, status=fault.status, content_type="text/xml")
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        sent, started = time.time(), time.monotonic()
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as upstream:
            payload = await upstream.read()
            self.forwarded[op] += 1
            self.upstream_seconds.append((sent, op, time.monotonic() - started))
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(body=payload, status=upstream.status, headers=out_headers)


class ThreadedFaultProxy:
    """A FaultProxy on its own event loop in a thread, for tests that are not async."""

    def __init__(self, upstream: str) -> None:
        self.proxy = FaultProxy(upstream)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> str:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop)
        return future.result(timeout=10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
