"""Hostile specs beside a good one: a namespace can only reach what it was granted.

One operator, a tenancy file, two namespaces. The hostile namespace names a
role of another account, a group it was not granted, an internal URL, and a
Prometheus server (granted to it, and turned hostile) that answers with an
endless body. Each hostile resource gets a clear condition and one Event
naming the rule, the internal service is never called, the big answer is
cut at the size cap, nothing outside the grant changes, and the good tier in
the other namespace keeps scaling at its own cadence all along. Then three
WebTiers name one group: the oldest keeps it, the others report Conflict.
"""

from __future__ import annotations

import http.server
import itertools
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.e2e.conftest import (
    Aws,
    Kube,
    Recorder,
    condition,
    decision_clock,
    decision_times,
    decisions_seen,
    event_messages,
    eventually,
    suffix,
)
from tests.faults.specs import cpu_web_tier

pytestmark = pytest.mark.controlplane

OTHER_ACCOUNT_ROLE = "arn:aws:iam::999988887777:role/stackscaler-admin"
SECRET = "AKIAINTERNALSECRET/do-not-leak"
CAP = 1024 * 1024  # the Prometheus source's default maxResponseBytes


class Served(http.server.ThreadingHTTPServer):
    """A loopback HTTP server that counts requests and the bytes it managed to send."""

    daemon_threads = True

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.requests = 0
        self.sent = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class InternalService(http.server.BaseHTTPRequestHandler):
    """Something inside the cluster a tenant must never reach through the operator."""

    def do_GET(self) -> None:
        assert isinstance(self.server, Served)
        with self.server.lock:
            self.server.requests += 1
        body = f"credentials: {SECRET}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class EndlessAnswer(http.server.BaseHTTPRequestHandler):
    """A 'Prometheus' that answers 200 with 600 MB (no Content-Length) until hung up on."""

    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        assert isinstance(self.server, Served)
        with self.server.lock:
            self.server.requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        chunk = b'{"status":"success","data":' + b" " * 65536
        try:
            for _ in range(600 * 16):  # 600 MB at most, bounded
                self.wfile.write(chunk)
                with self.server.lock:
                    self.server.sent += len(chunk)
        except OSError:
            return

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[Served, Served]]:
    internal, endless = Served(InternalService), Served(EndlessAnswer)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (internal, endless)]
    for t in threads:
        t.start()
    yield internal, endless
    for s in (internal, endless):
        s.shutdown()
        s.server_close()


def _namespace(api: client.ApiClient, stem: str) -> str:
    name = f"{stem}-{os.urandom(4).hex()}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    return name


def prometheus_tier(ns: str, name: str, group: str, address: str) -> dict[str, Any]:
    doc = cpu_web_tier(ns, name, group, max_capacity=20)
    doc["spec"]["metrics"] = [
        {
            "name": "requests",
            "target": {"type": "AverageValue", "value": 100},
            "prometheus": {
                "serverAddress": address,
                "query": "sum(rate(x[1m]))",
                "timeoutSeconds": 5,
            },
        }
    ]
    return doc


def test_a_hostile_namespace_changes_nothing_outside_its_grant_while_a_good_tier_scales(
    *,
    aws: Aws,
    kube: Kube,
    operator: Any,
    recorder: Any,
    api_client: client.ApiClient,
    namespace: str,
    servers: tuple[Served, Served],
    tmp_path: Path,
) -> None:
    internal, endless = servers
    good_ns, evil_ns = namespace, _namespace(api_client, "t-hostile")
    good, evil = f"good-{suffix()}", f"evil-{suffix()}"
    for group in (good, evil):
        aws.group_with_template(group, desired=2, max_size=50)
    aws.cpu(good, 50.0)  # on target for now
    aws.cpu(evil, 90.0)
    tenancy = tmp_path / "tenancy.yaml"
    tenancy.write_text(
        yaml.safe_dump(
            {
                "accountId": "123456789012",
                "tenants": [
                    {
                        "name": "good",
                        "namespaces": [good_ns],
                        "autoScalingGroups": ["good-*"],
                        "cloudWatchNamespaces": ["AWS/EC2"],
                    },
                    {
                        "name": "evil",
                        "namespaces": [evil_ns],
                        "autoScalingGroups": ["evil-*"],
                        "cloudWatchNamespaces": ["AWS/EC2"],
                        "prometheusServers": [endless.url],  # its own server, turned hostile
                    },
                ],
            }
        )
    )
    kube.apply(cpu_web_tier(good_ns, "web", good))
    rec: Recorder = recorder("WebTier", good_ns, "web", probe=lambda: aws.desired(good))
    op = operator(good_ns, evil_ns, args=("--tenancy", str(tenancy)))
    clock = decision_clock(recorder, op, "WebTier", good_ns, "web")
    decisions_seen(clock, 2, what="the good tier ticks")

    hostile = {
        "foreign-role": cpu_web_tier(evil_ns, "foreign-role", evil, roleArn=OTHER_ACCOUNT_ROLE),
        "not-granted": cpu_web_tier(evil_ns, "not-granted", good),
        "internal-url": prometheus_tier(evil_ns, "internal-url", evil, internal.url + "/secrets"),
        "huge": prometheus_tier(evil_ns, "huge", evil, endless.url),
    }
    kube.apply(*hostile.values())
    expected = {
        "foreign-role": ("NotGranted", "spec.target.roleArn", "rule roles"),
        "not-granted": ("NotGranted", "spec.target.name", "rule autoScalingGroups"),
        "internal-url": (
            "NotGranted",
            "spec.metrics[0].prometheus.serverAddress",
            "rule prometheusServers",
        ),
    }

    def denied() -> None:
        for name, (reason, field, rule) in expected.items():
            ready = condition(kube.status("WebTier", evil_ns, name), "Ready")
            assert (ready["status"], ready["reason"]) == ("False", reason), (name, ready)
            assert ready["message"].startswith(field) and rule in ready["message"], ready

    eventually(denied, what="every hostile resource denied")

    def cut() -> None:  # granted, so read: and cut at the size cap
        available = condition(kube.status("WebTier", evil_ns, "huge"), "MetricsAvailable")
        assert available["status"] == "False", available
        assert "larger than" in available["message"], available
        assert endless.requests >= 1

    eventually(cut, what="the endless answer cut at the cap")

    # the good tier scales on a rising metric while all of that goes on
    aws.cpu(good, 100.0)

    def scaled() -> int:
        probed = rec.probed()
        assert probed[-1] > 2, probed  # (50 + 100) / 2 in the period: 3
        return int(probed[-1])

    scaled_to = eventually(scaled, what="the good tier scaled out")

    # nothing outside the grant changed; the internal service never saw a request
    assert aws.desired(good) == scaled_to  # only the good tier's own action
    assert aws.desired(evil) == 2  # denied resources do nothing, even on their own group
    assert internal.requests == 0
    assert endless.sent < 32 * CAP, endless.sent  # not 600 MB: the operator hung up
    for name, (reason, _, rule) in expected.items():
        messages = event_messages(kube, "WebTier", evil_ns, name, reason)
        assert len(messages) == 1 and rule in messages[0], messages
    everything = str([kube.status("WebTier", evil_ns, n) for n in hostile]) + str(
        [e.message for n in hostile for e in kube.events("WebTier", evil_ns, n)]
    )
    assert SECRET not in everything
    assert "credentials" not in everything

    # the good tier never missed a tick: its decisions are one poll interval apart
    times = decision_times(clock)  # every decision, its status written or not
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps and max(gaps) <= 5.0 + 1.0, gaps
    assert not [p for p in op.problems() if "good" in p], op.problems()


def test_three_tiers_on_one_group_the_oldest_keeps_it(
    *, aws: Aws, kube: Kube, operator: Any, recorder: Any, namespace: str
) -> None:
    group = f"shared-{suffix()}"
    aws.group_with_template(group, desired=2, max_size=50)
    aws.cpu(group, 100.0)
    kube.apply(cpu_web_tier(namespace, "first", group))
    eventually(
        lambda: kube.get("WebTier", namespace, "first")["metadata"]["creationTimestamp"],
        what="first created",
    )
    time.sleep(1.1)  # creationTimestamp has 1 s resolution: "first" is strictly older
    kube.apply(cpu_web_tier(namespace, "second", group))
    time.sleep(1.1)  # and "second" strictly older than "third": it takes over next
    kube.apply(cpu_web_tier(namespace, "third", group))
    op = operator(namespace)

    def settled() -> None:
        for name in ("second", "third"):
            status = kube.status("WebTier", namespace, name)
            conflict = condition(status, "Conflict")
            assert conflict["status"] == "True", conflict
            assert f"WebTier {namespace}/first" in conflict["message"]
            assert condition(status, "Ready")["reason"] == "TargetConflict"
        assert aws.desired(group) == 4

    eventually(settled, what="the oldest scales, the others report Conflict")
    for name in ("first", "second", "third"):  # nobody took another's change for out-of-band
        assert "OutOfBandChange" not in kube.reasons("WebTier", namespace, name)
    assert len(event_messages(kube, "WebTier", namespace, "second", "TargetConflict")) == 1

    kube.run("delete", "webtier", "first", "-n", namespace)
    aws.cpu(group, 100.0)

    def taken_over() -> None:
        status = kube.status("WebTier", namespace, "second")
        assert condition(status, "Conflict")["status"] == "False"
        assert aws.desired(group) == 8

    eventually(taken_over, what="the next oldest takes over", timeout=90)
    assert condition(kube.status("WebTier", namespace, "third"), "Conflict")["status"] == "True"
    assert not op.problems()
