"""Upgrading the chart: ``helm upgrade`` from an earlier commit's chart with resources in place.

The earlier chart is kept under ``tests/packaging/upgrade/chart-3a2f58b/`` (see the
README there): the chart of commit 3a2f58b, before ``spec.warmupSeconds`` and before
Leases. On a control plane of its own (the old CRDs must not reach the session's
shared API server), the test

1. ``helm install``s that chart and runs the operator its Deployment describes (there
   is no kubelet: the test runs the process, with the Deployment's arguments and
   environment, under a token of the chart's ServiceAccount), from the operator code of
   the same commit when the clone has it;
2. lets a WebTier and a WorkerPool scale out (1 -> 4 each), then makes the WebTier need
   8 inside its scale-out cooldown and empties the WorkerPool's queue inside its
   scale-in stabilization window;
3. ``helm upgrade``s to the working tree's chart, and shows: the CRDs were updated
   (``spec.warmupSeconds``, refused by the old schema, is accepted), the resources and
   their status are intact, the new operator (started, as the new Deployment's rolling
   update does, before the old one gets SIGTERM) neither scales within the old
   operator's cooldown and window nor later than at its first tick after them, exactly
   one SetDesiredCapacity reaches AWS per decision, and no resource missed a tick
   across the handover by more than one interval beyond the operator's restart (from
   the old process' SIGTERM to the new one taking the shard, from its log);
4. ``helm uninstall``s: the CRDs and the resources stay (``helm.sh/resource-policy:
   keep``).

The measured handover (overlap of the two processes, each resource's last tick by the
old one and first by the new one) is printed. A second test checks the documented way to
cross the Lease change without two operators at once: the old Deployment scaled to 0,
then ``helm upgrade``, which sets its replicas back.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import yaml
from aiohttp import web
from kubernetes import client, config
from prometheus_client.parser import text_string_to_metric_families

from stackscaler.devtools import controlplane as cp
from stackscaler.devtools.controlplane import exit_with_parent
from stackscaler.policy.history import parse_time
from tests.integration import conftest as integration
from tests.integration.aws_faults import FaultProxy, ThreadedFaultProxy, operation_of
from tests.integration.conftest import REGION, Kubectl
from tests.integration.netutil import free_port
from tests.packaging import test_chart
from tests.packaging.logcheck import denied_lines
from tests.packaging.test_chart import (
    CHART,
    ROOT,
    STACKSCALER,
    Helm,
    _put_load,
    _stop,
    _tail,
    _token_kubeconfig,
    eventually,
    pod_env,
)

# the fixtures these tests use (pytest finds them as module attributes)
helm = test_chart.helm
moto_server = integration.moto_server
aws_env = integration.aws_env
moto = integration.moto
boto = integration.boto

OLD_COMMIT = "3a2f58b9d0b5780abbfe450767a4748cf0b2833a"
OLD_CHART = Path(__file__).parent / "upgrade" / f"chart-{OLD_COMMIT[:7]}"
KINDS = ("webtiers", "workerpools", "readreplicapools", "cachepools")
GROUP, VERSION = "stackscaler.dev", "v1alpha1"
RELEASE = RELEASE_NS = "stackscaler"
"""Release and namespace: the documented install (fullname and ServiceAccount "stackscaler")."""
POLL_SECONDS = 5
HOLD_SECONDS = 75
"""The WebTier's scale-out cooldown and the WorkerPool's scale-in stabilization window:
long enough for the upgrade and the new operator's start to fall inside them (those took
6 s and 13.5 s at most in seven runs on a busy 2-core machine)."""
SCRAPE = 0.1


# --- a control plane of the test's own -------------------------------------------------


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[cp.ControlPlane]:
    """kube-apiserver + etcd without any CRD: the old chart installs its own CRDs, which
    must not replace the ones the session's other tests use."""
    try:
        binaries = cp.build(log=print)
    except cp.ControlPlaneUnavailable as exc:
        integration._unavailable(str(exc))
    if shutil.which("kubectl") is None:
        integration._unavailable("kubectl is not installed")
    directory = tmp_path / "plane"
    started = cp.start(directory, binaries=binaries, crds=False, die_with_parent=True)
    try:
        yield started
    finally:
        cp.stop(directory)


# --- the earlier operator's code ---------------------------------------------------------


def _commit_in_clone(commit: str) -> bool:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        return False
    found = subprocess.run(
        [git, "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    return found.returncode == 0


def _archive(commit: str, path: str) -> tarfile.TarFile:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, path],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return tarfile.open(fileobj=io.BytesIO(out.stdout))


def old_operator_code(into: Path) -> tuple[Path, str]:
    """The source root to put on PYTHONPATH for the old release's operator, and what it is."""
    if not _commit_in_clone(OLD_COMMIT):
        note = (
            f"commit {OLD_COMMIT[:7]} is not in this clone: the old release runs the "
            "working tree's operator with the old chart's arguments"
        )
        warnings.warn(note, stacklevel=2)
        print(note)
        return ROOT / "operator", "the working tree's operator (fallback)"
    with _archive(OLD_COMMIT, "operator") as tar:
        tar.extractall(into, filter="data")
    return into / "operator", f"the operator code of {OLD_COMMIT[:7]}"


# --- AWS: which group each SetDesiredCapacity was for ----------------------------------


class ScaleLog(FaultProxy):
    """The wire proxy in front of moto, noting every SetDesiredCapacity's group and capacity."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.writes: list[tuple[float, str, int]] = []
        """(time.time(), AutoScalingGroupName, DesiredCapacity) of every SetDesiredCapacity."""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()  # aiohttp keeps it for the proxy's own read
        if operation_of(request, body) == "SetDesiredCapacity":
            if request.headers.get("X-Amz-Target"):
                params = json.loads(body)
                group, capacity = params["AutoScalingGroupName"], params["DesiredCapacity"]
            else:
                query = parse_qs(body.decode())
                group, capacity = query["AutoScalingGroupName"][0], query["DesiredCapacity"][0]
            self.writes.append((time.time(), str(group), int(capacity)))
        return await super()._handle(request)

    def capacities(self, group: str) -> list[int]:
        return [c for _, g, c in self.writes if g == group]


# --- the operator processes and their ticks -------------------------------------------


@dataclass
class Operator:
    """One ``stackscaler run`` process as a pod of the Deployment would run it."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    ready_at: float = 0.0
    stopping: bool = False
    signalled_at: float | None = None
    exited_at: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def stop(self) -> None:
        """SIGTERM, as the kubelet sends it when the Deployment removes the pod."""
        self.stopping = True
        if self.signalled_at is None:
            self.signalled_at = time.time()
        _stop(self.proc)
        if self.exited_at is None:
            self.exited_at = time.time()

    def records(self) -> list[dict[str, Any]]:
        """The JSON records of its log (lines that are not JSON are left out)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def logged(self, prefix: str) -> float | None:
        """When the process first logged a message starting with ``prefix``."""
        for record in self.records():
            if str(record.get("message", "")).startswith(prefix):
                return parse_time(record["time"])
        return None

    def logged_times(self, part: str) -> list[float]:
        """When the process logged a message containing ``part``."""
        return [parse_time(r["time"]) for r in self.records() if part in str(r.get("message", ""))]


def start_operator(
    name: str, container: dict[str, Any], env: dict[str, str], kubeconfig: Path, workdir: Path
) -> Operator:
    """The container's command and args (the chart's), pointed at the test's API server and
    a loopback port; returns once /readyz answers 200."""
    command = container["command"]
    assert command[0] == "stackscaler", command
    port = free_port()
    log = workdir / f"{name}.log"
    argv = [
        str(STACKSCALER),
        *command[1:],
        *container["args"],
        "--kubeconfig",
        str(kubeconfig),
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(port),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=exit_with_parent,  # noqa: PLW1509 - only prctl, no locks
        )
    op = Operator(name, proc, port, log)

    def ready() -> None:
        assert proc.poll() is None, f"{name} exited {proc.returncode}:\n{_tail(log)}"
        try:
            with urllib.request.urlopen(op.url + "/readyz", timeout=2) as resp:
                assert resp.status == 200
        except (urllib.error.URLError, OSError) as exc:
            raise AssertionError(f"/readyz: {exc}") from exc

    eventually(ready, what=f"{name}: /readyz")
    op.ready_at = time.time()
    return op


Ref = tuple[str, str, str]
"""(kind, namespace, name) as the operator's series label a resource."""


@dataclass
class TickWatch:
    """Scrapes each operator's /metrics in a thread and keeps, per resource, when each of
    its decisions was seen (the per-resource decisions counter, which both versions export)
    and, where the version exports it, each decision's own time
    (``stackscaler_last_decision_timestamp_seconds``)."""

    refs: tuple[Ref, ...]
    seen: dict[Ref, list[tuple[float, str]]] = field(default_factory=dict)
    """(time.time() when seen, operator name) per decision."""
    decided: dict[tuple[str, Ref], list[float]] = field(default_factory=dict)
    """Every decision time an operator reported, per (operator name, resource)."""
    limited: dict[tuple[str, Ref], dict[str, float]] = field(default_factory=dict)
    """Decisions so far per limited_by, per (operator name, resource)."""
    errors: list[str] = field(default_factory=list)
    _ops: list[Operator] = field(default_factory=list)
    _counts: dict[tuple[str, Ref], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def watch(self, op: Operator) -> None:
        with self._lock:
            self._ops.append(op)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tick-watch", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                ops = [op for op in self._ops if op.proc.poll() is None]
            for op in ops:
                try:
                    self._scrape(op, op.metrics())
                except (OSError, ValueError) as exc:
                    if not op.stopping:  # a process shutting down stops answering
                        self.errors.append(f"{op.name}: {exc!r}")
            self._stop.wait(SCRAPE)

    def _scrape(self, op: Operator, text: str) -> None:
        now = time.time()
        counts: dict[Ref, float] = {}
        limited: dict[Ref, dict[str, float]] = {}
        at: dict[Ref, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = s.labels
                ref = (labels.get("kind", ""), labels.get("namespace", ""), labels.get("name", ""))
                if ref not in self.refs:
                    continue
                if s.name == "stackscaler_decisions_total":
                    counts[ref] = counts.get(ref, 0.0) + s.value
                    by = limited.setdefault(ref, {})
                    by[labels["limited_by"]] = by.get(labels["limited_by"], 0.0) + s.value
                elif s.name == "stackscaler_last_decision_timestamp_seconds":
                    at[ref] = s.value
        with self._lock:
            for ref, count in counts.items():
                new = int(count - self._counts.get((op.name, ref), 0.0))
                self._counts[(op.name, ref)] = count
                self.seen.setdefault(ref, []).extend([(now, op.name)] * new)
                self.limited[(op.name, ref)] = limited[ref]
            for ref, moment in at.items():
                times = self.decided.setdefault((op.name, ref), [])
                if not times or times[-1] != moment:
                    times.append(moment)

    def ticks(self, ref: Ref) -> list[tuple[float, str]]:
        with self._lock:
            return sorted(self.seen.get(ref, []))

    def decisions(self, op: str, ref: Ref) -> list[float]:
        with self._lock:
            return list(self.decided.get((op, ref), []))

    def limited_by(self, op: str, ref: Ref, limit: str) -> int:
        with self._lock:
            return int(self.limited.get((op, ref), {}).get(limit, 0))


def missed_slots(ticks: list[float], interval: float) -> int:
    """The most poll slots that passed without a tick between two consecutive ticks."""
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    return max((round(g / interval) - 1 for g in gaps), default=0)


# --- the resources -------------------------------------------------------------------


def _get(objects: client.CustomObjectsApi, ns: str, plural: str, name: str) -> dict[str, Any]:
    return objects.get_namespaced_custom_object(  # type: ignore[no-any-return]
        GROUP, VERSION, ns, plural, name
    )


def _paths(node: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON document (list items under ``[]``)."""
    out: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            out.add(f"{prefix}.{key}")
            out |= _paths(value, f"{prefix}.{key}")
    elif isinstance(node, list):
        for item in node:
            out |= _paths(item, f"{prefix}[]")
    return out


def _material(status: dict[str, Any]) -> dict[str, Any]:
    """What no tick changes while nothing scales: capacities, the scale times, the cooldown
    and rate-limit memory, the scale-in window's maximum, the conditions' states."""
    history = status.get("history") or {}
    return {
        "capacities": [status.get(k) for k in ("currentCapacity", "appliedCapacity")],
        "scaled": [status.get(k) for k in ("lastScaleTime", "lastScaleOutTime")],
        "history": [history.get(k) for k in ("version", "lastScaleOut", "lastScaleIn", "events")],
        "windowMax": [v for _, v in (history.get("scaleInWindow") or [])[:1]],
        "conditions": {
            c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or []
        },
    }


def _served_spec_fields(ext: client.ApiextensionsV1Api, plural: str) -> set[str]:
    crd = ext.read_custom_resource_definition(f"{plural}.{GROUP}")
    schema = crd.spec.versions[0].schema.open_apiv3_schema
    return set(schema.properties["spec"].properties)


def _events(core: client.CoreV1Api, ns: str, name: str, reason: str) -> list[str]:
    listed = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}")
    return sorted(e.message.split(":")[0] for e in listed.items if e.reason == reason)


def _create_namespace(core: client.CoreV1Api, name: str) -> str:
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def _live_container(apps: client.AppsV1Api, api: client.ApiClient) -> dict[str, Any]:
    deploy = apps.read_namespaced_deployment(RELEASE, RELEASE_NS)
    containers = api.sanitize_for_serialization(deploy.spec.template.spec.containers)
    assert len(containers) == 1, containers
    return dict(containers[0])


def _with_warmup(doc: dict[str, Any]) -> str:
    out = json.loads(json.dumps(doc))
    out["spec"]["warmupSeconds"] = 0
    return yaml.safe_dump(out)


# --- the stored chart --------------------------------------------------------------


def test_the_upgrade_crosses_a_crd_change() -> None:
    """The stored chart's CRDs lack spec.warmupSeconds, the working tree's have it: the
    upgrade test replaces a schema, not an identical one."""
    for kind in KINDS:
        name = f"stackscaler.dev_{kind}.yaml"
        old = (OLD_CHART / "templates" / "crds" / name).read_text()
        new = (CHART / "templates" / "crds" / name).read_text()
        assert "warmupSeconds:" not in old, name
        assert "warmupSeconds:" in new, name
    # the stackscaler CRDs are templates in both (so helm upgrade applies them); the old
    # chart also has Helm's crds/ folder (kopf's peering CRDs), which helm never upgrades
    assert (OLD_CHART / "crds" / "kopf.dev_peerings.yaml").is_file()
    assert not (CHART / "crds").exists()


def test_the_stored_chart_is_the_chart_of_that_commit(tmp_path: Path) -> None:
    if not _commit_in_clone(OLD_COMMIT):
        pytest.skip(f"commit {OLD_COMMIT[:7]} is not in this clone (the stored copy is used)")
    with _archive(OLD_COMMIT, "charts/stackscaler") as tar:
        tar.extractall(tmp_path, filter="data")
    committed = tmp_path / "charts" / "stackscaler"
    files = {p.relative_to(committed) for p in committed.rglob("*") if p.is_file()}
    stored = {p.relative_to(OLD_CHART) for p in OLD_CHART.rglob("*") if p.is_file()}
    assert stored == files
    for rel in sorted(files):
        assert (OLD_CHART / rel).read_bytes() == (committed / rel).read_bytes(), rel


# --- the upgrade --------------------------------------------------------------------


@pytest.mark.controlplane
def test_helm_upgrade_from_an_earlier_chart_keeps_resources_status_and_cooldowns(
    *,
    helm: Helm,
    plane: cp.ControlPlane,
    aws_env: dict[str, str],
    moto: Any,
    boto: Any,
    tmp_path: Path,
) -> None:
    api = config.new_client_from_config(config_file=str(plane.kubeconfig))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    objects, ext = client.CustomObjectsApi(api), client.ApiextensionsV1Api(api)
    kubectl = Kubectl(plane.kubeconfig)
    _create_namespace(core, RELEASE_NS)
    apps_ns = _create_namespace(core, "shop")
    kube = ["--kubeconfig", str(plane.kubeconfig), "--namespace", RELEASE_NS]
    values: dict[str, Any] = {"aws": {"region": REGION}}
    relay = ThreadedFaultProxy(moto.endpoint)
    relay.proxy = wire = ScaleLog(moto.endpoint)
    endpoint = relay.start()
    web_ref: Ref = ("WebTier", apps_ns, "web")
    workers_ref: Ref = ("WorkerPool", apps_ns, "workers")
    ticks = TickWatch((web_ref, workers_ref))
    old_code, old_what = old_operator_code(tmp_path / "old")
    operators: list[Operator] = []
    try:
        # --- 1. the earlier chart, and the operator its Deployment runs ----------------
        out = helm("install", RELEASE, str(OLD_CHART), *kube, values=values)
        assert out.returncode == 0, out.stderr
        for kind in KINDS:
            assert "warmupSeconds" not in _served_spec_fields(ext, kind), kind
        peering_crds = {"kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"}
        installed = {c.metadata.name for c in ext.list_custom_resource_definition().items}
        assert peering_crds <= installed  # from the old chart's crds/ folder
        old_deploy = apps.read_namespaced_deployment(RELEASE, RELEASE_NS)
        assert old_deploy.spec.strategy.type == "Recreate"
        old_container = _live_container(apps, api)
        assert "--shards" not in old_container["args"]  # before Leases
        sa = old_deploy.spec.template.spec.service_account_name
        assert sa == RELEASE  # the ServiceAccount docs/install.md's trust policies name
        token = _token_kubeconfig(api, plane, sa, RELEASE_NS, tmp_path / "sa.kubeconfig")
        base_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **aws_env}
        base_env["STACKSCALER_AWS_ENDPOINT_URL"] = endpoint  # moto, through the ScaleLog
        old_env = {
            **base_env,
            **pod_env(old_container, f"{RELEASE}-5d8f7c9b4-old01", RELEASE_NS),
            "PYTHONPATH": str(old_code),
        }
        imported = subprocess.run(
            [sys.executable, "-c", "import stackscaler; print(stackscaler.__file__)"],
            env=old_env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert Path(imported.stdout.strip()).is_relative_to(old_code), imported.stdout
        print(f"old release: chart {OLD_CHART.name}, {old_what}")

        # AWS: two groups at 1, 4 instances' worth of requests, 4 workers' worth of jobs
        ec2, autoscaling, sqs = boto("ec2"), boto("autoscaling"), boto("sqs")
        suffix = os.urandom(3).hex()
        web_group, workers_group = f"web-{suffix}", f"workers-{suffix}"
        for group in (web_group, workers_group):
            ec2.create_launch_template(
                LaunchTemplateName=f"{group}-lt",
                LaunchTemplateData={"ImageId": "ami-12345678", "InstanceType": "t3.micro"},
            )
            autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=group,
                LaunchTemplate={"LaunchTemplateName": f"{group}-lt", "Version": "$Latest"},
                MinSize=0,
                MaxSize=20,
                DesiredCapacity=1,
                AvailabilityZones=[f"{REGION}a"],
            )

        def desired(group: str) -> int:
            found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
            return int(found["AutoScalingGroups"][0]["DesiredCapacity"])

        metrics_ns = f"Upgrade/{suffix}"
        _put_load(boto("cloudwatch"), metrics_ns, 400.0)
        queue = f"jobs-{suffix}"
        queue_url = sqs.create_queue(QueueName=queue)["QueueUrl"]
        for start in range(0, 400, 10):
            sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "MessageBody": f"job {start + i}"} for i in range(10)],
            )

        web_tier: dict[str, Any] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "WebTier",
            "metadata": {"name": "web", "namespace": apps_ns},
            "spec": {
                "target": {"kind": "AutoScalingGroup", "name": web_group, "region": REGION},
                "minCapacity": 1,
                "maxCapacity": 20,
                "metrics": [
                    {
                        "name": "requests",
                        "cloudWatch": {
                            "namespace": metrics_ns,
                            "metricName": "Requests",
                            "statistic": "Maximum",
                            "periodSeconds": 60,
                        },
                        "target": {"type": "AverageValue", "value": 100},
                    }
                ],
                "behavior": {
                    "scaleOut": {"cooldownSeconds": HOLD_SECONDS, "maxStep": {"units": 100}},
                    "scaleIn": {"cooldownSeconds": 0, "stabilizationWindowSeconds": 600},
                },
                "pollIntervalSeconds": POLL_SECONDS,
            },
        }
        worker_pool: dict[str, Any] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "WorkerPool",
            "metadata": {"name": "workers", "namespace": apps_ns},
            "spec": {
                "target": {"kind": "AutoScalingGroup", "name": workers_group, "region": REGION},
                "queue": {"name": queue, "region": REGION, "backlogPerWorker": 100},
                "minCapacity": 1,
                "maxCapacity": 20,
                "behavior": {
                    "scaleOut": {"cooldownSeconds": 0, "maxStep": {"units": 100}},
                    "scaleIn": {
                        "cooldownSeconds": 0,
                        "stabilizationWindowSeconds": HOLD_SECONDS,
                        "maxStep": {"units": 100},
                    },
                },
                "pollIntervalSeconds": POLL_SECONDS,
            },
        }
        # the new field is refused by the old schema (kubectl validates strictly)
        refused = kubectl("apply", "--dry-run=server", "-f", "-", stdin=_with_warmup(web_tier))
        assert refused.returncode != 0
        assert 'unknown field "spec.warmupSeconds"' in refused.stderr, refused.stderr
        objects.create_namespaced_custom_object(GROUP, VERSION, apps_ns, "webtiers", web_tier)
        objects.create_namespaced_custom_object(GROUP, VERSION, apps_ns, "workerpools", worker_pool)

        old = start_operator("old", old_container, old_env, token, tmp_path)
        operators.append(old)
        ticks.watch(old)
        if old_what.startswith("the operator code"):
            assert "stackscaler_last_decision_timestamp_seconds" not in old.metrics()

        # --- 2. they scale out; then a need inside the cooldown and the window --------
        def status(plural: str, name: str) -> dict[str, Any]:
            return dict(_get(objects, apps_ns, plural, name).get("status") or {})

        def at(plural: str, name: str, group: str, capacity: int) -> dict[str, Any]:
            assert desired(group) == capacity, f"{group} at {desired(group)}"
            now = status(plural, name)
            assert now.get("appliedCapacity") == capacity, now.get("lastDecision")
            return now

        eventually(lambda: at("webtiers", "web", web_group, 4), what="web 1 -> 4")
        eventually(lambda: at("workerpools", "workers", workers_group, 4), what="workers 1 -> 4")
        _put_load(boto("cloudwatch"), metrics_ns, 800.0)
        sqs.purge_queue(QueueUrl=queue_url)

        def held(plural: str, name: str, limit: str) -> dict[str, Any]:
            now = status(plural, name)
            decision = now.get("lastDecision") or {}
            assert decision.get("limitedBy") == limit, decision
            return now

        eventually(lambda: held("webtiers", "web", "scaleOutCooldown"), what="web held at 4")
        eventually(
            lambda: held("workerpools", "workers", "scaleInStabilization"),
            what="workers held at 4",
        )
        before = {
            plural: _get(objects, apps_ns, plural, name)
            for plural, name in (("webtiers", "web"), ("workerpools", "workers"))
        }
        old_web_history = before["webtiers"]["status"]["history"]
        old_window = before["workerpools"]["status"]["history"]["scaleInWindow"]
        assert old_window[0][1] == 4 and old_window[-1][1] == 1, old_window
        cooldown_ends = parse_time(old_web_history["lastScaleOut"]) + HOLD_SECONDS
        window_ends = parse_time(old_window[0][0]) + HOLD_SECONDS

        # --- 3. helm upgrade to the working tree's chart ----------------------------
        upgrade_started = time.time()
        out = helm("upgrade", RELEASE, str(CHART), *kube, values=values)
        assert out.returncode == 0, out.stderr
        upgraded = time.time()
        # the CRDs are templates: helm applied them like any other object
        for kind in KINDS:
            assert "warmupSeconds" in _served_spec_fields(ext, kind), kind
            crd = ext.read_custom_resource_definition(f"{kind}.{GROUP}")
            assert crd.metadata.labels["app.kubernetes.io/managed-by"] == "Helm"
            assert crd.metadata.annotations["meta.helm.sh/release-name"] == RELEASE
            assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"
            assert crd.status.stored_versions == [VERSION]
        waited = kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *(f"crd/{k}.{GROUP}" for k in KINDS),
        )
        assert waited.returncode == 0, waited.stderr
        # Helm never upgrades nor deletes what a chart's crds/ folder installed
        installed = {c.metadata.name for c in ext.list_custom_resource_definition().items}
        assert peering_crds <= installed
        # the resources and their status, read through the new schema
        for plural, body in before.items():
            name = body["metadata"]["name"]
            now = _get(objects, apps_ns, plural, name)
            assert now["metadata"]["uid"] == body["metadata"]["uid"]
            assert now["metadata"]["generation"] == body["metadata"]["generation"] == 1
            assert now["spec"] == body["spec"], plural
            # nothing pruned, and nothing material changed (the old operator ticks on)
            missing = _paths(body["status"]) - _paths(now["status"])
            assert not missing, (plural, sorted(missing))
            assert _material(now["status"]) == _material(body["status"]), plural
            if plural == "workerpools":  # the entry that holds the scale-in, unchanged
                assert now["status"]["history"]["scaleInWindow"][0] == old_window[0]

        # the Deployment now rolls: the new pod first, the old one once the new one is ready
        new_deploy = apps.read_namespaced_deployment(RELEASE, RELEASE_NS)
        strategy = api.sanitize_for_serialization(new_deploy.spec.strategy)
        assert strategy == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        }
        new_container = _live_container(apps, api)
        assert "--shards" in new_container["args"]
        pod = f"{RELEASE}-6c4b9d7f8-new01"
        new_env = {**base_env, **pod_env(new_container, pod, RELEASE_NS)}
        new = start_operator("new", new_container, new_env, token, tmp_path)
        operators.append(new)
        ticks.watch(new)
        old.stop()  # SIGTERM: the Deployment removes the old pod once the new one is ready
        assert old.exited_at is not None
        lease = client.CoordinationV1Api(api).read_namespaced_lease(
            f"{RELEASE}-shard-0", RELEASE_NS
        )
        assert lease.spec.holder_identity.startswith(f"{pod}-"), lease.spec

        # the new field is accepted now
        accepted = kubectl("apply", "--dry-run=server", "-f", "-", stdin=_with_warmup(web_tier))
        assert accepted.returncode == 0, accepted.stderr

        # --- the new operator honours the old cooldown and window, no longer -----------
        eventually(
            lambda: at("webtiers", "web", web_group, 8),
            what="web 4 -> 8 once the old scale-out's cooldown ended",
            timeout=HOLD_SECONDS + 60,
        )
        eventually(
            lambda: at("workerpools", "workers", workers_group, 1),
            what="workers 4 -> 1 once the old window ended",
            timeout=HOLD_SECONDS + 60,
        )
        for ref, plural, key, ends, limit in (
            (web_ref, "webtiers", "lastScaleOut", cooldown_ends, "scaleOutCooldown"),
            (workers_ref, "workerpools", "lastScaleIn", window_ends, "scaleInStabilization"),
        ):
            scaled = parse_time(status(plural, ref[2])["history"][key])
            made = ticks.decisions("new", ref)
            # the new operator decided within the old hold at least once, and held
            assert made and made[0] < ends, (ref, made, ends)
            assert ticks.limited_by("new", ref, limit) >= 1, ticks.limited
            # it acted at its first decision after the hold ended: neither earlier (the old
            # cooldown or window forgotten) nor later (a reset history opening a new one)
            first_after = next(d for d in made if d >= ends)
            assert abs(first_after - scaled) < 0.01, (ref, made, ends, scaled)

        # exactly one SetDesiredCapacity per decision, the second ones by the new operator
        assert wire.capacities(web_group) == [4, 8], wire.writes
        assert wire.capacities(workers_group) == [4, 1], wire.writes
        second = [w for w in wire.writes if w[2] in (8, 1)]
        assert all(w[0] > old.exited_at for w in second), (wire.writes, old.exited_at)
        assert _events(core, apps_ns, "web", "ScaledOut") == ["1 -> 4", "4 -> 8"]
        assert _events(core, apps_ns, "workers", "ScaledOut") == ["1 -> 4"]
        assert _events(core, apps_ns, "workers", "ScaledIn") == ["4 -> 1"]
        assert not _events(core, apps_ns, "web", "HistoryReset")
        assert not _events(core, apps_ns, "workers", "HistoryReset")

        # --- no tick missed across the handover beyond the operator's own restart --------
        # The old operator ticks until its SIGTERM; the new one from when it takes the shard
        # (a replica is ready before it holds any: standbys are ready). Between the two
        # nothing ticks: that is the restart, and a resource may miss its slots in it plus
        # one (the new holder's first tick waits for the resource's next slot).
        took = new.logged("took shard 0")
        assert took is not None, _tail(new.log)
        assert old.signalled_at is not None
        downtime = max(0.0, took - old.signalled_at)
        allowed = 1 + math.ceil(downtime / POLL_SECONDS)
        report = [
            f"helm upgrade took {upgraded - upgrade_started:.1f} s; the new operator was ready"
            f" {new.ready_at - upgraded:.1f} s later and took the shard"
            f" {took - new.ready_at:+.1f} s from its readiness; the old one, sent SIGTERM then,"
            f" exited {old.exited_at - old.signalled_at:.1f} s later (both processes ran for"
            f" {old.exited_at - new.ready_at:.1f} s after the new one's readiness); restart"
            f" (SIGTERM to the new one holding the shard) {downtime:.1f} s"
        ]
        for ref in (web_ref, workers_ref):
            seen = ticks.ticks(ref)
            by_old = [t for t, who in seen if who == "old"]
            by_new = [t for t, who in seen if who == "new"]
            assert by_old and by_new, (ref, seen)
            gap = missed_slots(sorted(t for t, _ in seen), POLL_SECONDS)
            assert gap <= allowed, (ref, gap, allowed, seen)
            report.append(
                f"{ref[0]} {ref[2]}: last tick of the old operator"
                f" {by_old[-1] - old.signalled_at:+.1f} s from its SIGTERM, first of the new one"
                f" {by_new[0] - took:+.1f} s from taking the shard; at most {gap} poll"
                f" slot(s) without a tick ({allowed} allowed)"
            )
        reinit = "storage is (re)initializing"
        retried = [
            t - upgrade_started
            for op in (old, new)
            for t in op.logged_times(reinit)
            if t >= upgrade_started
        ]
        report.append(
            f"list/watch requests answered 429 {reinit!r} after the upgrade started:"
            f" {len(retried)}, from {min(retried, default=0):.1f} s to"
            f" {max(retried, default=0):.1f} s after it (retried by kopf)"
        )
        print("\n".join(report))
        assert not ticks.errors, ticks.errors[:5]

        # the new field on a resource: stored, and the new operator observes that spec
        patched = kubectl(
            "patch",
            "webtiers",
            "web",
            "-n",
            apps_ns,
            "--type",
            "merge",
            "-p",
            json.dumps({"spec": {"warmupSeconds": 0}}),
        )
        assert patched.returncode == 0, patched.stderr
        assert _get(objects, apps_ns, "webtiers", "web")["spec"]["warmupSeconds"] == 0

        def observed() -> None:
            body = _get(objects, apps_ns, "webtiers", "web")
            assert body["metadata"]["generation"] == 2
            assert (body.get("status") or {}).get("observedGeneration") == 2, body.get("status")

        eventually(observed, what="the new operator observing spec.warmupSeconds")
    finally:
        ticks.close()
        for op in operators:
            op.stop()
        relay.stop()
        for op in operators:
            print(f"--- {op.name} operator ({op.log}), last lines ---\n{_tail(op.log, 3000)}")
    for op in operators:
        denied = denied_lines(op.log.read_text(errors="replace"))
        assert not denied, "\n".join(denied[:5])

    # --- 4. helm uninstall keeps the CRDs and with them the resources ------------------
    out = helm("uninstall", RELEASE, *kube)
    assert out.returncode == 0, out.stderr
    assert "These resources were kept due to the resource policy" in out.stdout + out.stderr
    installed = {c.metadata.name for c in ext.list_custom_resource_definition().items}
    assert {f"{k}.{GROUP}" for k in KINDS} <= installed
    assert _get(objects, apps_ns, "webtiers", "web")["status"]["appliedCapacity"] == 8
    assert _get(objects, apps_ns, "workerpools", "workers")["status"]["appliedCapacity"] == 1
    assert not apps.list_namespaced_deployment(RELEASE_NS).items
    api.close()


@pytest.mark.controlplane
def test_an_old_release_scaled_to_zero_comes_back_with_the_upgrade(
    helm: Helm, plane: cp.ControlPlane
) -> None:
    """The documented way across the Lease change without two operators at once: scale the
    old Deployment to 0, then ``helm upgrade``, which sets the replicas back."""
    api = config.new_client_from_config(config_file=str(plane.kubeconfig))
    apps = client.AppsV1Api(api)
    _create_namespace(client.CoreV1Api(api), RELEASE_NS)
    kube = ["--kubeconfig", str(plane.kubeconfig), "--namespace", RELEASE_NS]
    try:
        out = helm("install", RELEASE, str(OLD_CHART), *kube)
        assert out.returncode == 0, out.stderr
        scaled = Kubectl(plane.kubeconfig)(
            "-n", RELEASE_NS, "scale", f"deployment/{RELEASE}", "--replicas=0"
        )
        assert scaled.returncode == 0, scaled.stderr
        assert apps.read_namespaced_deployment(RELEASE, RELEASE_NS).spec.replicas == 0
        out = helm("upgrade", RELEASE, str(CHART), *kube)
        assert out.returncode == 0, out.stderr
        deploy = apps.read_namespaced_deployment(RELEASE, RELEASE_NS)
        assert (deploy.spec.replicas, deploy.spec.strategy.type) == (1, "RollingUpdate")
    finally:
        api.close()
