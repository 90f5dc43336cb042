"""A throttling storm: AWS answers every call with Throttling, while work piles up.

Three worker pools idle at 1 with empty queues; the operator's AWS calls go
through a fault proxy in front of moto. Then every call of every service is
throttled (an account-wide storm) until each pool has failed three ticks,
and meanwhile 30, 60 and 90 messages arrive (10 per worker). During the
storm each pool says it cannot see its target (Ready=False, temporary: no
Warning Event), nothing changes in AWS, and the operator's Auto Scaling
calls stay within its token bucket (10 at once, then 5 per second: retries
included, no retry storm of its own). When the storm passes, each pool is
scaled to 3, 6 and 9 with one SetDesiredCapacity each reaching AWS and one
ScaledOut Event each.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from tests.e2e.conftest import (
    Aws,
    Kube,
    assert_spec_untouched,
    condition,
    decisions_after,
    event_messages,
    eventually,
    generations,
    suffix,
)
from tests.faults.support import ScriptedProxy, worker_pool

pytestmark = pytest.mark.controlplane

POOLS, PER_WORKER = 3, 10
FAILED_TICKS = 3
"""The storm lasts until every pool has failed this many ticks."""
RATE, BURST = 5.0, 10
"""The operator's default token bucket for autoscaling (stackscaler.aws.ratelimit)."""
AUTOSCALING = {"DescribeAutoScalingGroups", "SetDesiredCapacity", "UpdateAutoScalingGroup"}


def test_a_throttling_storm_delays_scaling_without_duplicates_or_retry_storms(
    *,
    aws: Aws,
    kube: Kube,
    operator: Any,
    recorder: Any,
    namespace: str,
    aws_proxy: ScriptedProxy,
) -> None:
    s = suffix()
    names = [f"pool-{i}" for i in range(POOLS)]
    groups = [f"workers-{i}-{s}" for i in range(POOLS)]
    queues = [aws.queue(f"jobs-{i}-{s}") for i in range(POOLS)]
    for i in range(POOLS):
        aws.group_with_template(groups[i], desired=1, max_size=20)
    kube.apply(
        *(
            worker_pool(
                namespace, names[i], groups[i], f"jobs-{i}-{s}", per_worker=PER_WORKER, tolerance=0
            )
            for i in range(POOLS)
        )
    )
    resources = [("WorkerPool", n) for n in names]
    before = generations(kube, namespace, resources)
    recs = [
        recorder("WorkerPool", namespace, names[i], probe=lambda g=groups[i]: aws.desired(g))
        for i in range(POOLS)
    ]
    op = operator(namespace, env={"STACKSCALER_AWS_ENDPOINT_URL": aws_proxy.endpoint})
    for rec in recs:  # the first decision is written; one more changing nothing is counted
        ticks = rec.wait_ticks(1, after=0, what=f"{rec.name}: an idle decision")
        assert all((t.current, t.desired) == (1, 1) for t in ticks)
        pool = ("WorkerPool", namespace, rec.name)
        idle = decisions_after(op, pool, Counter(), 2, what=f"{rec.name}: two idle decisions")
        assert set(idle) == {"None"}, idle

    aws_proxy.fail("Throttling", message="Rate exceeded")  # until calm()
    storm = time.monotonic()
    for i in range(POOLS):  # the test's own clients talk to moto directly
        aws.send(queues[i], 3 * PER_WORKER * (i + 1))

    def piled_up() -> None:
        assert [aws.backlog(q) for q in queues] == [3 * PER_WORKER * (i + 1) for i in range(POOLS)]

    eventually(piled_up, what="every message in its queue")

    def all_throttled() -> None:
        for name in names:
            ready = condition(kube.status("WorkerPool", namespace, name), "Ready")
            assert ready["status"] == "False", (name, ready)
            assert ready["reason"] in ("TargetUnavailable", "TickLate"), (name, ready)
            assert "throttled" in ready["message"] or "no answer" in ready["message"], ready
            failed = sum(
                op.samples(
                    "stackscaler_errors_total",
                    {"kind": "WorkerPool", "namespace": namespace, "name": name},
                )
            )
            assert failed >= FAILED_TICKS, (name, failed)

    eventually(all_throttled, what=f"every pool failing {FAILED_TICKS} ticks", timeout=120)
    assert [aws.desired(g) for g in groups] == [1] * POOLS  # nothing changed in AWS
    aws_proxy.calm()
    calm = time.monotonic()

    def scaled() -> None:
        for i, rec in enumerate(recs):
            assert aws.desired(groups[i]) == 3 * (i + 1), groups[i]
            assert rec.probed()[-1] == 3 * (i + 1)
            ready = condition(kube.status("WorkerPool", namespace, names[i]), "Ready")
            assert ready["status"] == "True", ready

    eventually(scaled, what="every pool scaled once the storm passed", timeout=90)

    # no duplicates: one change per pool reached AWS, one Event each
    assert aws_proxy.forwarded["SetDesiredCapacity"] == POOLS, aws_proxy.forwarded
    for i, rec in enumerate(recs):
        assert rec.probed() == [1, 3 * (i + 1)], rec.probed()
        events = kube.events("WorkerPool", namespace, names[i])
        assert not [e for e in events if e.type == "Warning"], [e.message for e in events]
        out = event_messages(kube, "WorkerPool", namespace, names[i], "ScaledOut")
        assert [m.split(":")[0] for m in out] == [f"1 -> {3 * (i + 1)}"], out
    # no retry storm: during the storm every Auto Scaling attempt went through the bucket
    during = [op_ for t, op_ in list(aws_proxy.times) if storm <= t < calm]
    autoscaling = [op_ for op_ in during if op_ in AUTOSCALING]
    assert len(autoscaling) >= FAILED_TICKS, "the operator hardly tried during the storm"
    assert len(autoscaling) <= BURST + RATE * (calm - storm) + 2, len(autoscaling)
    assert aws_proxy.answered["DescribeAutoScalingGroups"] > 0
    assert op.sample(
        "stackscaler_aws_calls_total", {"service": "autoscaling", "outcome": "throttled"}
    )
    assert_spec_untouched(kube, namespace, resources, before)
    assert not op.problems()
