"""A GitOps re-sync never undoes the operator's work.

The WorkerPool's manifest is created the way Argo CD syncs by default (client-side
`kubectl apply`); the real operator scales its Auto Scaling group in moto from 1 to 3
(300 messages, 100 per worker). Then the same manifest is synced again, every way a
GitOps tool does it: client-side apply (Argo CD's default), server-side apply with
--force-conflicts as Argo CD (ServerSideApply=true, field manager argocd-controller)
and Flux (kustomize-controller) do, and a replace (Argo CD's Replace=true). After each:
the spec and the generation are unchanged, the status is the operator's (nothing
material in it changed), and the operator's own field manager owns only /status fields,
with no finalizer and no annotation. Afterwards the operator keeps deciding, and
neither scales back nor reports an out-of-band change; the group stays at 3.

And what a re-sync does to a pause set by hand (``kubectl annotate``, not in Git): the
three apply ways keep it, a replace drops it.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
import yaml

from stackscaler.reconcile import material
from tests.e2e.conftest import (
    Aws,
    Kube,
    Recorder,
    condition,
    conditions,
    decision_counts,
    decisions_after,
    eventually,
    suffix,
)
from tests.faults.support import worker_pool

pytestmark = pytest.mark.controlplane

PAUSED = "stackscaler.dev/paused"
GITOPS_MANAGERS = ("kubectl-client-side-apply", "kubectl-replace", "argocd-controller")


def _sync(kube: Kube, how: str, doc: dict[str, Any]) -> str:
    manifest = yaml.safe_dump(doc)
    if how == "client-side apply":  # Argo CD's default sync
        return kube.run("apply", "-f", "-", stdin=manifest)
    if how == "replace":  # Argo CD's Replace=true
        return kube.run("replace", "-f", "-", stdin=manifest)
    manager = {"argocd server-side apply": "argocd-controller", "flux": "kustomize-controller"}
    return kube.run(
        "apply", "--server-side", "--force-conflicts", "--field-manager", manager[how],
        "-f", "-", stdin=manifest,
    )  # fmt: skip


def _operator_fields(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The managedFields entries of every manager that is not a GitOps tool (the operator)."""
    return [
        m
        for m in body["metadata"].get("managedFields") or []
        if m.get("manager") not in (*GITOPS_MANAGERS, "kustomize-controller")
    ]


def test_a_resync_never_undoes_the_operators_work(
    aws: Aws, kube: Kube, operator: Any, recorder: Any, namespace: str
) -> None:
    group = f"workers-{suffix()}"
    aws.group_with_template(group, desired=1, max_size=20)
    aws.send(aws.queue(group), 300)
    doc = worker_pool(namespace, "workers", group, group)
    _sync(kube, "client-side apply", doc)
    ref = ("WorkerPool", namespace, "workers")
    desired: Recorder = recorder(*ref, probe=lambda: aws.desired(group))
    op = operator(namespace)

    def scaled() -> dict[str, Any]:
        body = kube.get(*ref)
        status = body.get("status") or {}
        assert (status.get("currentCapacity"), status.get("desiredCapacity")) == (3, 3), status
        assert "lastScaleOutTime" in status and "pendingAction" not in status, status
        assert aws.desired(group) == 3
        return body

    before = eventually(scaled, what="the operator scales 1 -> 3 and observes 3")
    spec, generation = before["spec"], before["metadata"]["generation"]
    assert before["status"]["observedGeneration"] == generation
    assert _operator_fields(before), before["metadata"].get("managedFields")
    synced_at = time.time()
    mark: Counter[str] = decision_counts(op, ref)

    for how in ("client-side apply", "argocd server-side apply", "flux", "replace"):
        out = _sync(kube, how, doc)
        if how == "client-side apply":  # kubectl's three-way diff of Git and live: empty
            assert out.strip() == "workerpool.stackscaler.dev/workers unchanged", out
        else:
            assert out.startswith("workerpool.stackscaler.dev/workers "), out
        body = kube.get(*ref)
        assert body["spec"] == spec, how
        assert body["metadata"]["generation"] == generation, how
        assert material(body["status"]) == material(before["status"]), how
        assert condition(body["status"], "Ready")["status"] == "True", how
        # the operator's writes are /status only: no spec, no annotation, no finalizer
        for entry in _operator_fields(body):
            assert entry.get("subresource") == "status", (how, entry)
        assert not body["metadata"].get("finalizers"), how
        annotations = set(body["metadata"].get("annotations") or {})
        assert annotations <= {"kubectl.kubernetes.io/last-applied-configuration"}, annotations

    # the operator goes on deciding from the same status: it holds at 3
    new = decisions_after(op, ref, mark, 3, what="three decisions after the re-syncs")
    assert set(new) == {"None"}, new
    after = kube.get(*ref)
    assert material(after["status"]) == material(before["status"])
    assert after["status"]["lastScaleOutTime"] == before["status"]["lastScaleOutTime"]
    assert conditions(after["status"]).get("OutOfBandChange", {}).get("status") != "True"
    assert desired.probed_since(synced_at) == [3]
    assert aws.desired(group) == 3
    assert [e.reason for e in kube.events(*ref)].count("ScaledOut") == 1


def test_a_pause_set_by_hand_survives_a_resync_except_a_replace(kube: Kube, namespace: str) -> None:
    """What a re-sync does to an annotation someone set with kubectl."""
    doc = worker_pool(namespace, "workers", f"workers-{suffix()}", "jobs")

    def paused() -> str | None:
        meta = kube.get("WorkerPool", namespace, "workers")["metadata"]
        return (meta.get("annotations") or {}).get(PAUSED)

    # not in Git: the applies keep it, a replace (the whole object from Git) drops it
    _sync(kube, "client-side apply", doc)
    kube.annotate("WorkerPool", namespace, "workers", PAUSED, "true")
    for how in ("client-side apply", "argocd server-side apply", "flux"):
        _sync(kube, how, doc)
        assert paused() == "true", how
    _sync(kube, "replace", doc)
    assert paused() is None
    # in Git as "false": every way of syncing puts Git's value back
    doc["metadata"]["annotations"] = {PAUSED: "false"}
    for how in ("client-side apply", "argocd server-side apply", "flux", "replace"):
        _sync(kube, "client-side apply", doc)
        kube.annotate("WorkerPool", namespace, "workers", PAUSED, "true")
        _sync(kube, how, doc)
        assert paused() == "false", how
