"""Helpers the fault scenarios share: specs, a CloudWatch feeder, a scripted AWS proxy.

* :func:`web_tier` / :func:`worker_pool` / :func:`cloudwatch`: the documents a
  user applies, with the few fields a scenario varies.
* :class:`Feeder`: publishes a CloudWatch metric into moto as time passes (a
  datapoint is put only once its timestamp has come), from a value function
  the test can swap mid-scenario: steady, flapping, a step, a period that is
  still filling.
* :class:`ScriptedProxy`: the wire-level fault proxy (tests/integration/aws_faults.py)
  plus faults aimed at one resource (a substring of the request) and answers
  rewritten on the way back (a replica that is still ``creating``), run on
  its own event loop in a thread (:class:`ProxyThread`) for the synchronous
  end-to-end tests.
* :class:`CountingProxy`: the scripted proxy, one per operator replica, that
  keeps every request and every Auto Scaling write (group, value, who sent
  it) and can hold one operation's requests until the test releases them.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs

from aiohttp import web

from tests.e2e.conftest import API_VERSION
from tests.integration.aws_faults import HOP_BY_HOP, Fault, FaultProxy, operation_of
from tests.integration.conftest import REGION

T = TypeVar("T")

# --- what the user applies ------------------------------------------------------------

IMMEDIATE = {
    "scaleOut": {"cooldownSeconds": 0, "maxStep": {"units": 100}},
    "scaleIn": {"cooldownSeconds": 0, "stabilizationWindowSeconds": 0, "maxStep": {"units": 100}},
}
"""No cooldown, no window, no rate limit: whatever a rule holds back, it holds back alone."""

WARMUP = 0
"""``spec.warmupSeconds`` of the builders below unless a test says otherwise: moto's
instances are InService the moment they launch and nothing boots, so a warm-up
(180 s by default for a group) would only hold back what a scenario is about."""


def cloudwatch(
    name: str,
    *,
    namespace: str,
    metric: str,
    dimensions: dict[str, str] | None = None,
    statistic: str = "Average",
    period: int = 60,
    target: float = 50,
    target_type: str = "Value",
    stale_after: int | None = None,
) -> dict[str, Any]:
    """One ``spec.metrics[]`` entry read from CloudWatch."""
    source: dict[str, Any] = {
        "namespace": namespace,
        "metricName": metric,
        "statistic": statistic,
        "periodSeconds": period,
    }
    if dimensions:
        source["dimensions"] = [{"name": k, "value": v} for k, v in dimensions.items()]
    out: dict[str, Any] = {
        "name": name,
        "cloudWatch": source,
        "target": {"type": target_type, "value": target},
    }
    if stale_after is not None:
        out["staleAfterSeconds"] = stale_after
    return out


def requests_per_unit(
    dimensions: dict[str, str], *, namespace: str, metric: str, period: int, per_unit: float
) -> dict[str, Any]:
    """The scenarios' load metric: the period's request Sum, ``per_unit`` per instance,
    stale after three periods."""
    return cloudwatch(
        "requests",
        namespace=namespace,
        metric=metric,
        dimensions=dimensions,
        statistic="Sum",
        period=period,
        target=per_unit,
        target_type="AverageValue",
        stale_after=3 * period,
    )


def cpu(group: str, **kw: Any) -> dict[str, Any]:
    """The classic trigger: the group's average CPUUtilization kept at 50 %."""
    return cloudwatch(
        "cpu",
        namespace="AWS/EC2",
        metric="CPUUtilization",
        dimensions={"AutoScalingGroupName": group},
        **kw,
    )


def web_tier(
    namespace: str,
    name: str,
    group: str,
    *,
    metrics: list[dict[str, Any]],
    min_capacity: int = 1,
    max_capacity: int = 20,
    behavior: dict[str, Any] | None = None,
    poll: int = 5,
    warmup: int | None = WARMUP,
    **spec: Any,
) -> dict[str, Any]:
    """A WebTier on an Auto Scaling group; ``warmup`` is ``spec.warmupSeconds`` (see WARMUP)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "WebTier",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "target": {"kind": "AutoScalingGroup", "name": group, "region": REGION},
            "minCapacity": min_capacity,
            "maxCapacity": max_capacity,
            "metrics": metrics,
            "behavior": behavior if behavior is not None else IMMEDIATE,
            "pollIntervalSeconds": poll,
            **_warmup(warmup),
            **spec,
        },
    }


def worker_pool(
    namespace: str,
    name: str,
    group: str,
    queue: str,
    *,
    per_worker: int = 100,
    min_capacity: int = 1,
    max_capacity: int = 20,
    behavior: dict[str, Any] | None = None,
    poll: int = 5,
    warmup: int | None = WARMUP,
    **spec: Any,
) -> dict[str, Any]:
    """A WorkerPool on an Auto Scaling group and a queue; ``warmup`` as for :func:`web_tier`."""
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkerPool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "target": {"kind": "AutoScalingGroup", "name": group, "region": REGION},
            "queue": {"name": queue, "region": REGION, "backlogPerWorker": per_worker},
            "minCapacity": min_capacity,
            "maxCapacity": max_capacity,
            "behavior": behavior if behavior is not None else IMMEDIATE,
            "pollIntervalSeconds": poll,
            **_warmup(warmup),
            **spec,
        },
    }


def _warmup(seconds: int | None) -> dict[str, int]:
    return {} if seconds is None else {"warmupSeconds": seconds}


def direction_changes(values: list[int]) -> int:
    """How often a sequence of capacities turns round (up then down, or down then up)."""
    steps = [b - a for a, b in itertools.pairwise(values) if b != a]
    return sum(1 for a, b in itertools.pairwise(steps) if (a > 0) != (b > 0))


def poll(check: Callable[[], T], *, what: str, timeout: float, every: float = 2.0) -> T:
    """Like ``eventually``, for checks too heavy to repeat five times a second."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:g}s; last: {exc}") from exc
        time.sleep(every)


# --- CloudWatch, published as time passes --------------------------------------------


def put_minutes(
    cloudwatch_client: Any,
    namespace: str,
    metric: str,
    value: float,
    *,
    past: int = 6,
    ahead: int = 10,
) -> None:
    """One datapoint (no dimensions) per minute from ``past`` minutes ago to ``ahead`` on."""
    minute = period_start(time.time(), 60)
    cloudwatch_client.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": metric,
                "Timestamp": datetime.fromtimestamp(minute + 60 * k + 5, UTC),
                "Value": value,
            }
            for k in range(-past, ahead + 1)
        ],
    )


def period_start(t: float, period: int) -> float:
    return math.floor(t / period) * period


class Feeder:
    """Puts one metric's datapoints into moto as their time comes, in a thread.

    Every ``every`` seconds (aligned to the epoch) there is a slot; the
    datapoint of a slot is put once the clock has reached it, with the value
    ``value(slot)`` (the function can be replaced while it runs), stamped
    ``offset`` seconds into the slot. ``backfill`` seconds of past slots are
    put at start, so the first complete periods already have data.
    """

    def __init__(
        self,
        cloudwatch_client: Any,
        *,
        namespace: str,
        metric: str,
        dimensions: dict[str, str],
        every: float,
        value: Callable[[float], float],
        backfill: float = 60.0,
        offset: float = 0.0,
    ) -> None:
        self.client, self.namespace, self.metric = cloudwatch_client, namespace, metric
        self.dimensions = [{"Name": k, "Value": v} for k, v in dimensions.items()]
        self.every, self.value, self.offset = every, value, offset
        self.backfill = backfill
        self.put: list[tuple[float, float]] = []
        """(slot, value) of every datapoint put so far."""
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next = 0.0

    def start(self) -> Feeder:
        self._next = math.floor((time.time() - self.backfill) / self.every) * self.every
        self._catch_up()
        self._thread = threading.Thread(target=self._loop, name="feeder", daemon=True)
        self._thread.start()
        return self

    def _catch_up(self) -> None:
        now = time.time()
        due: list[tuple[float, float]] = []
        while self._next <= now:
            due.append((self._next, float(self.value(self._next))))
            self._next = round(self._next + self.every, 6)
        for i in range(0, len(due), 20):  # botocore gzips bodies over 10 KB; moto cannot read them
            chunk = due[i : i + 20]
            self.client.put_metric_data(
                Namespace=self.namespace,
                MetricData=[
                    {
                        "MetricName": self.metric,
                        "Dimensions": self.dimensions,
                        "Timestamp": datetime.fromtimestamp(slot + self.offset, UTC),
                        "Value": v,
                    }
                    for slot, v in chunk
                ],
            )
            self.put.extend(chunk)

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self._catch_up()
            except Exception as exc:  # keep feeding; the test reports it if it matters
                self.errors.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


# --- AWS through a scripted proxy ----------------------------------------------------

_BODY: ContextVar[bytes] = ContextVar("request_body", default=b"")
_STATUS = re.compile(rb"<DBInstanceStatus>[^<]*</DBInstanceStatus>")
_BLOCK = re.compile(rb"<DBInstance>.*?</DBInstance>", re.DOTALL)
_IDENT = re.compile(rb"<DBInstanceIdentifier>([^<]*)</DBInstanceIdentifier>")


class ScriptedProxy(FaultProxy):
    """The fault proxy, plus faults for one resource and rewritten RDS instance states.

    ``fail_matching`` answers an operation with an AWS error only when the
    request names ``match`` (for example ``AutoScalingGroupName=web-1``): one
    resource's permission is missing, the others' are not. DB instances whose
    identifier starts with one of ``creating`` are reported ``creating`` by
    DescribeDBInstances (moto makes every instance ``available`` at once);
    every other field is moto's own answer.
    """

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.matching: list[tuple[Fault, bytes]] = []
        self.creating: set[str] = set()
        self.rewritten = 0

    def fail_matching(
        self,
        code: str,
        *,
        operation: str,
        match: str,
        status: int = 400,
        seconds: float = 3600.0,
        message: str = "denied",
    ) -> None:
        fault = Fault(operation, code, status, time.monotonic() + seconds, message)
        self.matching.append((fault, match.encode()))

    def calm(self) -> None:
        """End every fault now."""
        now = time.monotonic()
        for fault in [*self.faults, *(f for f, _ in self.matching)]:
            fault.until = min(fault.until, now)

    def _active(self, operation: str) -> Fault | None:
        now, body = time.monotonic(), _BODY.get()
        for fault, needle in self.matching:
            if now < fault.until and fault.operation == operation and needle in body:
                return fault
        return super()._active(operation)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()  # aiohttp keeps it: the proxy reads it again
        _BODY.set(body)  # per request: each one runs in its own task (context)
        response = await super()._handle(request)
        if (
            self.creating
            and operation_of(request, body) == "DescribeDBInstances"
            and isinstance(response, web.Response)
            and response.status == 200
            and isinstance(response.body, bytes)
        ):
            headers = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(
                body=_BLOCK.sub(self._rewrite, response.body),
                status=response.status,
                headers=headers,
            )
        return response

    def _rewrite(self, block: re.Match[bytes]) -> bytes:
        text = block.group(0)
        ident = _IDENT.search(text)
        if ident is None or not ident.group(1).decode().startswith(tuple(self.creating)):
            return text
        self.rewritten += 1
        return _STATUS.sub(b"<DBInstanceStatus>creating</DBInstanceStatus>", text, count=1)


class ProxyThread:
    """A proxy on its own event loop in a daemon thread, for synchronous tests."""

    def __init__(self, proxy: ScriptedProxy) -> None:
        self.proxy = proxy
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> str:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


# --- counting each replica's AWS requests ---------------------------------------------


@dataclass(frozen=True)
class Write:
    """One Auto Scaling write that went through a :class:`CountingProxy` to moto."""

    at: float
    """time.time() when moto's answer came back."""
    proxy: str
    operation: str
    group: str
    desired: int | None
    status: int


class CountingProxy(ScriptedProxy):
    """The scripted proxy, keeping every request (when, which operation, its body) and
    every Auto Scaling write with its group and value; one per operator replica, so
    each write is attributed to the replica that sent it.

    ``hold(operation)`` keeps that operation's requests waiting in the proxy (not yet
    sent to moto) until ``release(operation)``: a network that delays one call.
    """

    WRITES = frozenset({"SetDesiredCapacity", "UpdateAutoScalingGroup"})

    def __init__(self, upstream: str, name: str = "") -> None:
        super().__init__(upstream)
        self.name = name
        self.requests: list[tuple[float, str, str]] = []
        """(time.time() of arrival, operation, request body) of every request."""
        self.done: list[tuple[float, str]] = []
        """(time.time(), operation) of every answer sent back."""
        self.writes: list[Write] = []
        self.holding: set[str] = set()
        self.held: Counter[str] = Counter()
        """Requests that arrived while their operation was held."""

    def hold(self, operation: str) -> None:
        self.holding.add(operation)

    def release(self, operation: str) -> None:
        self.holding.discard(operation)

    def naming(self, *needles: str, since: float = 0.0) -> list[tuple[float, str]]:
        """(time, operation) of the requests since ``since`` whose body names any needle."""
        return [
            (t, op)
            for t, op, body in list(self.requests)
            if t >= since and any(n in body for n in needles)
        ]

    def writes_to(self, group: str, operation: str = "SetDesiredCapacity") -> list[Write]:
        return [w for w in list(self.writes) if w.group == group and w.operation == operation]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        op = operation_of(request, body)
        text = body.decode(errors="replace")
        self.requests.append((time.time(), op, text))
        if op in self.holding:
            self.held[op] += 1
            while op in self.holding:  # bounded by the test, which releases it
                await asyncio.sleep(0.02)
        response = await super()._handle(request)
        self.done.append((time.time(), op))
        if op in self.WRITES:
            form = parse_qs(text)
            desired = form.get("DesiredCapacity", [None])[0]
            self.writes.append(
                Write(
                    time.time(),
                    self.name,
                    op,
                    form.get("AutoScalingGroupName", [""])[0],
                    None if desired is None else int(desired),
                    response.status,
                )
            )
        return response
