"""The Argo CD health check on statuses the operator really wrote.

The real `stackscaler run` reconciles WorkerPools and a WebTier on moto in
every state a user meets: holding at target, scaling out, metrics unknown
(then in fallback), paused, dry run, a target that does not exist, a target
another resource already manages, a resource the operator does not watch
(never reconciled), and a spec changed while the operator is stopped (a new
generation). Each object is read back from the API server and run through
docs/gitops/argocd/health.lua by Debian's lua5.4 in Argo CD's sandbox
(tests/gitops/argocd_harness.lua); the health status and message are
asserted against the conditions the operator wrote.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stackscaler.model.crds import KINDS
from tests.e2e.conftest import Aws, Kube, Recorder, condition, eventually, suffix
from tests.faults.support import cpu, web_tier, worker_pool
from tests.gitops.argocd_cm import ARGOCD_CM, key
from tests.gitops.lua import HEALTH_LUA, argocd_health, lua_binary

pytestmark = pytest.mark.controlplane

PAUSED = "stackscaler.dev/paused"


def _state(kube: Kube, kind: str, ns: str, name: str, **want: str) -> dict[str, Any]:
    """Wait until the resource's conditions have the statuses in ``want``; the object."""

    def check() -> dict[str, Any]:
        body = kube.get(kind, ns, name)
        status = body.get("status") or {}
        for type_, value in want.items():
            assert condition(status, type_)["status"] == value, status.get("conditions")
        return body

    return eventually(check, what=f"{kind} {name}: {want}")


def _message(body: dict[str, Any], type_: str) -> str:
    return str(condition(body["status"], type_)["message"])


def test_health_of_what_the_operator_wrote(
    aws: Aws, kube: Kube, operator: Any, recorder: Any, namespace: str
) -> None:
    lua_binary()  # skip (or fail under CI) before starting anything
    ns = namespace
    steady, growing, blind = (f"{n}-{suffix()}" for n in ("steady", "growing", "blind"))
    for group, desired in ((steady, 3), (growing, 1), (blind, 2)):
        aws.group_with_template(group, desired=desired, max_size=20)
    aws.send(aws.queue(steady), 300)  # 3 workers' worth: holds at 3
    aws.send(aws.queue(growing), 500)  # 5 workers' worth: 1 -> 5
    for name in ("paused", "dry"):
        aws.send(aws.queue(f"{name}-{steady}"), 900)  # would scale 3 -> 9

    def pool(name: str, group: str, queue: str, **spec: Any) -> dict[str, Any]:
        return worker_pool(ns, name, group, queue, **spec)

    paused = pool("paused", f"paused-{steady}", f"paused-{steady}")
    paused["metadata"]["annotations"] = {PAUSED: "true"}
    docs = [
        pool("steady", steady, steady),
        pool("growing", growing, growing),
        paused,
        pool("dry", f"dry-{steady}", f"dry-{steady}", mode="DryRun"),
        pool("missing", f"missing-{steady}", steady),
        web_tier(
            ns,
            "blind",
            blind,
            metrics=[cpu(blind)],  # no datapoint in CloudWatch: unknown
            onMetricsUnavailable={
                "failureThreshold": 2,
                "action": "Fallback",
                "fallbackCapacity": 2,
            },
        ),
    ]
    for name in ("paused", "dry"):
        aws.group_with_template(f"{name}-{steady}", desired=3, max_size=20)
    kube.apply(*docs)
    # a namespace the operator does not watch: never reconciled
    elsewhere = f"{ns}-unwatched"
    kube.run("create", "namespace", elsewhere)
    kube.apply(worker_pool(elsewhere, "orphan", steady, steady))

    rec: Recorder = recorder("WorkerPool", ns, "growing")
    op = operator(ns)

    # holding at target: Healthy, with the decision as the message
    body = _state(kube, "WorkerPool", ns, "steady", Ready="True", MetricsAvailable="True")
    assert body["status"]["currentCapacity"] == body["status"]["desiredCapacity"] == 3
    assert argocd_health(body) == ("Healthy", _message(body, "Ready"))
    assert _message(body, "Ready").startswith("hold 3")

    # created later than "steady" (a second later at least: creationTimestamp counts
    # seconds), naming the same group: steady keeps it, the rival is refused
    def later() -> None:
        kube.apply(pool("rival", steady, steady))
        rival = kube.get("WorkerPool", ns, "rival")["metadata"]["creationTimestamp"]
        if rival <= body["metadata"]["creationTimestamp"]:
            kube.run("delete", "workerpools", "rival", "-n", ns, "--wait")
            raise AssertionError(f"created in the same second as steady: {rival}")

    eventually(later, what="a rival created after steady")

    # the scale-out as it was recorded (current 1, desired 5): Healthy, not Progressing
    def scaled_out() -> dict[str, Any]:
        ticks = [t for t in rec.snapshot() if t.direction == "Out"]
        assert ticks, [t.status.get("lastDecision") for t in rec.snapshot()]
        return ticks[0].status

    status = eventually(scaled_out, what="growing scales out")
    assert (status["currentCapacity"], status["desiredCapacity"]) == (1, 5), status
    live = kube.get("WorkerPool", ns, "growing")
    tick = {**copy.deepcopy(live), "status": status}
    ready = str(condition(status, "Ready")["message"])
    assert argocd_health(tick) == ("Healthy", f"scaling: {ready}")
    assert ready.startswith("1 -> 5")
    eventually(lambda: _assert_eq(aws.desired(growing), 5), what="moto at 5")
    eventually(
        lambda: _assert_eq(kube.status("WorkerPool", ns, "growing")["currentCapacity"], 5),
        what="growing observed at 5",
    )
    body = kube.get("WorkerPool", ns, "growing")
    assert argocd_health(body) == ("Healthy", _message(body, "Ready"))

    # paused by the annotation: Suspended, saying what it would do
    body = _state(kube, "WorkerPool", ns, "paused", Ready="True", Paused="True")
    assert argocd_health(body) == ("Suspended", _message(body, "Paused"))
    assert "paused by the stackscaler.dev/paused annotation; would scale 3 -> 9" in (
        _message(body, "Paused")
    )

    # DryRun: Suspended too
    body = _state(kube, "WorkerPool", ns, "dry", Ready="True", DryRun="True")
    assert argocd_health(body) == ("Suspended", "DryRun: " + _message(body, "DryRun"))
    assert _message(body, "DryRun").startswith("would scale 3 -> 9")

    # a target that does not exist: Ready=False, Degraded with its message
    body = _state(kube, "WorkerPool", ns, "missing", Ready="False")
    assert argocd_health(body) == ("Degraded", _message(body, "Ready"))
    assert f"missing-{steady}" in _message(body, "Ready")

    # a second resource on steady's group: Conflict, Degraded
    body = _state(kube, "WorkerPool", ns, "rival", Ready="False", Conflict="True")
    assert argocd_health(body) == ("Degraded", _message(body, "Conflict"))
    assert "managed by the older" in _message(body, "Conflict")

    # no CloudWatch data: MetricsAvailable=False, then in fallback: Degraded both times
    body = _state(kube, "WebTier", ns, "blind", Ready="True", MetricsAvailable="False")
    health, message = argocd_health(body)
    assert health == "Degraded"
    assert message.startswith("metrics unavailable: " + _message(body, "MetricsAvailable"))
    assert _message(body, "MetricsAvailable").startswith("cpu: ")
    body = _state(kube, "WebTier", ns, "blind", MetricsAvailable="False", Fallback="True")
    assert argocd_health(body) == (
        "Degraded",
        f"metrics unavailable: {_message(body, 'MetricsAvailable')}; "
        f"in fallback: {_message(body, 'Fallback')}",
    )

    # never reconciled (the operator does not watch its namespace): Progressing
    body = kube.get("WorkerPool", elsewhere, "orphan")
    assert "status" not in body
    assert argocd_health(body) == (
        "Progressing",
        "waiting for the stackscaler operator to reconcile this resource",
    )

    # a spec changed while the operator is stopped: the status is about generation 1
    assert op.stop() == 0
    kube.merge_patch("WorkerPool", ns, "steady", {"spec": {"maxCapacity": 30}})
    body = kube.get("WorkerPool", ns, "steady")
    assert (body["metadata"]["generation"], body["status"]["observedGeneration"]) == (2, 1)
    assert argocd_health(body) == (
        "Progressing",
        "waiting for the stackscaler operator to reconcile generation 2 "
        "(the status is about generation 1)",
    )
    # started again, it reconciles generation 2: Healthy again
    operator(ns)

    def caught_up() -> dict[str, Any]:
        body = kube.get("WorkerPool", ns, "steady")
        assert body["status"]["observedGeneration"] == 2, body["status"]
        return body

    body = eventually(caught_up, what="generation 2 reconciled")
    assert argocd_health(body) == ("Healthy", _message(body, "Ready"))


def _assert_eq(got: Any, want: Any) -> None:
    assert got == want, got


def test_the_documented_patch_installs_the_checks_and_keeps_the_rest(
    kube: Kube, namespace: str
) -> None:
    """`kubectl patch configmap argocd-cm --type merge --patch-file argocd-cm.yaml`."""
    kube.run(
        "create", "configmap", "argocd-cm", "-n", namespace, "--from-literal=url=https://cd.example"
    )
    kube.run(
        "patch", "configmap", "argocd-cm", "-n", namespace, "--type", "merge",
        "--patch-file", str(ARGOCD_CM),
    )  # fmt: skip
    data = kube.core.read_namespaced_config_map("argocd-cm", namespace).data
    script = HEALTH_LUA.read_text()
    assert data == {"url": "https://cd.example", **{key(kind): script for kind in KINDS}}
