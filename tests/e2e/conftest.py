"""End-to-end fixtures: the real `stackscaler run` against the real control plane and moto.

* ``operator``: a factory that starts ``stackscaler run`` as a subprocess (the
  venv's console script) against the session's kube-apiserver and moto, JSON
  logs to a file, metrics and health on a free loopback port, and waits for
  ``/readyz``. A test can stop it, SIGKILL it and start it again; every
  process it started is stopped at teardown, also when the test fails.
* ``aws``: boto3 clients on moto, reset at the start of every test (moto is
  shared by the session), with helpers to arrange groups, queues, metrics.
* ``kube``: reads resources, their status, conditions and Events; applies and
  patches them with kubectl.
* ``recorder``: a background poller that keeps every distinct status the
  operator wrote (one per tick) and every change of an AWS value, so tests
  can assert on the sequence of decisions rather than on elapsed time.
* ``prometheus_server``: a real Prometheus (Debian's package) scraping the
  session's exporter on a free loopback port, that a test can stop and start
  again on the same port (with a fresh TSDB).

Every wait is a bounded poll for a condition; nothing asserts on elapsed time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
import yaml
from kubernetes import client, config
from prometheus_client.parser import text_string_to_metric_families

from stackscaler.devtools import controlplane as cp
from stackscaler.devtools.controlplane import exit_with_parent
from tests.conftest import example
from tests.integration.conftest import (
    REGION,
    Kubectl,
    MotoServer,
    api_client,
    aws_env,
    controlplane,
    kubectl,
    moto_server,
    namespace,
)
from tests.integration.netutil import free_port
from tests.integration.prometheus_fixtures import (
    Exporter,
    _prometheus_binary,
    _stop,
    _tail,
    exporter_fixture,
    start_prometheus,
)

__all__ = [  # the integration fixtures tests/e2e uses, re-exported (pytest finds them here)
    "api_client",
    "aws_env",
    "controlplane",
    "exporter_fixture",
    "kubectl",
    "moto_server",
    "namespace",
]

GROUP, VERSION = "stackscaler.dev", "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PLURALS = {
    "WebTier": "webtiers",
    "WorkerPool": "workerpools",
    "ReadReplicaPool": "readreplicapools",
    "CachePool": "cachepools",
}
STACKSCALER = Path(sys.executable).parent / "stackscaler"

WAIT = 60.0
"""Default upper bound of a wait for something expected within a few ticks."""
POLL = 0.2

T = TypeVar("T")


def eventually(check: Callable[[], T], *, what: str, timeout: float = WAIT) -> T:
    """Call ``check`` until it returns without AssertionError; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:g}s; last: {exc}") from exc
        time.sleep(POLL)


def suffix() -> str:
    """A short random suffix for AWS names that are distinct per test."""
    return os.urandom(3).hex()


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- the operator as a subprocess ------------------------------------------------


class OperatorProcess:
    """One `stackscaler run` process at a time; start, stop, kill and start again."""

    def __init__(
        self,
        kubeconfig: Path,
        env: dict[str, str],
        workdir: Path,
        namespaces: tuple[str, ...],
        args: tuple[str, ...] = (),
    ) -> None:
        self.kubeconfig, self.env, self.workdir = kubeconfig, env, workdir
        self.namespaces, self.args = namespaces, args
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0
        self.logs: list[Path] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OperatorProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.port = free_port()
        log = self.workdir / f"operator-{self.starts}.log"
        self.logs.append(log)
        args = self.command(
            "--kubeconfig",
            str(self.kubeconfig),
            "--metrics-host",
            "127.0.0.1",
            "--metrics-port",
            str(self.port),
            "--log-format",
            "json",
            *(arg for ns in self.namespaces for arg in ("--namespace", ns)),
            *self.args,
        )
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                args,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=exit_with_parent,  # noqa: PLW1509 - only prctl, no locks
            )
        deadline = time.monotonic() + WAIT
        last = ""
        while True:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except urllib.error.HTTPError as exc:
                last = f"{exc.code} {exc.read().decode(errors='replace')}"
            except OSError as exc:
                last = str(exc)
            if self.proc.poll() is not None:
                pytest.fail(
                    f"stackscaler run exited with {self.proc.returncode}:\n{_tail(log)}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"/readyz not 200 within {WAIT:g}s ({last}):\n{_tail(log)}")
            time.sleep(POLL)

    def command(self, *run_args: str) -> list[str]:
        """`stackscaler run` with ``run_args``: the command line (a subclass runs it elsewhere)."""
        return [str(STACKSCALER), "run", *run_args]

    def terminate(self, proc: subprocess.Popen[bytes]) -> None:
        """Ask the operator to stop, as the kubelet does: SIGTERM."""
        proc.terminate()

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL if it does not stop); the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            self.terminate(proc)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a node dies."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            assert resp.status == 200
            return str(resp.read().decode())

    def sample(self, name: str, labels: dict[str, str]) -> float | None:
        """The value of the first sample ``name`` whose labels include ``labels``."""
        values = self.samples(name, labels)
        return values[0] if values else None

    def samples(self, name: str, labels: dict[str, str]) -> list[float]:
        return [
            s.value
            for family in text_string_to_metric_families(self.metrics_text())
            for s in family.samples
            if s.name == name and labels.items() <= s.labels.items()
        ]

    def records(self) -> list[dict[str, Any]]:
        """Every JSON log record of every run so far (a line that is not JSON is kept raw)."""
        out: list[dict[str, Any]] = []
        for log in self.logs:
            for line in log.read_text(errors="replace").splitlines():
                if not line.strip():
                    continue
                try:
                    out.append(json.loads(line))
                except ValueError:
                    out.append({"level": "RAW", "message": line})
        return out

    def problems(self) -> list[str]:
        """What went wrong in the operator, from its log.

        Records at ERROR or above (except a watch request kopf retries, such as
        the 429 a freshly started API server answers while its storage
        initializes), status writes or Events that failed, and any line that
        is not a JSON record.
        """
        found = []
        for r in self.records():
            level, message = r.get("level"), str(r.get("message", ""))
            # kopf's watch generator, closed while a SIGTERM cancels it, sometimes makes
            # asyncio log this at ERROR during shutdown (kopf's, seen once in 1,000 tiers)
            kopf_shutdown = (
                "closing of asynchronous generator <async_generator object infinite_watch"
            )
            if kopf_shutdown in message:
                continue
            if (
                (level in ("ERROR", "CRITICAL") and "will retry" not in message)
                or level == "RAW"
                or (level == "WARNING" and message.startswith("cannot "))
            ):
                found.append(f"{level} {r.get('logger')}: {message} {r.get('exception', '')}")
        return found


@pytest.fixture
def operator(
    controlplane: cp.ControlPlane,
    aws_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[Callable[..., OperatorProcess]]:
    """``operator(*namespaces, env={...}, args=(...))`` starts `stackscaler run` watching them."""
    started: list[OperatorProcess] = []

    def start(
        *namespaces: str, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> OperatorProcess:
        base = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}  # --kubeconfig only
        base.update(aws_env)
        base.update(env or {})
        workdir = tmp_path / f"operator-{len(started)}"
        workdir.mkdir()
        proc = OperatorProcess(controlplane.kubeconfig, base, workdir, namespaces, args)
        started.append(proc)
        return proc.start()

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()
        for proc in started:  # shown with the test's output when it fails
            for log in proc.logs:
                print(f"--- {log} (last lines) ---\n{_tail(log, 4000)}")


# --- AWS (moto) ------------------------------------------------------------------


class Aws:
    """boto3 clients on moto, and the few arrangements the scenarios need."""

    def __init__(self, make: Callable[..., Any]) -> None:
        self.autoscaling = make("autoscaling")
        self.ec2 = make("ec2")
        self.sqs = make("sqs")
        self.rds = make("rds")
        self.cloudwatch = make("cloudwatch")
        self.elasticache = make("elasticache")
        self._templates: set[str] = set()

    # Auto Scaling groups (launch template)
    def group_with_template(
        self, name: str, *, desired: int, min_size: int = 0, max_size: int = 50
    ) -> None:
        template = f"{name}-lt"
        if template not in self._templates:
            self.ec2.create_launch_template(
                LaunchTemplateName=template,
                LaunchTemplateData={"ImageId": "ami-12345678", "InstanceType": "t3.micro"},
            )
            self._templates.add(template)
        self.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateName": template, "Version": "$Latest"},
            MinSize=min_size,
            MaxSize=max_size,
            DesiredCapacity=desired,
            AvailabilityZones=[f"{REGION}a"],
        )

    def group(self, name: str) -> dict[str, Any]:
        groups = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        return groups["AutoScalingGroups"][0]  # type: ignore[no-any-return]

    def desired(self, name: str) -> int:
        return int(self.group(name)["DesiredCapacity"])

    # SQS
    def queue(self, name: str) -> str:
        return str(self.sqs.create_queue(QueueName=name)["QueueUrl"])

    def send(self, url: str, count: int) -> None:
        for start in range(0, count, 10):
            n = min(10, count - start)
            out = self.sqs.send_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "MessageBody": f"job {start + i}"} for i in range(n)],
            )
            assert not out.get("Failed"), out

    def backlog(self, url: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"])

    # CloudWatch
    def cpu(self, group: str, value: float, *, past_minutes: int = 6, ahead: int = 5) -> None:
        """CPUUtilization of ``group``: one datapoint per minute around now.

        The operator reads the newest complete 60 s period, so the previous
        minutes carry the value, and the next few too (for a test that runs
        across minute boundaries; they are ignored until complete).
        """
        start = datetime.now(UTC).replace(second=0, microsecond=0)
        data = [
            {
                "MetricName": "CPUUtilization",
                "Dimensions": [{"Name": "AutoScalingGroupName", "Value": group}],
                "Timestamp": start + timedelta(minutes=k, seconds=5),
                "Value": value,
                "Unit": "Percent",
            }
            for k in range(-past_minutes, ahead + 1)
        ]
        # botocore gzips bodies over 10 KB, which the moto server cannot read: small calls
        for i in range(0, len(data), 20):
            self.cloudwatch.put_metric_data(Namespace="AWS/EC2", MetricData=data[i : i + 20])

    # RDS
    def postgres(self, name: str) -> None:
        self.rds.create_db_instance(
            DBInstanceIdentifier=name,
            Engine="postgres",
            DBInstanceClass="db.t3.micro",
            AllocatedStorage=20,
            MasterUsername="shop",
            MasterUserPassword="not-a-secret-1",
        )

    def instances(self) -> dict[str, dict[str, Any]]:
        found = self.rds.describe_db_instances()["DBInstances"]
        return {d["DBInstanceIdentifier"]: d for d in found}

    def replicas_of(self, source: str) -> dict[str, dict[str, Any]]:
        everything = self.instances()
        ids = everything[source].get("ReadReplicaDBInstanceIdentifiers", [])
        return {i: everything[i] for i in ids if i in everything}

    # ElastiCache
    def replication_group(self, name: str, replicas: int) -> None:
        self.elasticache.create_replication_group(
            ReplicationGroupId=name,
            ReplicationGroupDescription="sessions",
            Engine="redis",
            CacheNodeType="cache.t4g.micro",
            ReplicasPerNodeGroup=replicas,
        )


def tags(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("TagList", ())}


@pytest.fixture
def aws(moto_server: MotoServer, aws_env: dict[str, str]) -> Aws:
    """Clients on moto, reset first: moto is shared by the session, each test starts clean."""
    moto_server.reset()

    def make(service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=moto_server.endpoint)

    return Aws(make)


def cpu_web_tier(namespace: str, group: str, **spec: Any) -> dict[str, Any]:
    """The example WebTier on ``group``, scaled on its CloudWatch CPU alone, no schedules.

    ``spec`` overrides top-level spec fields (e.g. ``maxCapacity=8``).
    """
    web = example("WebTier")
    web["metadata"]["namespace"] = namespace
    body = web["spec"]
    body["target"]["name"] = group
    body["metrics"] = body["metrics"][:1]
    body["metrics"][0]["cloudWatch"]["dimensions"][0]["value"] = group
    del body["schedules"]  # time-of-day independent bounds
    body.update(spec)
    return web


# --- Kubernetes ------------------------------------------------------------------


class Kube:
    """Reads through the API; writes the way a user does, with kubectl."""

    def __init__(self, api: client.ApiClient, kubectl: Kubectl) -> None:
        self.objects = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.kubectl = kubectl

    def run(self, *args: str, stdin: str | None = None) -> str:
        out = self.kubectl(*args, stdin=stdin)
        assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
        return out.stdout

    def apply(self, *docs: dict[str, Any]) -> str:
        return self.run("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))

    def merge_patch(self, kind: str, ns: str, name: str, patch: dict[str, Any]) -> str:
        return self.run(
            "patch", PLURALS[kind], name, "-n", ns, "--type", "merge", "-p", json.dumps(patch)
        )

    def json_patch(self, kind: str, ns: str, name: str, ops: list[dict[str, Any]]) -> str:
        return self.run(
            "patch", PLURALS[kind], name, "-n", ns, "--type", "json", "-p", json.dumps(ops)
        )

    def annotate(self, kind: str, ns: str, name: str, key: str, value: str) -> str:
        return self.run("annotate", "--overwrite", PLURALS[kind], name, "-n", ns, f"{key}={value}")

    def get(self, kind: str, ns: str, name: str) -> dict[str, Any]:
        return self.objects.get_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, ns, PLURALS[kind], name
        )

    def status(self, kind: str, ns: str, name: str) -> dict[str, Any]:
        return self.get(kind, ns, name).get("status") or {}

    def events(self, kind: str, ns: str, name: str) -> list[client.CoreV1Event]:
        listed = self.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}")
        found = [e for e in listed.items if e.involved_object.kind == kind]
        return sorted(found, key=lambda e: (e.first_timestamp, e.metadata.creation_timestamp))

    def reasons(self, kind: str, ns: str, name: str) -> list[str]:
        return [e.reason for e in self.events(kind, ns, name)]


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    found = conditions(status).get(type_)
    assert found is not None, f"no {type_} condition in {status.get('conditions')}"
    return found


@pytest.fixture
def kube(api_client: client.ApiClient, kubectl: Kubectl) -> Kube:
    return Kube(api_client, kubectl)


# --- assertions shared by the scenarios ----------------------------------------


def decisions(op: OperatorProcess, kind: str, ns: str, name: str) -> int:
    """How many decisions the operator has made for the resource (its own counter)."""
    labels = {"kind": kind, "namespace": ns, "name": name}
    return int(sum(op.samples("stackscaler_decisions_total", labels)))


def decision_counts(
    op: OperatorProcess, ref: tuple[str, str, str], *, by: str = "direction"
) -> Counter[str]:
    """The operator's decisions for ``ref`` (kind, namespace, name) so far, by the
    label ``by`` (``direction`` or ``limited_by``).

    The status is rewritten only when something material changed (or every
    300 s), so a tick that changes nothing is counted here, not seen there.
    """
    labels = dict(zip(("kind", "namespace", "name"), ref, strict=True))
    found: Counter[str] = Counter()
    for family in text_string_to_metric_families(op.metrics_text()):
        for s in family.samples:
            if s.name == "stackscaler_decisions_total" and labels.items() <= s.labels.items():
                found[s.labels[by]] += int(s.value)
    return found


def decisions_after(
    op: OperatorProcess,
    ref: tuple[str, str, str],
    mark: Counter[str],
    count: int,
    *,
    what: str,
    by: str = "direction",
) -> Counter[str]:
    """Wait for ``count`` decisions after ``mark`` (:func:`decision_counts`, the same ``by``)."""

    def check() -> Counter[str]:
        new = decision_counts(op, ref, by=by) - mark
        assert new.total() >= count, f"{new.total()} new decision(s) so far: {dict(new)}"
        return new

    return eventually(check, what=what, timeout=WAIT + count * 10)


def decision_clock(
    recorder: Callable[..., Recorder], op: OperatorProcess, kind: str, ns: str, name: str
) -> Recorder:
    """A recorder whose probe is the operator's last-decision time of the resource.

    Its :meth:`Recorder.probed` values are the times of the decisions made while it
    runs, one per tick, whether the tick's status was written or not.
    """
    labels = {"kind": kind, "namespace": ns, "name": name}
    return recorder(
        kind,
        ns,
        name,
        probe=lambda: op.sample("stackscaler_last_decision_timestamp_seconds", labels),
    )


def decision_times(clock: Recorder) -> list[float]:
    """The decision times a :func:`decision_clock` has seen, oldest first."""
    return sorted({v for v in clock.probed() if v is not None})


def decisions_seen(clock: Recorder, count: int, *, what: str) -> list[float]:
    """Wait until a :func:`decision_clock` has seen ``count`` decisions; their times."""

    def check() -> list[float]:
        times = decision_times(clock)
        assert len(times) >= count, f"{len(times)} decision(s) seen; {clock.last_error()}"
        return times

    return eventually(check, what=what, timeout=WAIT + count * 10)


@dataclass(frozen=True)
class Decided:
    """One decision as the operator's /metrics tell it, written to the status or not."""

    time: float
    current: float | None
    desired: float | None
    counts: tuple[tuple[str, str, float], ...]
    """(direction, limited_by, decisions so far) of the resource."""
    values: tuple[tuple[str, float], ...]
    """(metric, value) of the metrics known at the decision."""
    direction: str | None = None
    limited_by: str | None = None
    """Of this decision (by the counter it incremented); None when it cannot be told."""

    def value(self, metric: str) -> float | None:
        return dict(self.values).get(metric)


def decision_probe(op: OperatorProcess, kind: str, ns: str, name: str) -> Callable[[], Any]:
    """A :class:`Recorder` probe: the resource's last decision from one /metrics scrape.

    The reconciler sets the last-decision time last, so a scrape that shows a new
    time shows that decision's capacities, metric values and counts.
    """
    labels = {"kind": kind, "namespace": ns, "name": name}

    def probe() -> Decided | None:
        found: dict[str, float] = {}
        counts: list[tuple[str, str, float]] = []
        values: list[tuple[str, float]] = []
        for family in text_string_to_metric_families(op.metrics_text()):
            for s in family.samples:
                if not labels.items() <= s.labels.items():
                    continue
                if s.name == "stackscaler_decisions_total":
                    counts.append((s.labels["direction"], s.labels["limited_by"], s.value))
                elif s.name == "stackscaler_metric_value":
                    values.append((s.labels["metric"], s.value))
                else:
                    found[s.name] = s.value
        at = found.get("stackscaler_last_decision_timestamp_seconds")
        if at is None:
            return None
        return Decided(
            at,
            found.get("stackscaler_capacity_current"),
            found.get("stackscaler_capacity_desired"),
            tuple(sorted(counts)),
            tuple(sorted(values)),
        )

    return probe


def decided(log: Recorder) -> list[Decided]:
    """The decisions a :func:`decision_probe` recorder has seen, oldest first, each with
    its direction and limited_by (from the counter it incremented)."""
    first: dict[float, Decided] = {}
    for d in log.probed():
        if isinstance(d, Decided):
            first.setdefault(d.time, d)
    out: list[Decided] = []
    previous: dict[tuple[str, str], float] | None = None
    for seen in sorted(first.values(), key=lambda d: d.time):
        now = {(direction, limit): n for direction, limit, n in seen.counts}
        grew = [k for k, n in now.items() if n > (previous or {}).get(k, 0)]
        one = previous is not None and sum(now.values()) - sum(previous.values()) == 1
        if one and len(grew) == 1:
            direction, limit = grew[0]
            limited_by = None if limit == "none" else limit
            out.append(replace(seen, direction=direction, limited_by=limited_by))
        else:
            out.append(seen)
        previous = now
    return out


def decisions_logged(log: Recorder, count: int, *, what: str) -> list[Decided]:
    """Wait until a :func:`decision_probe` recorder has seen ``count`` decisions after its
    first (whose direction cannot be told); return those."""

    def check() -> list[Decided]:
        got = decided(log)[1:]
        assert len(got) >= count, f"{len(got)} decision(s) logged; {log.last_error()}"
        return got

    return eventually(check, what=what, timeout=WAIT + count * 10)


def generations(kube: Kube, ns: str, resources: list[tuple[str, str]]) -> dict[str, int]:
    return {name: kube.get(kind, ns, name)["metadata"]["generation"] for kind, name in resources}


def assert_spec_untouched(
    kube: Kube, ns: str, resources: list[tuple[str, str]], before: dict[str, int]
) -> None:
    """The operator writes only /status: generation unchanged, and it observed that one."""
    for kind, name in resources:
        body = kube.get(kind, ns, name)
        assert body["metadata"]["generation"] == before[name], (kind, name)
        assert body["status"]["observedGeneration"] == before[name], (kind, name)


def assert_desired_exposed(op: OperatorProcess, kube: Kube, kind: str, ns: str, name: str) -> None:
    labels = {"kind": kind, "namespace": ns, "name": name}

    def check() -> None:
        desired = kube.status(kind, ns, name)["desiredCapacity"]
        assert op.sample("stackscaler_capacity_desired", labels) == desired

    eventually(check, what=f"/metrics stackscaler_capacity_desired of {kind} {ns}/{name}")


def event_messages(kube: Kube, kind: str, ns: str, name: str, reason: str) -> list[str]:
    return [e.message for e in kube.events(kind, ns, name) if e.reason == reason]


# --- recording what the operator did, tick by tick ----------------------------------


@dataclass(frozen=True)
class Tick:
    """One status the operator wrote (one per tick), as first seen by the recorder."""

    seen: float
    """The test's time.time() when it was first seen."""
    status: dict[str, Any]

    @property
    def decision(self) -> dict[str, Any]:
        return self.status.get("lastDecision") or {}

    @property
    def time(self) -> float:
        return parse_time(self.decision["time"])

    @property
    def current(self) -> int:
        return int(self.status["currentCapacity"])

    @property
    def desired(self) -> int:
        return int(self.status["desiredCapacity"])

    @property
    def direction(self) -> str:
        return str(self.decision.get("direction"))

    @property
    def limited_by(self) -> str | None:
        return self.decision.get("limitedBy")

    @property
    def history(self) -> dict[str, Any]:
        return self.status.get("history") or {}

    def metric(self, name: str) -> dict[str, Any]:
        for m in self.decision.get("metrics") or []:
            if m.get("name") == name:
                return dict(m)
        raise AssertionError(f"no metric {name} in {self.decision.get('metrics')}")

    def condition(self, type_: str) -> dict[str, Any]:
        return condition(self.status, type_)


@dataclass
class Recorder:
    """Polls one resource's status (and optionally an AWS value) in a background thread."""

    kubeconfig: Path
    kind: str
    namespace: str
    name: str
    probe: Callable[[], Any] | None = None
    ticks: list[Tick] = field(default_factory=list)
    values: list[tuple[float, Any]] = field(default_factory=list)
    """(time.time(), value) for every change of the probe's value."""
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reader: client.ApiClient | None = None

    def start(self) -> Recorder:
        api = config.new_client_from_config(config_file=str(self.kubeconfig))
        objects = client.CustomObjectsApi(api)
        seen: set[str] = set()

        def loop() -> None:
            try:
                while not self._stop.is_set():
                    self._poll(objects, seen)
                    self._stop.wait(POLL / 2)
            finally:
                api.close()

        self._thread = threading.Thread(target=loop, name=f"recorder-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _poll(self, objects: Any, seen: set[str]) -> None:
        try:
            body = objects.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURALS[self.kind], self.name
            )
            status = body.get("status") or {}
            key = json.dumps(status, sort_keys=True)
            # a status with pendingAction is the intent written before an AWS change,
            # not a tick's record: the tick's own status follows once the change is sent
            if status.get("lastDecision") and "pendingAction" not in status and key not in seen:
                seen.add(key)
                with self._lock:
                    self.ticks.append(Tick(time.time(), status))
            if self.probe is not None:
                value = self.probe()
                with self._lock:
                    if not self.values or self.values[-1][1] != value:
                        self.values.append((time.time(), value))
        except Exception as exc:  # keep polling; reported by the test if it matters
            self.errors.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._reader is not None:
            self._reader.close()

    def last_error(self) -> str:
        return f"last read error: {self.errors[-1]}" if self.errors else "no read errors"

    def snapshot(self) -> list[Tick]:
        with self._lock:
            return list(self.ticks)

    def since(self, moment: float) -> list[Tick]:
        """Ticks whose status was first seen after ``moment`` (time.time())."""
        return [t for t in self.snapshot() if t.seen > moment]

    def probed(self) -> list[Any]:
        with self._lock:
            return [v for _, v in self.values]

    def probed_since(self, moment: float) -> list[Any]:
        """The probe's value at ``moment`` and every value it took after."""
        with self._lock:
            before = [v for t, v in self.values if t <= moment][-1:]
            return before + [v for t, v in self.values if t > moment]

    def mark(self) -> int:
        """Wait until the recorder has seen the status the resource has now; ticks so far."""

        def caught_up() -> int:
            status = self.kube_status()
            ticks = self.snapshot()
            assert ticks and ticks[-1].status == status, "the recorder is behind"
            return len(ticks)

        return eventually(caught_up, what=f"{self.name}: the recorder catching up")

    def ticks_after(self, mark: int, count: int, *, what: str) -> list[Tick]:
        """Wait for ``count`` statuses written after ``mark`` (see :meth:`mark`)."""

        def check() -> list[Tick]:
            got = self.snapshot()[mark:]
            assert len(got) >= count, f"{len(got)} new tick(s) so far; {self.last_error()}"
            return got[:count]

        return eventually(check, what=what, timeout=WAIT + count * 10)

    def next_ticks(self, count: int, *, what: str) -> list[Tick]:
        """The next ``count`` statuses written after the one the resource has now."""
        return self.ticks_after(self.mark(), count, what=what)

    def kube_status(self) -> dict[str, Any]:
        """The resource's status now, read by the test's thread (its own client)."""
        if self._reader is None:
            self._reader = config.new_client_from_config(config_file=str(self.kubeconfig))
        body = client.CustomObjectsApi(self._reader).get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURALS[self.kind], self.name
        )
        return dict(body.get("status") or {})

    def wait_ticks(self, count: int, *, after: float, what: str) -> list[Tick]:
        """Wait until ``count`` new statuses were written after ``after``; return them."""

        def check() -> list[Tick]:
            got = self.since(after)
            assert len(got) >= count, f"{len(got)} tick(s) so far; {self.last_error()}"
            return got

        return eventually(check, what=what, timeout=WAIT + count * 10)


@pytest.fixture
def recorder(controlplane: cp.ControlPlane) -> Iterator[Callable[..., Recorder]]:
    """``recorder(kind, namespace, name, probe=None)``: started now, stopped at teardown."""
    made: list[Recorder] = []

    def make(kind: str, ns: str, name: str, probe: Callable[[], Any] | None = None) -> Recorder:
        r = Recorder(controlplane.kubeconfig, kind, ns, name, probe)
        made.append(r)
        return r.start()

    try:
        yield make
    finally:
        for r in made:
            r.stop()


# --- a real Prometheus the test can stop and start again ------------------------------


class PrometheusServer:
    """Debian's prometheus scraping ``exporter`` every second, on a fixed loopback port."""

    def __init__(self, exporter: Exporter, workdir: Path) -> None:
        self.binary = _prometheus_binary()
        self.exporter, self.workdir = exporter, workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        run = self.workdir / f"run-{self.starts}"  # a fresh TSDB: nothing from before
        self.proc, self.log = start_prometheus(self.binary, self.exporter.address, run, self.port)

    def query(self, promql: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=5) as resp:
            return json.loads(resp.read())["data"]["result"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


@pytest.fixture
def prometheus_server(exporter: Exporter, tmp_path: Path) -> Iterator[PrometheusServer]:
    server = PrometheusServer(exporter, tmp_path / "prometheus")
    try:
        yield server
    finally:
        server.stop()
