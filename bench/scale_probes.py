"""What `make bench-scale` measures, and how: /proc, Prometheus text, a watch, a proxy.

* :class:`ProcStat`: CPU seconds and RSS of one process from ``/proc/<pid>``
  (``stat`` fields 14-15, ``status`` VmRSS and VmHWM), and the host's busy
  cores from ``/proc/stat`` (the machine is shared: how busy was it?).
* :func:`samples`: the samples of a Prometheus text exposition, by name, with
  their labels (a small scanner: the operator's exposition has tens of
  thousands of lines at 2,000 tiers, and only a few names matter here).
* :class:`ApiServer`: kube-apiserver's own ``/metrics``, as the admin, and
  its ``apiserver_request_total`` writes by kind of object.
* :class:`TierWatch`: a watch on the WebTiers and on the namespace's Events,
  counting every write per tier as it arrives and keeping each tier's
  ``status.lastDecision.time`` (the decision clock when the operator has no
  per-resource decision gauge).
* :class:`CountingProxy`: the fault proxy of the integration tests
  (``tests/integration/aws_faults.py``) without faults, in front of a moto
  server: it counts the operator's AWS calls by operation on moto's side of
  the wire. Its upstream can be switched while it runs (CloudWatch's two moto
  servers take turns, see ``bench/scale.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from tests.integration.aws_faults import ThreadedFaultProxy

CLK_TCK = os.sysconf("SC_CLK_TCK")
GROUP, VERSION = "stackscaler.dev", "v1alpha1"

# --- /proc ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcSample:
    cpu: float
    """CPU seconds (user + system) so far."""
    rss_mb: float
    hwm_mb: float
    """Peak RSS so far (VmHWM)."""


def proc_sample(pid: int) -> ProcSample | None:
    """CPU and memory of ``pid`` now; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, IndexError):
        return None
    cpu = (int(stat[11]) + int(stat[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    kb = {
        k: int(v.split()[0])
        for k, _, v in (line.partition(":") for line in status.splitlines())
        if k in ("VmRSS", "VmHWM")
    }
    return ProcSample(cpu, kb.get("VmRSS", 0) / 1024, kb.get("VmHWM", 0) / 1024)


def host_busy() -> tuple[float, float]:
    """(busy CPU seconds, total CPU seconds) of the whole machine so far."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user..steal; guest is already in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


# --- Prometheus text -----------------------------------------------------------------

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str, names: set[str]) -> Iterator[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample whose name is in ``names``."""
    prefixes = tuple(names)
    for line in text.splitlines():
        if not line.startswith(prefixes):
            continue
        m = _LINE.match(line)
        if m is None or m.group(1) not in names:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        try:
            yield m.group(1), labels, float(m.group(3))
        except ValueError:
            continue


def fetch(url: str, *, timeout: float = 20.0, headers: dict[str, str] | None = None,
          context: ssl.SSLContext | None = None) -> str:  # fmt: skip
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
        return str(resp.read().decode(errors="replace"))


# --- kube-apiserver's own metrics ------------------------------------------------------

READS = frozenset({"GET", "LIST", "WATCH", "CONNECT"})


class ApiServer:
    def __init__(self, server: str, token: str, ca: Path) -> None:
        self.url = server + "/metrics"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.context = ssl.create_default_context(cafile=str(ca))

    def writes(self) -> Counter[str]:
        """Requests that write, so far, by what they wrote.

        ``status`` (stackscaler.dev, the /status subresource), ``spec``
        (stackscaler.dev, the object itself), ``events`` (core or
        events.k8s.io) and ``other`` (the API server's own leases and the like).
        """
        text = fetch(self.url, headers=self.headers, context=self.context)
        out: Counter[str] = Counter()
        for _, labels, value in samples(text, {"apiserver_request_total"}):
            if labels.get("verb", "") in READS:
                continue
            if labels.get("group") == GROUP:
                out["status" if labels.get("subresource") == "status" else "spec"] += int(value)
            elif labels.get("resource") == "events":
                out["events"] += int(value)
            else:
                out["other"] += int(value)
        return out


# --- a watch on the tiers and their Events ---------------------------------------------


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class TierWatch:
    """Counts writes per tier (status and Events) as the watch delivers them."""

    kubeconfig: Path
    namespace: str
    classes: dict[str, str]
    """Tier name -> its class (hot, cold, target)."""
    decided: dict[str, float] = field(default_factory=dict)
    """Tier name -> status.lastDecision.time (epoch seconds), as last seen."""
    log: list[tuple[float, str, str, str]] = field(default_factory=list)
    """(arrival time, tier, class, "status" or "event") of every write seen."""
    relists: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> TierWatch:
        for name, target in (("tiers", self._tiers), ("events", self._events)):
            t = threading.Thread(target=self._run, args=(target,), name=f"watch-{name}")
            t.daemon = True
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def writes_between(self, start: float, end: float) -> Counter[str]:
        """Writes seen in [start, end), by class."""
        with self._lock:
            return Counter(cls for t, _, cls, _ in self.log if start <= t < end)

    def intervals(self, cls: str, since: float = 0.0) -> list[float]:
        """Seconds between consecutive writes of the same tier, for the tiers of ``cls``,
        counting the gaps that end at or after ``since``."""
        last: dict[str, float] = {}
        out = []
        with self._lock:
            for t, name, c, _ in self.log:
                if c != cls:
                    continue
                if name in last and t >= since:
                    out.append(t - last[name])
                last[name] = t
        return out

    def _run(self, body: Callable[[Any], None]) -> None:
        api = config.new_client_from_config(config_file=str(self.kubeconfig))
        try:
            while not self._stop.is_set():  # bounded by stop(); a failed watch is relisted
                try:
                    body(api)
                except Exception as exc:  # the stream ended or failed: list again
                    self.errors.append(repr(exc))
                    self._stop.wait(1.0)
                self.relists += 1
        finally:
            api.close()

    def _tiers(self, api: Any) -> None:
        objects = client.CustomObjectsApi(api)
        listed = objects.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "webtiers")
        for item in listed["items"]:
            self._decision(item)
        w = watch.Watch()
        for ev in w.stream(
            objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            "webtiers",
            resource_version=listed["metadata"]["resourceVersion"],
            timeout_seconds=60,
        ):
            if self._stop.is_set():
                w.stop()
                return
            obj = ev["object"]
            if ev["type"] == "MODIFIED":
                self._record(obj["metadata"]["name"], "status")
            self._decision(obj)

    def _events(self, api: Any) -> None:
        core = client.CoreV1Api(api)
        rv = core.list_namespaced_event(self.namespace, limit=1).metadata.resource_version
        w = watch.Watch()
        for ev in w.stream(
            core.list_namespaced_event, self.namespace, resource_version=rv, timeout_seconds=60
        ):
            if self._stop.is_set():
                w.stop()
                return
            if ev["type"] in ("ADDED", "MODIFIED"):
                self._record(ev["object"].involved_object.name or "", "event")

    def _record(self, name: str, what: str) -> None:
        cls = self.classes.get(name)
        if cls is not None:
            with self._lock:
                self.log.append((time.time(), name, cls, what))

    def _decision(self, obj: dict[str, Any]) -> None:
        when = ((obj.get("status") or {}).get("lastDecision") or {}).get("time")
        if when:
            with contextlib.suppress(ValueError):
                self.decided[obj["metadata"]["name"]] = parse_time(when)


# --- AWS calls counted on moto's side of the wire --------------------------------------


class CountingProxy(ThreadedFaultProxy):
    """The integration tests' fault proxy (no faults) in front of moto, in a thread."""

    def counts(self) -> Counter[str]:
        """Requests moto answered so far, by operation (copied on the proxy's own loop)."""

        async def copy() -> Counter[str]:
            return Counter(self.proxy.forwarded)

        return asyncio.run_coroutine_threadsafe(copy(), self._loop).result(timeout=10)

    def answer_times(self, since: float, until: float) -> dict[str, list[float]]:
        """Seconds moto took to answer, by operation, for requests sent in [since, until)."""

        async def copy() -> dict[str, list[float]]:
            out: dict[str, list[float]] = {}
            for sent, op, seconds in self.proxy.upstream_seconds:
                if since <= sent < until:
                    out.setdefault(op, []).append(seconds)
            return out

        return asyncio.run_coroutine_threadsafe(copy(), self._loop).result(timeout=10)

    def switch(self, upstream: str) -> None:
        """Send further requests to ``upstream``; requests in flight finish where they went."""

        async def set_upstream() -> None:
            self.proxy.upstream = upstream

        asyncio.run_coroutine_threadsafe(set_upstream(), self._loop).result(timeout=10)

    def stop(self) -> None:
        with contextlib.suppress(Exception):  # a proxy that never started, or already gone
            super().stop()
