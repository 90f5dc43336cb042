"""Permanent errors: each reported once, in the resource's own status, others unaffected.

Four resources share one operator (its AWS calls go through a fault proxy
in front of moto):

* ``missing`` names an Auto Scaling group that does not exist;
* ``denied`` may describe its group but not change it: the proxy answers
  its SetDesiredCapacity (and only its) with AccessDenied, as AWS does when
  the operator's role lacks the permission for that group;
* ``no-queue`` reads the backlog of a queue that does not exist;
* ``good`` follows its backlog.

Each broken resource says what is wrong in its conditions (naming the
group, the IAM action, the queue) and gets exactly one Warning Event, while
the operator keeps retrying it (slowly) and its counters show every retry;
``denied``'s group is never changed. ``good`` scales out meanwhile (1 -> 3,
then on to 7), with no Warning.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import (
    Aws,
    Kube,
    OperatorProcess,
    Recorder,
    assert_spec_untouched,
    condition,
    decisions,
    event_messages,
    eventually,
    generations,
    suffix,
)
from tests.faults.support import ScriptedProxy, cpu, web_tier, worker_pool

pytestmark = pytest.mark.controlplane

RETRIES = 3
"""Attempts each broken resource makes while the test watches (every 4 poll intervals)."""
RESOURCES = [
    ("WebTier", "missing"),
    ("WebTier", "denied"),
    ("WorkerPool", "no-queue"),
    ("WorkerPool", "good"),
]


def test_permanent_errors_are_reported_once_each_and_others_keep_scaling(
    *,
    aws: Aws,
    kube: Kube,
    operator: Any,
    recorder: Any,
    namespace: str,
    aws_proxy: ScriptedProxy,
) -> None:
    s = suffix()
    gone, denied, idle, good = f"gone-{s}", f"denied-{s}", f"idle-{s}", f"good-{s}"
    aws.group_with_template(denied, desired=2, max_size=20)
    aws.cpu(denied, 90.0)  # asks for 4
    aws.group_with_template(idle, desired=1, max_size=20)
    aws.group_with_template(good, desired=1, max_size=20)
    jobs = aws.queue(f"jobs-{s}")
    aws.send(jobs, 300)
    aws_proxy.fail_matching(
        "AccessDenied",
        operation="SetDesiredCapacity",
        match=f"AutoScalingGroupName={denied}&",
        status=403,
        message=(
            "User: arn:aws:sts::123456789012:assumed-role/stackscaler/op is not authorized "
            f"to perform: autoscaling:SetDesiredCapacity on resource: {denied}"
        ),
    )
    kube.apply(
        web_tier(namespace, "missing", gone, metrics=[cpu(gone)]),
        web_tier(namespace, "denied", denied, metrics=[cpu(denied)]),
        worker_pool(namespace, "no-queue", idle, f"nowhere-{s}"),
        # tolerance 0: a tick that reads part of the 400 messages moto is still taking
        # must not stop within the default 20 % of the answer
        worker_pool(namespace, "good", good, f"jobs-{s}", tolerance=0),
    )
    before = generations(kube, namespace, RESOURCES)
    rec: Recorder = recorder("WorkerPool", namespace, "good", probe=lambda: aws.desired(good))
    probe_denied: Recorder = recorder(
        "WebTier", namespace, "denied", probe=lambda: aws.desired(denied)
    )
    op = operator(namespace, env={"STACKSCALER_AWS_ENDPOINT_URL": aws_proxy.endpoint})

    def reported() -> None:
        ready = condition(kube.status("WebTier", namespace, "missing"), "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "TargetNotFound"), ready
        assert gone in ready["message"], ready
        ready = condition(kube.status("WebTier", namespace, "denied"), "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "AccessDenied"), ready
        assert "autoscaling:SetDesiredCapacity" in ready["message"], ready
        available = condition(kube.status("WorkerPool", namespace, "no-queue"), "MetricsAvailable")
        assert (available["status"], available["reason"]) == ("False", "MetricsUnknown")
        assert f"nowhere-{s}" in available["message"] and "does not exist" in available["message"]
        assert aws.desired(good) == 3

    eventually(reported, what="every problem in its own status; good at 3")
    aws.send(jobs, 400)

    def retried_and_good_at_seven() -> None:
        assert aws.desired(good) == 7 and rec.probed()[-1] == 7
        for name in ("missing", "denied"):
            assert _errors(op, "WebTier", namespace, name) >= RETRIES, name
        assert decisions(op, "WorkerPool", namespace, "no-queue") >= 4 * RETRIES

    eventually(retried_and_good_at_seven, what=f"{RETRIES} attempts each; good at 7", timeout=150)

    # exactly one Warning each, naming the problem; none for the good one
    for kind, name, reason, says in (
        ("WebTier", "missing", "TargetNotFound", gone),
        ("WebTier", "denied", "AccessDenied", "autoscaling:SetDesiredCapacity"),
        ("WorkerPool", "no-queue", "TargetNotFound", f"nowhere-{s}"),
    ):
        warnings = [e for e in kube.events(kind, namespace, name) if e.type == "Warning"]
        assert [e.reason for e in warnings] == [reason], (name, [e.message for e in warnings])
        assert says in warnings[0].message, warnings[0].message
    assert not [e for e in kube.events("WorkerPool", namespace, "good") if e.type == "Warning"]
    scaled = event_messages(kube, "WorkerPool", namespace, "good", "ScaledOut")
    # (moto takes a few seconds to take 400 messages: a tick may see part of them)
    steps = [m.split(":")[0] for m in scaled]
    assert steps[0] == "1 -> 3" and steps[-1].endswith("-> 7") and len(steps) >= 2, steps
    assert condition(kube.status("WorkerPool", namespace, "good"), "Ready")["status"] == "True"

    # the denied group was never changed; every attempt reached AWS once (no retry storm)
    assert probe_denied.probed() == [2] and aws.desired(denied) == 2
    attempts = aws_proxy.answered["SetDesiredCapacity"]
    assert attempts == _errors(op, "WebTier", namespace, "denied"), attempts
    assert aws.desired(idle) == 1
    pool = kube.status("WorkerPool", namespace, "no-queue")
    assert condition(pool, "Ready")["status"] == "True"  # it ticks, holding what it has
    assert (pool["currentCapacity"], pool["desiredCapacity"]) == (1, 1)
    assert_spec_untouched(kube, namespace, [("WorkerPool", "good")], before)
    assert not op.problems()


def _errors(op: OperatorProcess, kind: str, ns: str, name: str) -> int:
    labels = {"kind": kind, "namespace": ns, "name": name}
    return int(sum(op.samples("stackscaler_errors_total", labels)))
