"""A GitOps fight: a pipeline re-applies the spec every 2 s, a human sets DesiredCapacity.

The workers sit at 3 (300 messages, 100 per worker). A CD pipeline applies
the same manifest again and again, stamping its run number into an
annotation (a metadata change, no new generation); meanwhile someone sets
the group's DesiredCapacity by hand, to 7 and later to 5. The operator
accepts each hand-made value: it reports it once (the OutOfBandChange
condition and one Event per change), restarts its cooldowns from it, and
does not set the group back on the next tick (the 300 s cooldown holds it:
after that it would make one change, not a loop). The pipeline's re-applies
neither wake the resource early nor wipe what the status remembers.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from typing import Any

import pytest

from tests.e2e.conftest import (
    Aws,
    Kube,
    Recorder,
    assert_spec_untouched,
    condition,
    decision_counts,
    decisions_after,
    event_messages,
    eventually,
    generations,
    suffix,
)
from tests.faults.support import worker_pool

pytestmark = pytest.mark.controlplane

POLL, COOLDOWN = 5, 300


class Pipeline:
    """`kubectl apply` of the same manifest every ``every`` seconds, run number annotated."""

    def __init__(self, kube: Kube, doc: dict[str, Any], every: float = 2.0) -> None:
        self.kube, self.doc, self.every = kube, doc, every
        self.runs = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pipeline", daemon=True)

    def start(self) -> Pipeline:
        self._thread.start()
        return self

    def _loop(self) -> None:
        for run in itertools.count(1):
            doc = dict(self.doc)
            doc["metadata"] = {
                **self.doc["metadata"],
                "annotations": {"ci.example.com/run": str(run)},
            }
            try:
                self.kube.apply(doc)
                self.runs += 1
            except AssertionError as exc:
                self.failures.append(str(exc))
            if self._stop.wait(self.every):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=70)


def test_hand_made_changes_are_reported_once_each_and_not_fought(
    aws: Aws, kube: Kube, operator: Any, recorder: Any, namespace: str
) -> None:
    group, queue = f"workers-{suffix()}", f"jobs-{suffix()}"
    aws.group_with_template(group, desired=3, max_size=20)
    aws.send(aws.queue(queue), 300)
    manifest = worker_pool(
        namespace,
        "workers",
        group,
        queue,
        poll=POLL,
        behavior={
            "scaleOut": {"cooldownSeconds": COOLDOWN},
            "scaleIn": {"cooldownSeconds": COOLDOWN, "stabilizationWindowSeconds": 0},
        },
    )
    kube.apply(manifest)
    rec: Recorder = recorder("WorkerPool", namespace, "workers", probe=lambda: aws.desired(group))
    op = operator(namespace)
    workers = ("WorkerPool", namespace, "workers")
    labels = dict(zip(("kind", "namespace", "name"), workers, strict=True))
    # the first decision is written; a second that changes nothing is only counted
    steady = rec.wait_ticks(1, after=0, what="a decision at 3")
    assert all((t.current, t.desired) == (3, 3) for t in steady)
    assert steady[-1].status["appliedCapacity"] == 3
    directions = decisions_after(op, workers, Counter(), 2, what="two decisions at 3")
    assert set(directions) == {"None"}, directions
    assert op.sample("stackscaler_capacity_desired", labels) == 3
    before = generations(kube, namespace, [("WorkerPool", "workers")])

    pipeline = Pipeline(kube, manifest).start()
    fighting = time.time()
    decided_before = decision_counts(op, workers).total()
    try:
        for was, now in ((3, 7), (7, 5)):
            aws.autoscaling.set_desired_capacity(
                AutoScalingGroupName=group, DesiredCapacity=now, HonorCooldown=False
            )
            changed = time.time()

            def reported(was: int = was, now: int = now) -> None:
                status = kube.status("WorkerPool", namespace, "workers")
                oob = condition(status, "OutOfBandChange")
                assert (oob["status"], oob["reason"]) == ("True", "CapacityChangedOutOfBand")
                assert f"from {was} to {now} outside stackscaler" in oob["message"], oob
                assert status["appliedCapacity"] == now

            eventually(reported, what=f"the change {was} -> {now} reported")
            # three more decisions: the metric asks for 3; the cooldown holds the hand's
            # value (they change nothing material: counted by the operator, not written)
            mark = decision_counts(op, workers, by="limited_by")
            directions = decision_counts(op, workers)
            held = decisions_after(
                op, workers, mark, 3, by="limited_by", what=f"ticks after the change to {now}"
            )
            assert set(held) == {"scaleInCooldown"}, held
            assert decision_counts(op, workers) - directions == {"None": held.total()}
            assert op.sample("stackscaler_capacity_desired", labels) == now
            t = rec.since(changed)[-1]
            assert (t.current, t.desired, t.direction) == (now, now, "None"), t.decision
            assert t.limited_by == "scaleInCooldown", t.decision
            assert t.metric("backlog")["recommendation"] == 3
            assert aws.desired(group) == now
    finally:
        pipeline.stop()

    assert not pipeline.failures, pipeline.failures
    assert pipeline.runs >= 5, pipeline.runs
    assert rec.probed_since(fighting) == [3, 7, 5]  # only the human changed the group
    oob = event_messages(kube, "WorkerPool", namespace, "workers", "OutOfBandChange")
    assert len(oob) == 2, oob  # once per change, not once per tick
    assert "from 3 to 7" in oob[0] and "from 7 to 5" in oob[1], oob
    reasons = kube.reasons("WorkerPool", namespace, "workers")
    assert "ScaledIn" not in reasons and "ScaledOut" not in reasons, reasons
    assert not op.samples("stackscaler_aws_calls_total", {"operation": "SetDesiredCapacity"})
    # the re-applies did not wake the resource: one decision per poll interval
    times = sorted({t.time for t in rec.since(fighting)})
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps and min(gaps) >= POLL - 1, gaps
    fought = time.time() - fighting
    decided = decision_counts(op, workers).total() - decided_before
    assert decided <= fought / POLL + 2, (decided, fought)
    annotations = kube.get("WorkerPool", namespace, "workers")["metadata"]["annotations"]
    assert annotations["ci.example.com/run"] == str(pipeline.runs)
    assert_spec_untouched(kube, namespace, [("WorkerPool", "workers")], before)
    assert not op.problems()
