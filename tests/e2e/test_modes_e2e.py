"""DryRun and pause: nothing changes in AWS, while the status says what would happen."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import (
    API_VERSION,
    Aws,
    Kube,
    Recorder,
    Tick,
    assert_spec_untouched,
    condition,
    decision_counts,
    decisions_after,
    event_messages,
    eventually,
    generations,
    rfc3339,
    suffix,
)
from tests.integration.conftest import REGION

pytestmark = pytest.mark.controlplane

PAUSED = "stackscaler.dev/paused"


def test_dry_run_and_pause_change_nothing_in_aws_and_say_what_they_would_do(
    aws: Aws, kube: Kube, operator: Any, recorder: Any, namespace: str
) -> None:
    group, queue = f"workers-{suffix()}", f"jobs-{suffix()}"
    aws.group_with_template(group, desired=2, max_size=20)
    aws.send(aws.queue(queue), 900)  # 9 workers' worth
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
                "mode": "DryRun",
                "pollIntervalSeconds": 5,
                "behavior": {"scaleOut": {"cooldownSeconds": 0, "maxStep": {"units": 100}}},
            },
        }
    )
    untouched = _group_state(aws, group)
    rec: Recorder = recorder("WorkerPool", namespace, "workers", probe=lambda: aws.desired(group))
    op = operator(namespace)
    labels = {"kind": "WorkerPool", "namespace": namespace, "name": "workers"}
    workers = ("WorkerPool", namespace, "workers")

    # DryRun: the status says 2 -> 9, AWS stays as it was
    def would_scale() -> Tick:
        status = kube.status("WorkerPool", namespace, "workers")
        dry = condition(status, "DryRun")
        assert (dry["status"], dry["reason"]) == ("True", "DryRunMode"), dry
        assert dry["message"].startswith("would scale 2 -> 9"), dry
        return Tick(time.time(), status)

    dry = eventually(would_scale, what="DryRun says what it would do")
    assert (dry.current, dry.desired, dry.direction) == (2, 9, "Out")
    assert "appliedCapacity" not in dry.status
    # two more ticks, each deciding 2 -> 9 again (the status is not rewritten: nothing
    # material changed; the operator's counter and gauges show each decision)
    mark = decision_counts(op, workers)
    new = decisions_after(op, workers, mark, 2, what="two more DryRun decisions")
    assert set(new) == {"Out"}, new
    assert (_gauge(op, "current", labels), _gauge(op, "desired", labels)) == (2, 9)
    status = kube.status(*workers)
    assert (status["currentCapacity"], status["desiredCapacity"]) == (2, 9)
    assert condition(status, "DryRun")["message"].startswith("would scale 2 -> 9")
    assert _group_state(aws, group) == untouched
    assert rec.probed() == [2]
    assert op.sample("stackscaler_dry_run", labels) == 1
    assert not op.samples("stackscaler_aws_calls_total", {"operation": "SetDesiredCapacity"})
    assert "ScaledOut" not in kube.reasons("WorkerPool", namespace, "workers")

    # paused (and Active): the same, said by the Paused condition
    kube.annotate("WorkerPool", namespace, "workers", PAUSED, "true")
    kube.merge_patch("WorkerPool", namespace, "workers", {"spec": {"mode": "Active"}})
    before = generations(kube, namespace, [("WorkerPool", "workers")])
    switched = time.time()

    def paused() -> Tick:
        status = kube.status("WorkerPool", namespace, "workers")
        assert condition(status, "DryRun")["status"] == "False", status.get("conditions")
        pause = condition(status, "Paused")
        assert (pause["status"], pause["reason"]) == ("True", "PausedByAnnotation"), pause
        assert "would scale 2 -> 9" in pause["message"], pause
        return Tick(time.time(), status)

    held = eventually(paused, what="Paused says what it would do")
    assert held.desired == 9
    mark = decision_counts(op, workers)
    new = decisions_after(op, workers, mark, 2, what="two more paused decisions")
    assert set(new) == {"Out"}, new
    assert (_gauge(op, "current", labels), _gauge(op, "desired", labels)) == (2, 9)
    status = kube.status(*workers)
    assert (status["currentCapacity"], status["desiredCapacity"]) == (2, 9)
    assert condition(status, "Paused")["status"] == "True"
    assert op.sample("stackscaler_paused", labels) == 1

    # paused until a time in the future: still paused
    until = rfc3339(datetime.now(UTC) + timedelta(hours=1))
    kube.annotate("WorkerPool", namespace, "workers", PAUSED, until)

    def paused_until() -> None:
        pause = condition(kube.status("WorkerPool", namespace, "workers"), "Paused")
        assert pause["status"] == "True" and f"paused until {until}" in pause["message"], pause

    eventually(paused_until, what="paused until a future time")
    assert _group_state(aws, group) == untouched
    assert rec.probed_since(switched) == [2]
    assert not op.samples("stackscaler_aws_calls_total", {"operation": "SetDesiredCapacity"})
    assert "ScaledOut" not in kube.reasons("WorkerPool", namespace, "workers")

    # a time in the past un-pauses: now it acts
    kube.annotate(
        "WorkerPool",
        namespace,
        "workers",
        PAUSED,
        rfc3339(datetime.now(UTC) - timedelta(minutes=1)),
    )

    def acted() -> None:
        status = kube.status("WorkerPool", namespace, "workers")
        assert condition(status, "Paused")["status"] == "False", status.get("conditions")
        assert aws.desired(group) == 9
        # the Event follows the SetDesiredCapacity (apply, then record): wait for it too
        scaled = event_messages(kube, "WorkerPool", namespace, "workers", "ScaledOut")
        assert [m.split(":")[0] for m in scaled] == ["2 -> 9"], scaled

    eventually(acted, what="scaled once the pause is over, and said so once")
    assert op.sample("stackscaler_paused", labels) == 0
    assert len(event_messages(kube, "WorkerPool", namespace, "workers", "ScaledOut")) == 1
    assert_spec_untouched(kube, namespace, [("WorkerPool", "workers")], before)
    assert not op.problems()


def _gauge(op: Any, which: str, labels: dict[str, str]) -> float | None:
    return op.sample(f"stackscaler_capacity_{which}", labels)


def _group_state(aws: Aws, group: str) -> tuple[int, int, int, int]:
    g = aws.group(group)
    return (g["DesiredCapacity"], g["MinSize"], g["MaxSize"], len(g.get("Instances", ())))
