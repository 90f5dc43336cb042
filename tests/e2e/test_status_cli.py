"""`stackscaler status` against the real control plane, reading what the real operator wrote.

The operator (`stackscaler run`, on moto) reconciles a WebTier, a WorkerPool
and a CachePool; `stackscaler status` runs as a subprocess with the test's
kubeconfig, piped (plain text), with --json, on a pseudo-terminal (colors),
and with --watch, which must show the change a pause annotation makes. Then
the errors: no kubeconfig, an identity without the right RBAC, a kind the
API server does not serve; and a status full of control and bidi characters,
written through /status as anyone with that right could.

Every wait is bounded; nothing asserts on elapsed time.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from stackscaler.devtools import controlplane as cp
from stackscaler.devtools.controlplane import ControlPlane
from stackscaler.kube import KubeStatus
from stackscaler.reconcile import Ref
from stackscaler.text import UNSAFE
from tests.conftest import example
from tests.e2e.conftest import (
    API_VERSION,
    STACKSCALER,
    WAIT,
    Aws,
    Kube,
    condition,
    eventually,
    parse_time,
    suffix,
)
from tests.integration.conftest import REGION
from tests.integration.rbac import client_as_role

pytestmark = pytest.mark.controlplane

SGR = re.compile(r"\x1b\[[0-9;]*m")
SCALE_IN_COOLDOWN, SCALE_IN_WINDOW = 600, 900


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "NO_COLOR", "TERM")}
    env.update(extra)
    return env


def status_cli(
    kubeconfig: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`stackscaler status ARGS` with the test's kubeconfig, output piped."""
    return subprocess.run(
        [str(STACKSCALER), "status", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=env or _env(),
        check=False,
    )


def on_terminal(kubeconfig: Path, *args: str, env: dict[str, str]) -> tuple[int, str]:
    """`stackscaler status ARGS` with its stdout on a pseudo-terminal: (exit code, output)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [str(STACKSCALER), "status", "--kubeconfig", str(kubeconfig), *args],
        stdout=slave,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + WAIT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        return proc.wait(timeout=10), b"".join(chunks).decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


class Watcher:
    """A `stackscaler status --watch` subprocess whose output lines are read as they come."""

    def __init__(self, kubeconfig: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(STACKSCALER), "status", "--kubeconfig", str(kubeconfig), "--watch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=_env(),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, check: Callable[[list[str]], bool], *, what: str) -> list[str]:
        """Read lines until ``check(every line so far)``; bounded by WAIT."""
        deadline = time.monotonic() + WAIT
        while not check(self.seen):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{what}: not within {WAIT:g}s; output: {self.seen[-40:]}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"{what}: the watch ended ({err}); output: {self.seen}")
            self.seen.append(line)
        return self.seen

    def interrupt(self) -> int:
        """Ctrl-C, and the exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=WAIT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def watchers() -> Iterator[Callable[..., Watcher]]:
    started: list[Watcher] = []

    def start(kubeconfig: Path, *args: str) -> Watcher:
        started.append(Watcher(kubeconfig, *args))
        return started[-1]

    try:
        yield start
    finally:
        for w in started:
            w.close()


def _stack(aws: Aws, kube: Kube, namespace: str) -> str:
    """A WebTier held at max by CPU, an idle WorkerPool, a CachePool whose metric is
    unknown; returns the web tier's group."""
    group, workers, queue_name, cache = (
        f"web-{suffix()}",
        f"workers-{suffix()}",
        f"jobs-{suffix()}",
        f"sessions-{suffix()}",
    )
    aws.group_with_template(group, desired=2, max_size=50)
    aws.cpu(group, 90.0)  # target 50: 2 -> 4 -> 8 (max)
    aws.group_with_template(workers, desired=0, max_size=20)
    aws.queue(queue_name)
    aws.replication_group(cache, replicas=1)

    web = example("WebTier")
    web["metadata"]["namespace"] = namespace
    spec = web["spec"]
    spec["target"]["name"] = group
    spec["metrics"] = spec["metrics"][:1]  # CPU only
    spec["metrics"][0]["cloudWatch"]["dimensions"][0]["value"] = group
    del spec["schedules"]
    spec["maxCapacity"] = 8
    spec["pollIntervalSeconds"] = 5
    spec["warmupSeconds"] = 0  # moto's instances serve at once
    spec["behavior"] = {
        "scaleOut": {"cooldownSeconds": 0, "maxStep": {"units": 10}},
        "scaleIn": {
            "cooldownSeconds": SCALE_IN_COOLDOWN,
            "stabilizationWindowSeconds": SCALE_IN_WINDOW,
        },
    }
    pool = {
        "apiVersion": API_VERSION,
        "kind": "WorkerPool",
        "metadata": {"name": "workers", "namespace": namespace},
        "spec": {
            "target": {"kind": "AutoScalingGroup", "name": workers, "region": REGION},
            "queue": {"name": queue_name, "region": REGION, "backlogPerWorker": 100},
            "minCapacity": 0,
            "maxCapacity": 20,
            "pollIntervalSeconds": 5,
        },
    }
    sessions = {
        "apiVersion": API_VERSION,
        "kind": "CachePool",
        "metadata": {"name": "sessions", "namespace": namespace},
        "spec": {
            "target": {"kind": "ReplicationGroup", "name": cache, "region": REGION},
            "minCapacity": 1,
            "maxCapacity": 5,
            "pollIntervalSeconds": 5,
            "warmupSeconds": 0,  # moto's replica is available at once
            "metrics": [
                {
                    "name": "engine-cpu",  # moto has no datapoints: unknown, never 0
                    "cloudWatch": {
                        "namespace": "AWS/ElastiCache",
                        "metricName": "EngineCPUUtilization",
                        "dimensions": [{"name": "CacheClusterId", "value": f"{cache}-001"}],
                    },
                    "target": {"value": 60},
                }
            ],
        },
    }
    kube.apply(web, pool, sessions)
    return group


def _stabilization_until(status: dict[str, Any], level: int) -> str:
    """What the policy's window says: the newest entry of ``level`` or more, plus the window."""
    newest = max(parse_time(t) for t, v in status["history"]["scaleInWindow"] if v >= level)
    return _rfc3339(newest + SCALE_IN_WINDOW)


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def test_status_shows_what_the_operator_wrote_plain_json_color_and_watch(
    aws: Aws, kube: Kube, operator: Any, namespace: str, watchers: Callable[..., Watcher]
) -> None:
    group = _stack(aws, kube, namespace)
    op = operator(namespace)
    kubeconfig = kube.kubectl.kubeconfig

    def settled() -> dict[str, dict[str, Any]]:
        web = kube.status("WebTier", namespace, "web")
        limited = condition(web, "ScalingLimited")
        assert (limited["status"], limited["reason"]) == ("True", "MaxCapacity"), limited
        assert (web["currentCapacity"], web["desiredCapacity"]) == (8, 8)
        out = {"web": web}
        for kind, name in (("WorkerPool", "workers"), ("CachePool", "sessions")):
            st = kube.status(kind, namespace, name)
            assert condition(st, "Ready")["status"] == "True", (kind, st.get("conditions"))
            out[name] = st
        assert condition(out["sessions"], "MetricsAvailable")["status"] == "False"
        return out

    before = eventually(settled, what="web at max, workers and sessions reconciled")
    assert aws.desired(group) == 8

    # --- piped: plain text, a summary line per resource, then the details
    plain = status_cli(kubeconfig, "-n", namespace)
    assert plain.returncode == 0, plain.stderr
    assert "\x1b" not in plain.stdout  # a pipe gets no colors
    lines = plain.stdout.splitlines()
    assert lines[0].split() == [
        "KIND",
        "NAME",
        "CURRENT",
        "DESIRED",
        "STARTING",
        "READY",
        "LIMITED",
        "BY",
        "NEXT",
        "SCALE-IN",
    ]
    rows = {ln.split()[0]: ln.split() for ln in lines[1:4]}
    assert list(rows) == ["WebTier", "WorkerPool", "CachePool"]  # the story's order
    assert rows["WebTier"][:7] == ["WebTier", "web", "8", "8", "0", "True", "maxCapacity"]
    assert rows["WebTier"][7] == "in"  # the window and the cooldown still run
    assert rows["WorkerPool"][:6] == ["WorkerPool", "workers", "0", "0", "0", "True"]
    assert rows["WorkerPool"][-3:] == ["at", "min", "0"]
    # moto's replica is read as starting (DescribeCacheClusters does not know it): the
    # column says what the operator wrote
    starting = str(before["sessions"]["startingCapacity"])
    assert rows["CachePool"][:6] == ["CachePool", "sessions", "1", "1", starting, "True"]
    assert rows["CachePool"][-3:] == ["at", "min", "1"]
    text = plain.stdout
    assert f"WebTier {namespace}/web" in lines
    assert f"AutoScalingGroup {group}, min 2, max 8, mode Active" in text
    assert "current 8, desired 8, starting 0, leaving 0, applied 8" in text
    assert "hold 8, limited by maxCapacity" in text
    assert "- capped at maxCapacity 8" in text  # a reason kubectl get cannot show
    assert "cpu 90 (target 50) -> 15 [Known]" in text
    assert re.search(r"MetricsAvailable +False +MetricsUnknown: engine-cpu: ", text)
    assert re.search(r"ScalingLimited +True +MaxCapacity", text)
    assert "scale-in   none: at the minimum capacity 0" in text

    # --- --json: the same, for programs
    answer = status_cli(kubeconfig, "-n", namespace, "--json")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.isascii()
    doc = json.loads(answer.stdout)
    after = settled()
    items = {i["name"]: i for i in doc["items"]}
    assert [i["kind"] for i in doc["items"]] == ["WebTier", "WorkerPool", "CachePool"]
    web = items["web"]
    assert web["capacity"] == {
        "current": 8,
        "desired": 8,
        "starting": 0,
        "leaving": 0,
        "applied": 8,
    }
    assert web["lastDecision"]["limitedBy"] == "maxCapacity"
    assert web["lastDecision"]["reasons"] in (
        before["web"]["lastDecision"]["reasons"],
        after["web"]["lastDecision"]["reasons"],
    )
    assert {c["type"]: c["status"] for c in web["conditions"]} == {
        c["type"]: c["status"] for c in after["web"]["conditions"]
    }
    # the next scale-in, from the status's own history: cooldown from the last scale-out,
    # the window from its newest recommendation of 8 or more
    scale_in = web["scaleIn"]
    last_out = parse_time(after["web"]["lastScaleOutTime"])
    assert scale_in["state"] == "Waiting"
    assert scale_in["waitingFor"] == ["scaleInStabilization", "scaleInCooldown"]
    assert scale_in["cooldownUntil"] == _rfc3339(last_out + SCALE_IN_COOLDOWN)
    assert scale_in["stabilizationUntil"] in (
        _stabilization_until(before["web"], 8),
        _stabilization_until(after["web"], 8),
    )
    assert scale_in["allowedAt"] == scale_in["stabilizationUntil"]  # the later of the two
    assert 0 < scale_in["secondsLeft"] <= SCALE_IN_WINDOW
    assert scale_in["recommended"] is False  # CPU asks for more, not less
    assert items["workers"]["scaleIn"]["state"] == "AtMinimum"
    for name in ("workers", "sessions"):
        written = after[name]
        assert items[name]["capacity"] == {
            "current": written["currentCapacity"],
            "desired": written["desiredCapacity"],
            "starting": written["startingCapacity"],
            "leaving": written["leavingCapacity"],
            "applied": written["appliedCapacity"],
        }
    sessions = {c["type"]: c for c in items["sessions"]["conditions"]}
    assert sessions["MetricsAvailable"]["reason"] == "MetricsUnknown"
    assert items["sessions"]["lastDecision"]["metrics"][0]["state"] != "Known"

    # --- one NAME only; a name that is not there
    one = status_cli(kubeconfig, "-n", namespace, "web", "--json")
    assert [i["name"] for i in json.loads(one.stdout)["items"]] == ["web"]
    nothing = status_cli(kubeconfig, "-n", namespace, "no-such-tier")
    assert nothing.returncode == 1 and nothing.stdout == ""
    assert f"no stackscaler resource named 'no-such-tier' in namespace {namespace}" in (
        nothing.stderr
    )

    # --- every namespace: a NAMESPACE column, and this namespace's resources among them
    everywhere = status_cli(kubeconfig, "-A")
    assert everywhere.returncode == 0, everywhere.stderr
    assert everywhere.stdout.split()[:3] == ["NAMESPACE", "KIND", "NAME"]
    mine = [ln.split()[:3] for ln in everywhere.stdout.splitlines() if ln.startswith(namespace)]
    assert mine == [
        [namespace, "WebTier", "web"],
        [namespace, "WorkerPool", "workers"],
        [namespace, "CachePool", "sessions"],
    ]

    # --- on a terminal: colors, unless NO_COLOR
    code, shown = on_terminal(kubeconfig, "-n", namespace, env=_env(TERM="xterm"))
    assert code == 0
    assert "\x1b[32mTrue" in shown  # Ready in green
    uncolored = SGR.sub("", shown).replace("\r\n", "\n")
    table = [ln.split()[:7] for ln in uncolored.splitlines()[:4]]
    assert table == [ln.split()[:7] for ln in lines[:4]]  # the same table, colored
    assert "- capped at maxCapacity 8" in uncolored
    code, shown = on_terminal(kubeconfig, "-n", namespace, env=_env(TERM="xterm", NO_COLOR="1"))
    assert code == 0 and "\x1b[" not in shown and "maxCapacity" in shown

    # --- --watch: the change a pause annotation makes is shown; Ctrl-C ends it
    piped = watchers(kubeconfig, "-n", namespace, "web")
    as_json = watchers(kubeconfig, "-n", namespace, "--json")
    piped.until(lambda seen: any(ln.startswith("  scale-in") for ln in seen), what="first frame")
    as_json.until(lambda seen: len(seen) >= 1, what="first document")
    first = json.loads(as_json.seen[0])
    assert {i["name"] for i in first["items"]} == {"web", "workers", "sessions"}
    assert not any(re.search(r"Paused +True", ln) for ln in piped.seen)

    kube.annotate("WebTier", namespace, "web", "stackscaler.dev/paused", "true")

    def paused_shown(seen: list[str]) -> bool:
        return any(re.search(r"Paused +True +PausedByAnnotation", ln) for ln in seen)

    shown_lines = piped.until(paused_shown, what="the watch showing Paused")
    frames = [i for i, ln in enumerate(shown_lines) if ln == f"WebTier {namespace}/web"]
    assert len(frames) >= 2, shown_lines  # the first frame, then the resource again
    assert "WorkerPool" not in "\n".join(shown_lines)  # NAME filters the watch too

    def json_paused(seen: list[str]) -> bool:
        for ln in seen[1:]:
            web_now = next(i for i in json.loads(ln)["items"] if i["name"] == "web")
            if any(c["type"] == "Paused" and c["status"] == "True" for c in web_now["conditions"]):
                return True
        return False

    as_json.until(json_paused, what="a JSON document with web paused")
    assert piped.interrupt() == 130
    assert as_json.interrupt() == 130

    # --- --timeout ends a watch by itself
    bounded = status_cli(kubeconfig, "-n", namespace, "--watch", "--timeout", "1")
    assert bounded.returncode == 0, bounded.stderr
    assert f"WebTier {namespace}/web" in bounded.stdout
    assert not op.problems()


def _kubeconfig_for(plane: ControlPlane, api: client.ApiClient, namespace: str, path: Path) -> Path:
    token = str(api.configuration.api_key["authorization"]).removeprefix("Bearer ")
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": plane.server,
                            "certificate-authority": str(plane.ca_file),
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [
                    {"name": "x", "context": {"cluster": "c", "user": "u", "namespace": namespace}}
                ],
                "current-context": "x",
            }
        )
    )
    return path


PLURALS = ["webtiers", "workerpools", "readreplicapools", "cachepools", "tablecapacities"]


def test_errors_no_kubeconfig_and_an_identity_without_the_rights(
    api_client: client.ApiClient, controlplane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    missing = status_cli(tmp_path / "no-such-kubeconfig")
    assert missing.returncode == 1
    assert missing.stderr.startswith("stackscaler: no Kubernetes configuration"), missing.stderr

    # an identity that may read pods only; its kubeconfig's context names the namespace
    nobody = client_as_role(
        api_client,
        controlplane,
        namespace,
        "nobody",
        [client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"])],
    )
    denied = status_cli(_kubeconfig_for(controlplane, nobody, namespace, tmp_path / "nobody"))
    assert denied.returncode == 1
    assert (
        f"stackscaler: forbidden to list webtiers.stackscaler.dev in namespace {namespace}"
        in denied.stderr
    ), denied.stderr
    assert "get, list and watch" in denied.stderr and denied.stdout == ""

    # list but not watch: a plain status works, a watch says what it lacks
    lister = client_as_role(
        api_client,
        controlplane,
        namespace,
        "lister",
        [
            client.V1PolicyRule(
                api_groups=["stackscaler.dev"], resources=PLURALS, verbs=["get", "list"]
            )
        ],
    )
    config = _kubeconfig_for(controlplane, lister, namespace, tmp_path / "lister")
    listed = status_cli(config)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == f"No stackscaler resources in namespace {namespace}.\n"
    watched = status_cli(config, "--watch", "--timeout", "30")
    assert watched.returncode == 1
    assert "forbidden to watch" in watched.stderr, watched.stderr

    # a reader that went away (| head): no traceback, exit 141
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        gone = subprocess.run(
            [str(STACKSCALER), "status", "--kubeconfig", str(config)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=WAIT,
            env=_env(),
            check=False,
        )
    finally:
        os.close(write_end)
    assert (gone.returncode, gone.stderr) == (141, "")


def test_a_cluster_without_the_crds(controlplane: ControlPlane, tmp_path: Path) -> None:
    """A second, bare control plane (no CRDs installed): the error names every kind."""
    bare = cp.start(
        tmp_path / "bare", binaries=cp.find_binaries(), crds=False, die_with_parent=True
    )
    try:
        answer = status_cli(bare.kubeconfig, "-A")
    finally:
        cp.stop(tmp_path / "bare")
    assert answer.returncode == 1 and answer.stdout == ""
    kinds = ", ".join(f"{p}.stackscaler.dev" for p in PLURALS)
    assert f"does not serve {kinds} (v1alpha1): the stackscaler CRDs are not installed" in (
        answer.stderr
    ), answer.stderr


HOSTILE = "x\x1b[2J\x1b]0;owned\x07\u202eevil\ny\u200b"


def test_a_hostile_status_is_printed_escaped(
    kube: Kube, namespace: str, api_client: client.ApiClient, controlplane: ControlPlane
) -> None:
    web = example("WebTier")
    web["metadata"]["namespace"] = namespace
    del web["spec"]["schedules"]
    kube.apply(web)
    uid = kube.get("WebTier", namespace, "web")["metadata"]["uid"]
    status = {
        "currentCapacity": 3,
        "desiredCapacity": 4,
        "lastDecision": {
            "time": "2026-11-27T12:00:00Z",
            "direction": "Out",
            "limitedBy": HOSTILE,
            "reasons": [HOSTILE, "cpu: 80 vs target 50 -> 4"],
            "metrics": [{"name": HOSTILE, "state": "Known", "value": 80, "target": 50}],
        },
        "conditions": [
            {"type": "Ready", "status": "True", "reason": HOSTILE, "message": HOSTILE * 4},
            {"type": HOSTILE, "status": "False", "reason": "X", "message": HOSTILE},
        ],
        "history": {"version": 1, "scaleInWindow": [["2026-11-27T12:00:00Z", 3]]},
    }
    with ThreadPoolExecutor(1) as pool:  # the operator's own status writer (/status)
        writer = KubeStatus(api_client, pool)
        asyncio.run(writer.write(Ref("WebTier", namespace, "web", uid), status))

    plain = status_cli(controlplane.kubeconfig, "-n", namespace, "--color", "always")
    assert plain.returncode == 0, plain.stderr
    shown = SGR.sub("", plain.stdout)
    for line in shown.splitlines():
        assert not UNSAFE.search(line), repr(line)
    assert "x\\x1b[2J\\x1b]0;owned\\x07\\u202eevil\\ny\\u200b" in shown
    answer = status_cli(controlplane.kubeconfig, "-n", namespace, "--json")
    assert answer.stdout.isascii()
    item = json.loads(answer.stdout)["items"][0]
    assert item["lastDecision"]["reasons"][0] == HOSTILE  # exact, JSON-escaped
    assert item["conditions"][0]["reason"] == HOSTILE
