"""SIGKILL right after a scale action: the restarted operator honours the cooldown.

The cooldown lives in status.history, not in the process: a new process reads
it back and does not act again.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.conftest import (
    API_VERSION,
    Aws,
    Kube,
    Recorder,
    Tick,
    assert_spec_untouched,
    conditions,
    event_messages,
    eventually,
    generations,
    parse_time,
    suffix,
)
from tests.integration.conftest import REGION

pytestmark = pytest.mark.controlplane


def test_killed_after_a_scale_out_the_restarted_operator_honours_the_cooldown(
    aws: Aws, kube: Kube, operator: Any, recorder: Any, namespace: str
) -> None:
    group, queue = f"workers-{suffix()}", f"jobs-{suffix()}"
    aws.group_with_template(group, desired=1, max_size=20)
    aws.send(aws.queue(queue), 1000)  # 10 workers' worth, there before the operator starts
    kube.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "WorkerPool",
            "metadata": {"name": "workers", "namespace": namespace},
            "spec": {
                "target": {"kind": "AutoScalingGroup", "name": group, "region": REGION},
                "queue": {"name": queue, "region": REGION, "backlogPerWorker": 100},
                "minCapacity": 1,
                "maxCapacity": 20,
                "pollIntervalSeconds": 5,
                "behavior": {
                    # two at a time per second: only the cooldown stands between ticks
                    "scaleOut": {
                        "cooldownSeconds": 600,
                        "maxStep": {"units": 2, "periodSeconds": 1},
                    }
                },
            },
        }
    )
    before = generations(kube, namespace, [("WorkerPool", "workers")])
    rec: Recorder = recorder("WorkerPool", namespace, "workers", probe=lambda: aws.desired(group))
    op = operator(namespace)

    def scaled_out_and_recorded() -> Tick:
        status = kube.status("WorkerPool", namespace, "workers")
        assert status.get("appliedCapacity") == 3, status.get("lastDecision")
        assert "lastScaleOut" in status.get("history", {})
        assert rec.probed()[-1] == 3  # the recorder has seen the group at 3 too
        return Tick(time.time(), status)

    first = eventually(scaled_out_and_recorded, what="a scale-out in status.history")
    op.kill()  # SIGKILL at once: no shutdown code runs
    killed = time.time()
    assert aws.desired(group) == 3
    assert (first.current, first.desired) == (1, 3)
    assert first.metric("backlog")["recommendation"] == 10  # it wants more than it did

    mark = rec.mark()  # the killed process's last status
    op.start()  # a new process: only the status remembers
    after = rec.ticks_after(mark, 3, what="three ticks of the restarted operator")
    for t in after:
        assert (t.current, t.desired, t.direction) == (3, 3, "None"), t.decision
        assert t.limited_by == "scaleOutCooldown", t.decision
        assert t.metric("backlog")["recommendation"] == 10
        assert t.history["lastScaleOut"] == first.history["lastScaleOut"]
    assert rec.probed_since(killed) == [3]  # no second action
    assert aws.desired(group) == 3
    assert len(event_messages(kube, "WorkerPool", namespace, "workers", "ScaledOut")) == 1
    status = kube.status("WorkerPool", namespace, "workers")
    assert conditions(status).get("OutOfBandChange", {}).get("status") != "True"
    assert "OutOfBandChange" not in kube.reasons("WorkerPool", namespace, "workers")
    assert_spec_untouched(kube, namespace, [("WorkerPool", "workers")], before)

    # SIGTERM: a clean exit, and no decision after it (kopf waited for the ticking tasks)
    terminated = time.time()
    assert op.stop() == 0
    last = kube.status("WorkerPool", namespace, "workers")["lastDecision"]["time"]
    assert parse_time(last) <= terminated, f"decided at {last}, after SIGTERM"
    assert not op.problems()
