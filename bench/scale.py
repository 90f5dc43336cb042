"""`make bench-scale`: the operator at fleet scale, on the real control plane and moto.

N WebTiers (default 2,000) on N Auto Scaling groups, each scaled on its own
group's CPUUtilization from CloudWatch, all polled every ``--poll`` seconds
(default 30). A third of them are hot (90 % against a 50 % target: they
scale out), a third cold (15 %: they scale in), a third at target (50 %:
nothing to do). Every process is the product's own: `stackscaler dev
controlplane` (kube-apiserver and etcd), moto in server mode, and
``stackscaler run`` as users start it, all on loopback.

moto is single-process Python, so CloudWatch gets moto servers of its own:
one moto answers Auto Scaling, EC2 and STS, and two more take turns at
CloudWatch (see :class:`CpuFeeder`: each minute the idle one is reset and
given just the datapoints the operator's queries need, so moto's
GetMetricData, which compares every datapoint in a query's window with every
query, scans one datapoint per group instead of six). The operator reaches
them through botocore's per-service endpoint variables
(``AWS_ENDPOINT_URL_CLOUDWATCH``, ``AWS_ENDPOINT_URL_AUTO_SCALING``, ...),
which it honours when ``STACKSCALER_AWS_ENDPOINT_URL`` is not set; each
service's moto has a counting proxy in front.

The scaling tiers take one step (one unit) per ``--cooldown`` seconds
(default 600), their starts spread over that time: 2/3 x 2,000 / 600 s is
2.2 SetDesiredCapacity calls a second fleet-wide, inside the operator's own
Auto Scaling token bucket (5 a second, shared with DescribeAutoScalingGroups)
-- a third of a 2,000-tier fleet changing every wave would need 44 a second,
which no AWS account allows.

After a warm-up (every tier has decided once, then ``--warmup-waves``
waves), each wave of ``--poll`` seconds prints:

* decision age p50/p99/max: at every sample (``--sample-every`` s), each
  tier's ``now - last decision``, from the operator's per-resource gauge
  ``stackscaler_last_decision_timestamp_seconds`` on its /metrics, or, when
  the operator has no such gauge, from ``status.lastDecision.time`` as the
  watch last delivered it (said so in the output);
* AWS calls by operation, counted on moto's side of the wire (a counting
  proxy in front of each service's moto; the operator's own
  ``stackscaler_aws_calls_total`` is in the JSON for comparison);
* API-server writes (kube-apiserver's ``apiserver_request_total``, every
  verb that writes): status, spec, Events, other; and per tier per hour, for
  all tiers and for the at-target third (steady state), from a watch;
* CPU (cores: CPU seconds / wall seconds) of the operator, each moto, the
  API server and etcd, and the whole host (shared with other work); the
  operator's RSS;
* whether a moto was the bottleneck: each is one Python process, so near one
  core it cannot answer faster, and what is measured is moto.

The goals (for 2,000 tiers at a 30 s poll) are printed PASS or FAIL at the
end, measured in the same run.

    python -m bench.scale [--tiers N] [--waves W] [--poll S] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from kubernetes import client, config

from bench.moto_launcher import indexed_moto
from bench.ownership import (
    OwnerLog,
    first_take,
    held_at,
    joined,
    owned_at,
    ownership,
    shard_moves,
    taken_over,
)
from bench.scale_probes import (
    GROUP,
    VERSION,
    ApiServer,
    CountingProxy,
    ProcSample,
    TierWatch,
    fetch,
    host_busy,
    proc_sample,
    samples,
)
from stackscaler.demo.processes import (
    FAKE_ACCESS_KEY,
    FAKE_SECRET_KEY,
    Child,
    ChildFailed,
    children_env,
    free_port,
    moto_executable,
    spawn,
    start_moto,
    tail,
)
from stackscaler.devtools import controlplane as cp

REGION = "us-east-1"
STACKSCALER = Path(sys.executable).parent / "stackscaler"
CLASSES = ("hot", "cold", "target")
CPU = {"hot": 90.0, "cold": 15.0, "target": 50.0}
"""Each class's CPUUtilization once its load has started (50 % before)."""
TARGET_CPU = 50.0
DECISION_GAUGE = "stackscaler_last_decision_timestamp_seconds"
AWS_CALLS = "stackscaler_aws_calls_total"
STATUS_WRITES = "stackscaler_status_writes_total"
DECISION_BUCKETS = "stackscaler_decision_seconds_bucket"
LATENESS_BUCKETS = "stackscaler_decision_lateness_seconds_bucket"
MOTO_BOUND = 0.85
"""A moto server at or above this many cores in a wave: it is the bottleneck."""
MOTOS = ("moto", "moto-cw-a", "moto-cw-b")
"""Auto Scaling, EC2 and STS; CloudWatch's two servers, taking turns."""
PUT_CHUNK = 500
"""Datapoints per PutMetricData (uncompressed: moto's server cannot read gzip bodies)."""
CLOUDWATCH_OPS = frozenset({"GetMetricData", "GetMetricStatistics", "ListMetrics", "PutMetricData"})
"""What the CloudWatch proxy should count, and the other one never."""

# the goals of the issue, for 2,000 tiers at a 30 s poll
GOAL_AGE_SLACK = 5.0
GOAL_GET_METRIC_DATA = 5
GOAL_DESCRIBE_GROUPS = 25
GOAL_CPU_CORES = 0.25
GOAL_RSS_MB = 300.0
GOAL_WRITES_PER_TIER_HOUR = 12.0


@dataclass(frozen=True)
class Options:
    tiers: int
    waves: int
    warmup_waves: int
    poll: int
    sample_every: float
    cooldown: int
    max_capacity: int
    warmup_timeout: float
    workers: int
    json_out: Path | None
    keep: bool
    plain_moto: bool = False
    replicas: int = 1
    """``stackscaler run`` processes; above 1 they coordinate through Leases."""
    shards: int = 0
    """``--shards`` of every replica (0: no leases, only with one replica)."""
    lease_duration: float = 15.0
    kill_wave: int = 0
    """SIGKILL the first replica as this measured wave starts (0: never)."""
    rejoin_wave: int = 0
    """Start a new replica as this measured wave starts (0: never)."""


# --- what a user applies ---------------------------------------------------------------


@dataclass(frozen=True)
class Tier:
    name: str
    group: str
    cls: str
    index: int
    """Its place within its class (spreads the load's start)."""

    def start_capacity(self, opts: Options) -> int:
        return {"hot": 1, "cold": opts.max_capacity, "target": 2}[self.cls]


def fleet(n: int, suffix: str) -> list[Tier]:
    out = []
    for i in range(n):
        cls = CLASSES[i % 3]
        out.append(Tier(f"{cls}-{i:05d}", f"bench-{suffix}-{i:05d}", cls, i // 3))
    return out


def web_tier(namespace: str, tier: Tier, opts: Options) -> dict[str, Any]:
    step = {"units": 1, "periodSeconds": 60}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WebTier",
        "metadata": {"name": tier.name, "namespace": namespace},
        "spec": {
            "target": {"kind": "AutoScalingGroup", "name": tier.group, "region": REGION},
            "minCapacity": 1,
            "maxCapacity": opts.max_capacity,
            "pollIntervalSeconds": opts.poll,
            "warmupSeconds": 0,  # moto's instances are InService at once
            "metrics": [
                {
                    "name": "cpu",
                    "cloudWatch": {
                        "namespace": "AWS/EC2",
                        "metricName": "CPUUtilization",
                        "dimensions": [{"name": "AutoScalingGroupName", "value": tier.group}],
                        "statistic": "Average",
                        "periodSeconds": 60,
                    },
                    "target": {"type": "Value", "value": TARGET_CPU},
                }
            ],
            "behavior": {
                "scaleOut": {"cooldownSeconds": opts.cooldown, "maxStep": step},
                "scaleIn": {
                    "cooldownSeconds": opts.cooldown,
                    "stabilizationWindowSeconds": 0,
                    "maxStep": step,
                },
            },
        },
    }


# --- moto: groups and their CPU ----------------------------------------------------------


def aws_config(workers: int, **extra: Any) -> Config:
    return Config(
        retries={"mode": "standard", "max_attempts": 3},
        read_timeout=120,
        max_pool_connections=workers + 2,
        **extra,
    )


def aws_session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=FAKE_ACCESS_KEY,
        aws_secret_access_key=FAKE_SECRET_KEY,
        region_name=REGION,
    )


class Moto:
    """boto3 on the Auto Scaling moto directly (not through the counting proxy)."""

    def __init__(self, endpoint: str, workers: int) -> None:
        session, cfg = aws_session(), aws_config(workers)
        self.autoscaling = session.client("autoscaling", endpoint_url=endpoint, config=cfg)
        self.ec2 = session.client("ec2", endpoint_url=endpoint, config=cfg)

    def groups(self, tiers: Sequence[Tier], opts: Options, pool: ThreadPoolExecutor) -> None:
        template = f"{tiers[0].group}-lt"
        self.ec2.create_launch_template(
            LaunchTemplateName=template,
            LaunchTemplateData={"ImageId": "ami-12345678", "InstanceType": "t3.micro"},
        )

        def make(t: Tier) -> None:
            self.autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=t.group,
                LaunchTemplate={"LaunchTemplateName": template, "Version": "$Latest"},
                MinSize=0,
                MaxSize=opts.max_capacity,
                DesiredCapacity=t.start_capacity(opts),
                AvailabilityZones=[f"{REGION}a"],
            )

        list(pool.map(make, tiers))


class CpuFeeder:
    """Each group's CPUUtilization, just in time, on two CloudWatch motos taking turns.

    moto's GetMetricData takes every datapoint stored in a call's window and,
    for each of the call's queries (500) and each period of the window,
    compares them all: its cost grows with the datapoints in the window, and
    moto never drops one. The operator's window reaches 6 periods back
    (staleAfterSeconds 300 plus a period) and ends at the current minute's
    start, but only the newest complete period is used. So at each minute M
    the idle server is reset (``/moto-api/reset``) and given the datapoints
    of minutes M-1 (the newest complete one) and M (outside every window
    until M+1, so the server still answers if the next turn is late), then
    the counting proxy sends further requests to it; requests in flight
    finish on the other. A window holds one datapoint per group instead of
    six, and a server stores two.

    One datapoint per group per minute, stamped 5 s into the minute. Before
    its load starts a group is at the target (50 %); a scaling tier's load
    starts in one of the first ``spread`` minutes (by its index), so the
    fleet's scale actions are spread over its cooldown rather than all at once.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        proxy: CountingProxy,
        tiers: Sequence[Tier],
        start: float,
        spread: int,
    ) -> None:
        self.endpoints, self.proxy, self.tiers = list(endpoints), proxy, tiers
        self.start, self.spread = start, max(1, spread)
        session = aws_session()
        cfg = aws_config(2, disable_request_compression=True)
        self.clients = [session.client("cloudwatch", endpoint_url=e, config=cfg) for e in endpoints]
        self.active = 0
        """The server the proxy sends CloudWatch requests to."""
        self.minute = 0.0
        """The minute (epoch seconds) the active server was filled for."""
        self.turns: list[float] = []
        """Seconds each fill (reset and datapoints) took."""
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-feeder", daemon=True)

    def value(self, tier: Tier, minute: float) -> float:
        onset = self.start + 60 * (tier.index % self.spread)
        return CPU[tier.cls] if minute >= onset else TARGET_CPU

    def fill(self, server: int, minute: float, pool: ThreadPoolExecutor) -> bool:
        """Reset ``server`` and put minutes ``minute - 60`` and ``minute``; False when stopped."""
        started = time.monotonic()
        req = urllib.request.Request(self.endpoints[server] + "/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=30):
            pass
        data = [
            {
                "MetricName": "CPUUtilization",
                "Dimensions": [{"Name": "AutoScalingGroupName", "Value": t.group}],
                "Timestamp": datetime.fromtimestamp(m + 5, UTC),
                "Value": self.value(t, m),
                "Unit": "Percent",
            }
            for m in (minute - 60, minute)
            for t in self.tiers
        ]
        cw = self.clients[server]
        chunks = [data[i : i + PUT_CHUNK] for i in range(0, len(data), PUT_CHUNK)]
        for i in range(0, len(chunks), 2):  # a stop() waits for 2 calls at most
            if self._stop.is_set():
                return False
            list(
                pool.map(
                    lambda c: cw.put_metric_data(Namespace="AWS/EC2", MetricData=c),
                    chunks[i : i + 2],
                )
            )
        self.turns.append(time.monotonic() - started)
        return True

    def turn(self, pool: ThreadPoolExecutor) -> None:
        """At a new minute: fill the idle server and send CloudWatch requests to it."""
        minute = math.floor(time.time() / 60) * 60
        if minute <= self.minute:
            return
        idle = 1 - self.active
        if self.fill(idle, minute, pool):
            self.proxy.switch(self.endpoints[idle])
            self.active, self.minute = idle, minute

    def begin(self, pool: ThreadPoolExecutor) -> None:
        self.active = 1  # so the first turn fills server 0
        self.turn(pool)
        self._thread.start()

    def _loop(self) -> None:
        with ThreadPoolExecutor(2) as pool:
            while not self._stop.wait(1.0):
                try:
                    self.turn(pool)
                except Exception as exc:  # the active server keeps answering; reported
                    self.errors.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)


# --- the operator ------------------------------------------------------------------------


class Operator:
    def __init__(self, child: Child, port: int) -> None:
        self.child, self.port = child, port
        self.url = f"http://127.0.0.1:{port}"
        self.scrapes: list[float] = []
        """Seconds each /metrics scrape took."""

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(self.url + "/readyz", timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
            if not self.child.alive():
                raise ChildFailed(f"stackscaler run exited:\n{tail(self.child.log)}")
            time.sleep(0.5)
        raise ChildFailed(f"/readyz not 200 within {timeout:g}s:\n{tail(self.child.log)}")

    def metrics(self) -> str:
        started = time.monotonic()
        text = fetch(self.url + "/metrics", timeout=30)
        self.scrapes.append(time.monotonic() - started)
        return text


def start_operator(
    kubeconfig: Path,
    namespace: str,
    logs: Path,
    asg: str,
    cloudwatch: str,
    *,
    name: str = "operator",
    extra: Sequence[str] = (),
) -> Operator:
    """``stackscaler run``: Auto Scaling, EC2 and STS at ``asg``, CloudWatch at ``cloudwatch``;
    ``extra``: more arguments (a replica's Lease settings)."""
    port = free_port()
    argv = [
        str(STACKSCALER),
        "run",
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        namespace,
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(port),
        "--log-format",
        "json",
        *extra,
    ]
    env = children_env(asg, REGION)
    env.pop("KUBECONFIG", None)  # --kubeconfig only
    # botocore's per-service endpoints (AWS_ENDPOINT_URL_<service id>), which the operator
    # uses when STACKSCALER_AWS_ENDPOINT_URL does not send every service to one place
    del env["STACKSCALER_AWS_ENDPOINT_URL"]
    env.pop("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", None)
    env.update(
        {
            "AWS_ENDPOINT_URL": asg,  # any other service: never real AWS
            "AWS_ENDPOINT_URL_AUTO_SCALING": asg,
            "AWS_ENDPOINT_URL_EC2": asg,
            "AWS_ENDPOINT_URL_STS": asg,
            "AWS_ENDPOINT_URL_CLOUDWATCH": cloudwatch,
        }
    )
    return Operator(spawn(name, argv, logs / f"{name}.log", env), port)


def decision_times(text: str, namespace: str) -> dict[str, float]:
    """Tier name -> the operator's last decision time, from its per-resource gauge."""
    return {
        labels.get("name", ""): value
        for _, labels, value in samples(text, {DECISION_GAUGE})
        if labels.get("namespace") == namespace and labels.get("kind", "WebTier") == "WebTier"
    }


def operator_counts(text: str) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """The operator's own AWS calls by operation, its status writes by result, and its
    decisions by how long they took and how late they came (the buckets of
    ``stackscaler_decision_seconds`` and ``stackscaler_decision_lateness_seconds``)."""
    calls: Counter[str] = Counter()
    writes: Counter[str] = Counter()
    took: Counter[str] = Counter()
    wanted = {AWS_CALLS, STATUS_WRITES, DECISION_BUCKETS, LATENESS_BUCKETS}
    for name, labels, value in samples(text, wanted):
        if name == AWS_CALLS:
            calls[labels.get("operation", "?")] += int(value)
        elif name == STATUS_WRITES:
            writes[labels.get("result", "?")] += int(value)
        else:  # "took:5.0", "late:5.0": decisions in the bucket
            kind = "took" if name == DECISION_BUCKETS else "late"
            took[f"{kind}:{labels.get('le', '?')}"] += int(value)
    return calls, writes, took


class Replicas:
    """The ``stackscaler run`` processes: one, or several coordinated through Leases.

    A killed replica's counters are kept as last scraped (its /metrics is gone), so the
    totals still add up; what it did between that scrape and the kill is not counted
    on its side (moto's and the API server's counts have it).
    """

    def __init__(self, start: Callable[[str, Sequence[str]], Operator], opts: Options) -> None:
        self._start, self.opts = start, opts
        self.live: dict[str, Operator] = {}
        self.gone: dict[str, Operator] = {}
        self.frozen: list[tuple[Counter[str], Counter[str], Counter[str]]] = []
        self.started: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        """When each replica's /readyz first answered 200."""
        self.killed: dict[str, float] = {}
        self._next = 0

    def lease_args(self, name: str, namespace: str) -> list[str]:
        if self.opts.shards <= 0:
            return []
        return [
            "--shards",
            str(self.opts.shards),
            "--lease-namespace",
            namespace,
            "--lease-group",
            "bench",
            "--identity",
            name,
            "--lease-duration",
            f"{self.opts.lease_duration:g}",
        ]

    def add(self, namespace: str) -> Operator:
        """Start one more replica (named operator with one replica, replica-<n> with more)."""
        name = "operator" if self.opts.replicas == 1 else f"replica-{self._next}"
        self._next += 1
        op = self._start(name, self.lease_args(name, namespace))
        self.live[name] = op
        self.started[name] = time.time()
        return op

    def wait_ready(self, name: str) -> Operator:
        """Wait for ``name``'s /readyz, and note when it came."""
        op = self.live[name]
        op.wait_ready()
        self.ready[name] = time.time()
        return op

    @property
    def first(self) -> Operator:
        return next(iter(self.live.values()))

    def scrape(self) -> dict[str, str]:
        """Every live replica's /metrics."""
        return {name: op.metrics() for name, op in self.live.items()}

    def kill(self, name: str) -> float:
        """SIGKILL ``name`` (after a last scrape of its counters); when it died."""
        op = self.live.pop(name)
        with contextlib.suppress(OSError, urllib.error.URLError):
            self.frozen.append(operator_counts(op.metrics()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(op.child.pid, signal.SIGKILL)
        op.child.proc.wait()
        self.gone[name] = op
        self.killed[name] = time.time()
        return self.killed[name]

    def counts(self, texts: Mapping[str, str]) -> tuple[Counter[str], Counter[str], Counter[str]]:
        """The replicas' counters added up: live ones from ``texts``, killed ones as frozen."""
        total: tuple[Counter[str], Counter[str], Counter[str]] = (Counter(), Counter(), Counter())
        for part in [operator_counts(t) for t in texts.values()] + self.frozen:
            for acc, add in zip(total, part, strict=True):
                acc.update(add)
        return total

    def all(self) -> dict[str, Operator]:
        return {**self.gone, **self.live}

    def stop(self) -> None:
        for op in self.live.values():
            op.child.stop()


# --- measuring -----------------------------------------------------------------------------


@dataclass
class Snapshot:
    t: float
    moto_calls: dict[str, Counter[str]]
    """Calls each service's moto answered so far (its counting proxy), by operation."""
    operator_calls: Counter[str]
    status_writes: Counter[str]
    kube_writes: Counter[str]
    procs: dict[str, ProcSample | None]
    host: tuple[float, float]
    decision_seconds: Counter[str] = field(default_factory=Counter)
    """The operator's decisions so far by time from tick start to decision (le buckets)."""


@dataclass
class Wave:
    number: int
    start: float
    seconds: float
    ages: list[float] = field(default_factory=list)
    samples: int = 0

    def age_stats(self) -> dict[str, float]:
        if not self.ages:
            return {"p50": math.nan, "p99": math.nan, "max": math.nan}
        ages = sorted(self.ages)
        return {
            "p50": ages[len(ages) // 2],
            "p99": ages[min(len(ages) - 1, math.ceil(0.99 * len(ages)) - 1)],
            "max": ages[-1],
        }


class Bench:
    def __init__(self, opts: Options, workdir: Path) -> None:
        self.opts, self.workdir = opts, workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.namespace = f"bench-{os.urandom(3).hex()}"
        self.tiers = fleet(opts.tiers, self.namespace.removeprefix("bench-"))
        self.classes = {t.name: t.cls for t in self.tiers}
        self.per_class = Counter(t.cls for t in self.tiers)
        self.plane: cp.ControlPlane | None = None
        self.motos: dict[str, Child] = {}
        """MOTOS, by name."""
        self.proxies: dict[str, CountingProxy] = {}
        """``autoscaling`` (Auto Scaling, EC2, STS) and ``cloudwatch``."""
        self.feeder: CpuFeeder | None = None
        self.watch: TierWatch | None = None
        self.replicas: Replicas | None = None
        self.owners = OwnerLog()
        """Every decision each replica's gauge showed (bench/ownership.py)."""
        self.clock = "gauge"
        self.notes: list[str] = []

    # --- setup ---------------------------------------------------------------

    def setup(self) -> None:
        opts = self.opts
        say(f"control plane: {self.workdir / 'cp'}")
        binaries = cp.build(log=say)
        self.plane = cp.start(self.workdir / "cp", binaries=binaries, die_with_parent=True)
        exe = moto_executable()
        if exe is None:
            raise ChildFailed("moto_server is not installed (pip install -e '.[test]')")
        endpoints = {}
        cw_exe = exe if opts.plain_moto else self.indexed_moto()
        for name in MOTOS:
            logs = self.logs / name  # start_moto names its log moto.log
            logs.mkdir()
            server = cw_exe if name.startswith("moto-cw") else exe
            self.motos[name], endpoints[name] = start_moto(server, logs, REGION)
        say(
            "CloudWatch: moto's GetMetricData as is (--plain-moto)"
            if opts.plain_moto
            else "CloudWatch: moto with GetMetricData narrowed per query (bench/moto_indexed.py:"
            " moto's own answers; --plain-moto for moto as is)"
        )
        cw = [endpoints["moto-cw-a"], endpoints["moto-cw-b"]]
        self.proxies["autoscaling"] = CountingProxy(endpoints["moto"])
        self.proxies["cloudwatch"] = CountingProxy(cw[0])
        asg_endpoint = self.proxies["autoscaling"].start()
        cw_endpoint = self.proxies["cloudwatch"].start()
        for name in MOTOS:
            say(f"{name} {endpoints[name]} (pid {self.motos[name].pid})")
        say(f"counting proxies: Auto Scaling/EC2/STS {asg_endpoint}, CloudWatch {cw_endpoint}")

        aws = Moto(endpoints["moto"], opts.workers)
        with ThreadPoolExecutor(opts.workers) as pool:
            started = time.monotonic()
            aws.groups(self.tiers, opts, pool)
            say(f"{opts.tiers} Auto Scaling groups in {time.monotonic() - started:.0f} s")
            started = time.monotonic()
            onset = math.floor(time.time() / 60) * 60 + 120
            self.feeder = CpuFeeder(
                cw, self.proxies["cloudwatch"], self.tiers, onset, opts.cooldown // 60
            )
            self.feeder.begin(pool)
            say(f"CPU datapoints in {time.monotonic() - started:.0f} s")
            started = time.monotonic()
            self._webtiers(pool)
            say(f"{opts.tiers} WebTiers in {time.monotonic() - started:.0f} s")
        self.watch = TierWatch(self.plane.kubeconfig, self.namespace, self.classes).start()
        kubeconfig = self.plane.kubeconfig

        def start(name: str, extra: Sequence[str]) -> Operator:
            return start_operator(
                kubeconfig, self.namespace, self.logs, asg_endpoint, cw_endpoint,
                name=name, extra=extra,
            )  # fmt: skip

        self.replicas = Replicas(start, opts)
        for _ in range(opts.replicas):
            self.replicas.add(self.namespace)
        for name in list(self.replicas.live):
            op = self.replicas.wait_ready(name)
            say(f"{name} pid {op.child.pid}, /metrics {op.url}")

    def _webtiers(self, pool: ThreadPoolExecutor) -> None:
        assert self.plane is not None
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.plane.kubeconfig), client_configuration=cfg)
        cfg.connection_pool_maxsize = self.opts.workers
        api = client.ApiClient(cfg)
        try:
            client.CoreV1Api(api).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=self.namespace))
            )
            objects = client.CustomObjectsApi(api)
            list(
                pool.map(
                    lambda t: objects.create_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        self.namespace,
                        "webtiers",
                        web_tier(self.namespace, t, self.opts),
                    ),
                    self.tiers,
                )
            )
        finally:
            api.close()

    # --- sampling --------------------------------------------------------------

    def decided(self) -> dict[str, float]:
        """Tier -> last decision time, by the clock in use."""
        assert self.watch is not None
        if self.clock == "gauge":
            return self.gauges()
        return dict(self.watch.decided)

    def gauges(self, texts: Mapping[str, str] | None = None) -> dict[str, float]:
        """Tier -> last decision time by any replica's gauge, as scraped now or before (a
        killed replica's last decisions count until another replica decides its tiers)."""
        assert self.replicas is not None
        for name, text in (texts if texts is not None else self.replicas.scrape()).items():
            self.owners.add(name, decision_times(text, self.namespace))
        return dict(self.owners.last)

    def warm_up(self) -> float:
        """Wait until every tier has decided; which clock tells. Returns the time it took."""
        assert self.replicas is not None and self.watch is not None
        started = time.time()
        deadline = time.monotonic() + self.opts.warmup_timeout
        while True:
            gauge = self.gauges()
            status = dict(self.watch.decided)
            if gauge:
                self.clock = "gauge"
            elif len(status) == len(self.tiers):
                self.clock = "status"
                self.notes.append(
                    f"the operator exports no {DECISION_GAUGE}: decision ages come from "
                    "status.lastDecision.time (a status rewritten only every few minutes "
                    "makes them look older than they are)"
                )
            done = len(gauge) if gauge else len(status)
            if done == len(self.tiers):
                return time.time() - started
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {done} of {len(self.tiers)} tiers decided within "
                    f"{self.opts.warmup_timeout:g} s\n{tail(self.replicas.first.child.log)}"
                )
            say(f"  warm-up: {done}/{len(self.tiers)} tiers decided")
            self._check_alive()
            time.sleep(max(self.opts.sample_every, 5.0))

    def snapshot(self) -> Snapshot:
        assert self.plane and self.motos and self.proxies and self.replicas
        texts = self.replicas.scrape()
        self.gauges(texts)
        pids = {
            **{name: op.child.pid for name, op in self.replicas.live.items()},
            **{name: child.pid for name, child in self.motos.items()},
            "apiserver": self.plane.pids["kube-apiserver"],
            "etcd": self.plane.pids["etcd"],
            "bench": os.getpid(),
        }
        api = ApiServer(self.plane.server, self.plane.token, self.plane.ca_file)
        calls, status_writes, took = self.replicas.counts(texts)
        return Snapshot(
            time.time(),
            {name: proxy.counts() for name, proxy in self.proxies.items()},
            calls,
            status_writes,
            api.writes(),
            {k: proc_sample(pid) for k, pid in pids.items()},
            host_busy(),
            took,
        )

    def indexed_moto(self) -> str:
        """An executable that runs moto_server with bench.moto_indexed's patch."""
        return indexed_moto(self.workdir)

    def _check_alive(self) -> None:
        live = self.replicas.live if self.replicas else {}
        children = {name: op.child for name, op in live.items()}
        for name, child in {**children, **self.motos}.items():
            if not child.alive():
                raise ChildFailed(f"{name} exited:\n{tail(child.log)}")

    def run_waves(self) -> list[dict[str, Any]]:
        opts = self.opts
        # waves end a second before the aligned ticks, so a tick's burst falls inside one
        first = (math.floor(time.time() / opts.poll) + 1) * opts.poll - 1
        for k in range(opts.warmup_waves):
            sleep_until(first + k * opts.poll, self._check_alive)
            say(f"  warm-up wave {k + 1}/{opts.warmup_waves}")
        start = first + opts.warmup_waves * opts.poll
        sleep_until(start, self._check_alive)
        before = self.snapshot()
        results = []
        say(HEADER)
        for n in range(1, opts.waves + 1):
            self.change_replicas(n)
            wave = Wave(n, before.t, 0.0)
            end = start + n * opts.poll
            # at random phases of the wave (the first one too), so the samples do not keep
            # one phase of the aligned ticks (a sample just before the ticks, as the waves
            # start, never sees a decision waiting for its reads)
            at = end - opts.poll + random.uniform(0, opts.sample_every)
            while at < end - 0.5:
                sleep_until(at, self._check_alive)
                decided = self.decided()
                now = time.time()
                wave.ages.extend(now - decided.get(t.name, 0.0) for t in self.tiers)
                wave.samples += 1
                at += opts.sample_every * random.uniform(0.5, 1.5)
            sleep_until(end, None)
            after = self.snapshot()
            wave.seconds = after.t - before.t
            row = self.wave_result(wave, before, after)
            results.append(row)
            say(format_row(row))
            before = after
        return results

    def change_replicas(self, wave: int) -> None:
        """--kill-wave: SIGKILL the first replica; --rejoin-wave: start a new one."""
        assert self.replicas is not None
        if wave == self.opts.kill_wave and self.replicas.live:
            name = next(iter(self.replicas.live))
            self.replicas.kill(name)
            say(f"  wave {wave}: SIGKILL {name}")
        if wave == self.opts.rejoin_wave:
            op = self.replicas.wait_ready(self.replicas.add(self.namespace).child.name)
            say(f"  wave {wave}: started {op.child.name} (pid {op.child.pid})")

    def wave_result(self, wave: Wave, before: Snapshot, after: Snapshot) -> dict[str, Any]:
        assert self.watch is not None and self.replicas is not None
        secs = wave.seconds
        cores = {}
        for k in after.procs:
            a, b = after.procs[k], before.procs.get(k)
            cores[k] = (a.cpu - b.cpu) / secs if a and b else math.nan
        busy = (after.host[0] - before.host[0]) / max(after.host[1] - before.host[1], 1e-9)
        cores["host"] = busy * (os.cpu_count() or 1)
        cores["moto-cw"] = cores["moto-cw-a"] + cores["moto-cw-b"]  # one serving at a time
        names = [k for k in after.procs if k in self.replicas.live]
        samples_ = [after.procs[k] for k in names]
        several = names != ["operator"]
        if several:  # their sum, and each one's
            cores["operator"] = sum(cores[k] for k in names if not math.isnan(cores[k]))
        op = max((p for p in samples_ if p), key=lambda p: p.rss_mb, default=None)
        moto_calls: Counter[str] = Counter()
        for k in after.moto_calls:
            moto_calls.update(after.moto_calls[k] - before.moto_calls[k])
        writes = after.kube_writes - before.kube_writes
        by_class = self.watch.writes_between(before.t, after.t)
        hours = secs / 3600
        per_tier_hour = {
            cls: by_class[cls] / self.per_class[cls] / hours
            for cls in CLASSES
            if self.per_class[cls]
        }
        tier_writes = writes["status"] + writes["spec"] + writes["events"]
        per_tier_hour["all"] = tier_writes / len(self.tiers) / hours
        return {
            "wave": wave.number,
            "started": before.t,
            "seconds": round(secs, 2),
            "decision_age": {k: round(v, 2) for k, v in wave.age_stats().items()},
            "samples": wave.samples,
            "aws_calls_moto": dict(moto_calls),
            "aws_calls_by_server": {
                k: dict(after.moto_calls[k] - before.moto_calls[k]) for k in after.moto_calls
            },
            "aws_calls_operator": dict(after.operator_calls - before.operator_calls),
            "apiserver_writes": dict(writes),
            "operator_status_writes": dict(after.status_writes - before.status_writes),
            "decisions_over_5s": slow_decisions(before, after, "took", "5.0"),
            "decisions_late_over_5s": slow_decisions(before, after, "late", "5.0"),
            "writes_per_tier_hour": {k: round(v, 2) for k, v in per_tier_hour.items()},
            "target_writes": by_class["target"],
            "target_tiers": self.per_class["target"],
            "cores": {k: round(v, 3) for k, v in cores.items()},
            "operator_rss_mb": round(op.rss_mb, 1) if op else math.nan,
            "operator_hwm_mb": round(max(p.hwm_mb for p in samples_ if p), 1) if op else math.nan,
            "replicas": {k: round(cores[k], 3) for k in names} if several else {},
            "moto_bound": [k for k in ("moto", "moto-cw") if cores[k] >= MOTO_BOUND],
            "moto_answer_seconds": self.answer_times(before.t, after.t),
        }

    def answer_times(self, since: float, until: float) -> dict[str, dict[str, float]]:
        """How long moto took to answer each read, by operation: p50 and max in the wave."""
        times: dict[str, list[float]] = {}
        for proxy in self.proxies.values():
            for op, seconds in proxy.answer_times(since, until).items():
                times.setdefault(op, []).extend(seconds)
        return {
            op: {"p50": round(statistics.median(s), 2), "max": round(max(s), 2)}
            for op, s in times.items()
        }

    # --- teardown --------------------------------------------------------------

    def teardown(self) -> None:
        steps: list[Callable[[], object]] = []
        if self.replicas is not None:
            steps.append(self.replicas.stop)
        if self.watch is not None:
            steps.append(self.watch.stop)
        if self.feeder is not None:
            steps.append(self.feeder.stop)
        # the motos before the proxies: requests in flight then end at once
        steps.extend(child.stop for child in self.motos.values())
        steps.extend(proxy.stop for proxy in self.proxies.values())
        steps.append(lambda: cp.stop(self.workdir / "cp"))
        for step in steps:
            try:
                step()
            except Exception as exc:  # stop the rest anyway
                say(f"teardown: {exc!r}")


# --- output -----------------------------------------------------------------------------

HEADER = (
    f"{'wave':>4} {'age p50/p99/max s':>18} {'GMD':>4} {'DASG':>4} {'SDC':>4} {'oth':>4}"
    f" {'kube st/sp/ev/oth':>17} {'w/tier/h all/tgt':>17}"
    f" {'op cpu':>6} {'op RSS':>7} {'m-asg':>5} {'m-cw':>5} {'kapi':>5} {'etcd':>5}"
    f" {'host':>5} {'moto s GMD/DASG max':>19} {'dec>5s':>6} {'late>5s':>7}"
)


def format_row(r: dict[str, Any]) -> str:
    a, c, m, w = r["decision_age"], r["cores"], r["aws_calls_moto"], r["apiserver_writes"]
    named = ("GetMetricData", "DescribeAutoScalingGroups", "SetDesiredCapacity")
    other = sum(v for k, v in m.items() if k not in named)
    age = f"{a['p50']:.1f}/{a['p99']:.1f}/{a['max']:.1f}"
    kube = f"{w.get('status', 0)}/{w.get('spec', 0)}/{w.get('events', 0)}/{w.get('other', 0)}"
    wt = r["writes_per_tier_hour"]
    per = f"{wt['all']:.1f}/{wt.get('target', math.nan):.1f}"
    flag = "".join(f" {k}-bound" for k in r["moto_bound"])
    return (
        f"{r['wave']:>4} {age:>18} {m.get(named[0], 0):>4} {m.get(named[1], 0):>4}"
        f" {m.get(named[2], 0):>4} {other:>4} {kube:>17} {per:>17}"
        f" {c['operator']:>6.3f} {r['operator_rss_mb']:>5.0f}MB {c['moto']:>5.2f}"
        f" {c['moto-cw']:>5.2f}"
        f" {c['apiserver']:>5.2f} {c['etcd']:>5.2f} {c['host']:>5.2f}"
        f" {answered(r, named[0]):>9}/{answered(r, named[1]):<9}"
        f" {r['decisions_over_5s']['slower']:>6} {r['decisions_late_over_5s']['slower']:>7}{flag}"
    )


def slow_decisions(before: Snapshot, after: Snapshot, kind: str, le: str) -> dict[str, int]:
    """Decisions in the wave, and how many were above ``le`` s in histogram ``kind``
    ("took": from the tick's start; "late": past one poll after the previous decision)."""
    d = after.decision_seconds - before.decision_seconds
    total = d[f"{kind}:+Inf"]
    return {"decisions": total, "slower": total - d[f"{kind}:{le}"]}


def answered(r: dict[str, Any], op: str) -> str:
    """moto's longest answer to ``op`` in the wave (s), or '-'."""
    times = r.get("moto_answer_seconds", {}).get(op)
    return f"{times['max']:.2f}" if times else "-"


@dataclass(frozen=True)
class Goal:
    name: str
    measured: str
    ok: bool


def steady_writes(waves: Sequence[dict[str, Any]], watch: TierWatch | None) -> tuple[float, str]:
    """Writes per tier per hour of the at-target third (nothing to do: the steady state).

    From the gaps between two writes of the same tier that end in the
    measured waves: 3600 / their mean. The count of writes in the measured
    waves cannot tell: the refresh interval (330 s at a 30 s poll) is longer
    than ten waves, so each tier writes at most once in them, and the count
    is at most 12 an hour whatever the real rate, and exactly 12 when every
    tier's refresh happens to fall inside. The gaps before the measured waves
    are the start's (a first write, then one early refresh at a phase taken
    from the uid, so that the fleet's refreshes do not all fall in one wave),
    which is why the measured waves should start a refresh interval (300 s:
    ``--warmup-waves 10`` at a 30 s poll) after the first decisions. Without
    a watch, the count is all there is.
    """
    seconds = sum(w["seconds"] for w in waves)
    count = sum(w["target_writes"] for w in waves)
    tiers = waves[0]["target_tiers"] if waves else 0
    counted = count / max(tiers, 1) / (seconds / 3600)
    how = f"{count} writes of {tiers} tiers in {seconds:.0f} s: {counted:.1f} by count"
    gaps = watch.intervals("target", waves[0]["started"]) if watch and waves else []
    if not gaps:
        return counted, how
    mean = statistics.fmean(gaps)
    how = (
        f"one write every {mean:.0f} s on average, median {statistics.median(gaps):.0f} s "
        f"({len(gaps)} gaps ending in the measured waves); {how}"
    )
    return 3600 / mean, how


def goals(
    waves: Sequence[dict[str, Any]], opts: Options, peak_rss: float, watch: TierWatch | None
) -> list[Goal]:
    # a killed replica's tiers wait for its leases to lapse (bench/ownership.py)
    budget = opts.poll + GOAL_AGE_SLACK + (handover_bound(opts) if opts.kill_wave else 0.0)
    # the call goals are per 2,000 tiers (or fewer): batches fill the same way
    per = max(1, math.ceil(opts.tiers / 2000))
    goal_gmd, goal_dasg = GOAL_GET_METRIC_DATA * per, GOAL_DESCRIBE_GROUPS * per
    p99 = max(w["decision_age"]["p99"] for w in waves)
    worst = max(w["decision_age"]["max"] for w in waves)
    gmd = max(w["aws_calls_moto"].get("GetMetricData", 0) for w in waves)
    dasg = max(w["aws_calls_moto"].get("DescribeAutoScalingGroups", 0) for w in waves)
    cpu = statistics.fmean(w["cores"]["operator"] / max(len(w["replicas"]), 1) for w in waves)
    cpu_max = max(w["cores"]["operator"] / max(len(w["replicas"]), 1) for w in waves)
    steady, how = steady_writes(waves, watch)
    late = sum(w["decisions_late_over_5s"]["slower"] for w in waves)
    decisions = sum(w["decisions_late_over_5s"]["decisions"] for w in waves)
    return [
        Goal(
            f"no decision more than {GOAL_AGE_SLACK:g} s later than one poll after the previous"
            " (so no age above poll + 5 s at any instant; stackscaler_decision_lateness_seconds)",
            f"{late} of {decisions} decisions",
            late == 0,
        ),
        Goal(
            f"decision age p99 <= {budget:g} s at every sample (poll + {GOAL_AGE_SLACK:g} s"
            f"{' + the handover bound' if opts.kill_wave else ''})",
            f"worst wave p99 {p99:.1f} s",
            p99 <= budget,
        ),
        Goal(
            f"decision age max <= {budget:g} s at every sample",
            f"{worst:.1f} s",
            worst <= budget,
        ),
        Goal(
            f"GetMetricData <= {goal_gmd:g} per wave ({GOAL_GET_METRIC_DATA} per 2,000 tiers"
            " or fewer)",
            f"worst wave {gmd}",
            gmd <= goal_gmd,
        ),
        Goal(
            f"DescribeAutoScalingGroups <= {goal_dasg:g} per wave"
            f" ({GOAL_DESCRIBE_GROUPS} per 2,000 tiers or fewer)",
            f"worst wave {dasg}",
            dasg <= goal_dasg,
        ),
        Goal(
            f"operator CPU <= {GOAL_CPU_CORES} core (mean of the waves; with replicas, per"
            " live replica)",
            f"{cpu:.3f} (worst wave {cpu_max:.3f})",
            cpu <= GOAL_CPU_CORES,
        ),
        Goal(
            f"operator RSS <= {GOAL_RSS_MB:g} MB (peak, VmHWM; with replicas, the largest)",
            f"{peak_rss:.0f} MB",
            peak_rss <= GOAL_RSS_MB,
        ),
        Goal(
            f"steady-state API-server writes <= {GOAL_WRITES_PER_TIER_HOUR:g} per tier per hour"
            " (the at-target third)",
            f"{steady:.1f} ({how})",
            steady <= GOAL_WRITES_PER_TIER_HOUR,
        ),
    ]


def handover_bound(opts: Options) -> float:
    """How long after a replica dies its shards may stay untaken: one lease duration. A
    taker sees the dead replica's last renewal through its watch and looks again the
    moment that renewal is one lease duration old; the renewal came before the kill, so
    only the watch's and one round's latency (tens of ms) can add to it."""
    return opts.lease_duration


def replica_goals(bench: Bench, waves: Sequence[dict[str, Any]]) -> list[Goal]:
    """One owner at a time for every tier; a killed replica's shards and tiers taken over,
    a new replica's shards handed to it, within their bounds (bench/ownership.py)."""
    reps = bench.replicas
    assert reps is not None
    moves = {name: shard_moves(json_records(op.child.log)) for name, op in reps.all().items()}
    now = time.time()
    held = {name: sorted(held_at(moves[name], now)) for name in reps.live}
    say(f"shards held at the end, by each live replica's log: {held}")
    out = [one_owner_goal(bench)]
    for name, killed in reps.killed.items():
        out += kill_goals(bench, moves, name, killed)
    for name, ready in reps.ready.items():
        if reps.started[name] >= waves[0]["started"]:  # a join, not one of the first
            out.append(join_goal(bench, moves[name], name, ready))
    return out


def one_owner_goal(bench: Bench) -> Goal:
    names = [t.name for t in bench.tiers]
    own = ownership(bench.owners, names, close=1.0)
    return Goal(
        "every tier acted on by one replica at a time (no replica decides a tier again"
        " after another one did)",
        f"{len(own.split)} of {own.tiers} tiers split ({own.handovers} handovers; shortest"
        f" gap between two owners' decisions {own.shortest_handover or math.nan:.1f} s;"
        f" {len(own.close)} under 1 s)",
        not own.split and own.tiers == len(names),
    )


def kill_goals(
    bench: Bench, moves: Mapping[str, list[tuple[float, str, int]]], name: str, killed: float
) -> list[Goal]:
    """The shards ``name`` held when it was killed, and the tiers it decided, taken over."""
    opts = bench.opts
    bound = handover_bound(opts)
    shards = held_at(moves[name], killed)
    others = {k: v for k, v in moves.items() if k != name}
    takes = {s: first_take(others, s, killed) for s in shards}
    late = max((t - killed for _, t in filter(None, takes.values())), default=math.nan)
    tiers = owned_at(bench.owners, name, killed - opts.poll - GOAL_AGE_SLACK, killed)
    waited, orphans = taken_over(bench.owners, name, tiers, killed)
    worst = max(waited.values(), default=math.nan)
    limit = bound + opts.poll + GOAL_AGE_SLACK
    return [
        Goal(
            f"{name}'s shards taken by another replica within {bound:g} s of its SIGKILL"
            " (one lease duration)",
            f"shards {sorted(shards)}: "
            + ", ".join(
                f"{s} by {v[0]} after {v[1] - killed:.1f} s" if v else f"{s} never"
                for s, v in sorted(takes.items())
            ),
            bool(shards) and all(takes.values()) and late <= bound,
        ),
        Goal(
            f"each of {name}'s tiers decided by another replica within {limit:g} s of its"
            " SIGKILL (the shard's take, then the tier's next slot)",
            f"{len(waited)} of {len(tiers)} tiers, the last after {worst:.1f} s"
            f" (median {statistics.median(waited.values()) if waited else math.nan:.1f} s)"
            + (f"; never: {len(orphans)}" if orphans else ""),
            bool(tiers) and not orphans and worst <= limit,
        ),
    ]


def join_goal(
    bench: Bench, moves: Sequence[tuple[float, str, int]], name: str, ready: float
) -> Goal:
    """``name`` started in the measured waves: its first shard and its tiers' decisions.

    A joining replica counts every member lease it has not seen renewed yet as live for
    one lease duration (a killed replica's leftover one too): the kill's bound holds."""
    opts = bench.opts
    bound = handover_bound(opts)
    took = [t - ready for t, what, _ in moves if what == "took" and t >= ready]
    first = joined(bench.owners, name, ready)
    last = max(first.values(), default=math.nan)
    return Goal(
        f"{name}, started in the measured waves, takes a shard within {bound:g} s of"
        f" its /readyz and decides its tiers within one poll + {GOAL_AGE_SLACK:g} s more",
        f"first shard after {min(took, default=math.nan):.1f} s; {len(first)} tiers"
        f" decided, the last {last:.1f} s after /readyz",
        bool(took)
        and min(took) <= bound
        and bool(first)
        and last <= bound + opts.poll + GOAL_AGE_SLACK,
    )


def json_records(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON records of a replica's log (other lines skipped)."""
    with contextlib.suppress(OSError), path.open(errors="replace") as lines:
        for line in lines:
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if isinstance(rec, dict):
                        yield rec


def totals_by_server(waves: Sequence[dict[str, Any]]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for w in waves:
        for server, calls in w["aws_calls_by_server"].items():
            out.setdefault(server, Counter()).update(calls)
    return out


def totals(waves: Sequence[dict[str, Any]], key: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for w in waves:
        out.update(w[key])
    return out


def report(bench: Bench, waves: list[dict[str, Any]], warmup: float) -> dict[str, Any]:
    opts = bench.opts
    assert bench.replicas is not None
    lasts = [proc_sample(op.child.pid) for op in bench.replicas.live.values()]
    peak = max(
        [p.hwm_mb for p in lasts if p] + [w["operator_hwm_mb"] for w in waves], default=math.nan
    )
    print()
    servers = {
        "moto": "moto (Auto Scaling, EC2, STS)",
        "moto-cw-a": "moto-cw-a (CloudWatch)",
        "moto-cw-b": "moto-cw-b (CloudWatch)",
        "moto-cw": "CloudWatch, both (one answers at a time)",
    }
    for key, label in servers.items():
        cores = [w["cores"][key] for w in waves]
        print(f"{label}: {statistics.fmean(cores):.2f} core on average, at most {max(cores):.2f}")
    print("  (each moto is one Python process: ~1.0 core is all it has)")
    for key in ("moto", "moto-cw"):
        bound = [w["wave"] for w in waves if key in w["moto_bound"]]
        if bound:
            print(
                f"  {servers[key]} was the bottleneck in wave(s) {', '.join(map(str, bound))}"
                f" (>= {MOTO_BOUND} core): decision ages and AWS latencies there measure moto,"
                " not the operator."
            )
    if not any(w["moto_bound"] for w in waves):
        print(f"  no moto was the bottleneck (below {MOTO_BOUND} core in every wave).")
    misrouted = {
        server: {
            op: n for op, n in calls.items() if (op in CLOUDWATCH_OPS) != (server == "cloudwatch")
        }
        for server, calls in totals_by_server(waves).items()
    }
    if any(misrouted.values()):
        bench.notes.append(f"calls answered by the wrong moto: {misrouted}")
    feeder = bench.feeder
    if feeder is not None and feeder.turns:
        print(
            f"CloudWatch datapoints: {len(feeder.turns)} turns, each a reset and "
            f"{2 * len(bench.tiers)} datapoints in {statistics.fmean(feeder.turns):.1f} s on"
            f" average (at most {max(feeder.turns):.1f} s)"
        )
    host = [w["cores"]["host"] for w in waves]
    print(
        f"host: {statistics.fmean(host):.2f} of {os.cpu_count()} cores busy on average "
        "(everything on the machine, this run included)."
    )
    print(
        f"AWS calls by operation, all waves (moto's side): {dict(totals(waves, 'aws_calls_moto'))}"
    )
    print(
        f"AWS calls by operation, all waves (operator's {AWS_CALLS}): "
        f"{dict(totals(waves, 'aws_calls_operator'))}"
    )
    scrapes = [s for op in bench.replicas.all().values() for s in op.scrapes]
    if scrapes:
        print(
            f"operator /metrics scrapes: {len(scrapes)}, {statistics.fmean(scrapes):.2f} s each "
            "on average (their cost is in the operator's CPU)"
        )
    sw = totals(waves, "operator_status_writes")
    if sw:
        print(f"status writes, all waves (operator's {STATUS_WRITES}): {dict(sw)}")
    print(f"decision clock: {bench.clock}; first decision of every tier after {warmup:.0f} s")
    for note in bench.notes:
        print(f"note: {note}")
    if bench.watch is not None and bench.watch.errors:
        print(f"note: the watch restarted {len(bench.watch.errors)} time(s) on errors")
    if bench.feeder is not None and bench.feeder.errors:
        print(f"note: CPU feeder errors: {bench.feeder.errors[:3]}")
    print()
    if (opts.tiers, opts.poll) != (2000, 30):
        print(
            f"goals (set for 2,000 tiers at a 30 s poll; this run: {opts.tiers} at {opts.poll} s):"
        )
    else:
        print("goals:")
    checked = goals(waves, opts, peak, bench.watch)
    if opts.replicas > 1:
        checked += replica_goals(bench, waves)
    for g in checked:
        print(f"  {'PASS' if g.ok else 'FAIL'}  {g.name}: {g.measured}")
    return {
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "decision_clock": bench.clock,
        "warmup_seconds": round(warmup, 1),
        "waves": waves,
        "operator_peak_rss_mb": peak,
        "goals": [asdict(g) for g in checked],
        "notes": bench.notes,
    }


# --- main ---------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, flush=True)


def sleep_until(moment: float, check: Callable[[], None] | None) -> None:
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 5.0))
        if check is not None:
            check()


def parse(argv: Iterable[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    p.add_argument("--tiers", type=int, default=2000, help="WebTiers and groups (default 2000)")
    p.add_argument("--waves", type=int, default=10, help="measured waves (default 10)")
    p.add_argument(
        "--warmup-waves",
        type=int,
        default=10,
        help="waves after the first decisions (default 10: one status refresh interval at 30 s)",
    )
    p.add_argument("--poll", type=int, default=30, help="pollIntervalSeconds (default 30)")
    p.add_argument(
        "--sample-every",
        type=float,
        default=10.0,
        help="decision-age sampling (s; each sample scrapes the operator's /metrics)",
    )
    p.add_argument("--cooldown", type=int, default=600, help="scaling tiers' cooldown (s)")
    p.add_argument("--max-capacity", type=int, default=4)
    p.add_argument("--warmup-timeout", type=float, default=900.0)
    p.add_argument("--workers", type=int, default=8, help="threads creating groups and tiers")
    p.add_argument(
        "--plain-moto",
        action="store_true",
        help="CloudWatch on moto as is (its GetMetricData compares every datapoint with every"
        " query: 9-12 s a wave at 2,000 tiers); default: bench/moto_indexed.py",
    )
    p.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="stackscaler run processes (default 1); above 1 they share the tiers through"
        " Leases (--shards)",
    )
    p.add_argument("--shards", type=int, help="--shards of every replica (default: --replicas)")
    p.add_argument("--lease-duration", type=float, default=15.0, help="(s; default 15)")
    p.add_argument(
        "--kill-wave", type=int, default=0, help="SIGKILL the first replica as this wave starts"
    )
    p.add_argument(
        "--rejoin-wave", type=int, default=0, help="start one more replica as this wave starts"
    )
    p.add_argument("--json", type=Path, dest="json_out", help="write the results here")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    a = p.parse_args(list(argv) if argv is not None else None)
    if a.tiers < 3 or a.waves < 1 or a.poll < 5 or a.max_capacity < 2:
        p.error("need --tiers >= 3, --waves >= 1, --poll >= 5, --max-capacity >= 2")
    shards = a.shards if a.shards is not None else (a.replicas if a.replicas > 1 else 0)
    if a.replicas < 1 or (a.replicas > 1 and shards < 1) or shards < 0:
        p.error("need --replicas >= 1, and --shards >= 1 with more than one replica")
    for flag, wave in (("--kill-wave", a.kill_wave), ("--rejoin-wave", a.rejoin_wave)):
        if wave and (a.replicas < 2 or not 1 <= wave <= a.waves):
            p.error(f"{flag} needs --replicas >= 2 and a wave from 1 to --waves")
    return Options(
        a.tiers,
        a.waves,
        a.warmup_waves,
        a.poll,
        a.sample_every,
        a.cooldown,
        a.max_capacity,
        a.warmup_timeout,
        a.workers,
        a.json_out,
        a.keep,
        a.plain_moto,
        a.replicas,
        shards,
        a.lease_duration,
        a.kill_wave,
        a.rejoin_wave,
    )


def main(argv: Iterable[str] | None = None) -> int:
    opts = parse(argv)
    # the proxy's "Error handling request" when the operator gives up on a slow moto answer
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    bench = Bench(opts, workdir)
    failed = True
    try:
        try:
            bench.setup()
        except cp.ControlPlaneUnavailable as exc:
            say(f"bench-scale needs the control plane: {exc}")
            return 2
        warmup = bench.warm_up()
        say(f"every tier decided after {warmup:.0f} s (clock: {bench.clock})")
        waves = bench.run_waves()
        out = report(bench, waves, warmup)
        if opts.json_out is not None:
            opts.json_out.write_text(json.dumps(out, indent=1) + "\n")
            say(f"results: {opts.json_out}")
        failed = False
        return 0
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if failed and bench.replicas is not None:
            for name, op in bench.replicas.all().items():
                say(f"--- {name} log (last lines) ---\n{tail(op.child.log, 30)}")
        bench.teardown()
        if opts.keep or failed:
            say(f"logs kept in {workdir / 'logs'}")
            shutil.rmtree(workdir / "cp", ignore_errors=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
