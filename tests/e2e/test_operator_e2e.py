"""The operator end to end: `stackscaler run` against the real API server and moto.

Every scenario starts the operator as a subprocess, arranges AWS in moto,
changes the world (messages, datapoints, specs) and asserts what the
operator then did: AWS calls (through moto's state), the status it wrote
tick by tick, its Events and its /metrics. Waits are bounded polls for a
condition; "within N poll intervals" is counted in ticks (the operator's own
decisions), never measured in seconds.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import pytest

from tests.conftest import EXAMPLES, example
from tests.e2e.conftest import (
    Aws,
    Decided,
    Kube,
    Recorder,
    Tick,
    assert_desired_exposed,
    assert_spec_untouched,
    condition,
    decided,
    decision_probe,
    decisions,
    decisions_logged,
    event_messages,
    eventually,
    generations,
    parse_time,
    suffix,
)
from tests.integration.netutil import free_port

pytestmark = pytest.mark.controlplane

STACK = [
    ("WebTier", "web"),
    ("WorkerPool", "workers"),
    ("ReadReplicaPool", "shop-db-readers"),
    ("CachePool", "sessions"),
]


# --- 1. examples/stack.yaml: workers follow the SQS backlog -------------------------


def test_stack_yaml_workers_scale_out_on_backlog_and_in_step_by_step(
    aws: Aws, kube: Kube, operator: Any, recorder: Any
) -> None:
    ns = "shop"  # the namespace of examples/stack.yaml (the e2e control plane is fresh)
    aws.group_with_template("shop-web", desired=2, max_size=40)
    aws.group_with_template("shop-workers", desired=0, max_size=50)
    queue = aws.queue("shop-jobs")
    aws.postgres("shop-db")
    aws.replication_group("shop-sessions", replicas=1)

    kube.run("apply", "-f", str(EXAMPLES / "stack.yaml"))
    # loopback only: the web tier's Prometheus is a port where nothing listens
    kube.json_patch(
        "WebTier",
        ns,
        "web",
        [
            {
                "op": "replace",
                "path": "/spec/metrics/1/prometheus/serverAddress",
                "value": f"http://127.0.0.1:{free_port()}",
            }
        ],
    )
    cooldown_in, window_in = 10, 15
    kube.merge_patch(
        "WorkerPool",
        ns,
        "workers",
        {
            "spec": {
                "pollIntervalSeconds": 5,
                # moto takes several seconds to take 1,500 messages and a tick may see
                # part of them; at 14 workers 1,500 messages are within the default 10 %
                # of the target, so with it a partial first read could stop at 14.
                "tolerance": 0,
                "behavior": {
                    # the answer (15) is reachable from 0 within one 60 s period
                    "scaleOut": {"cooldownSeconds": 0, "maxStep": {"units": 20}},
                    "scaleIn": {
                        "cooldownSeconds": cooldown_in,
                        "stabilizationWindowSeconds": window_in,
                        "maxStep": {"units": 1, "percent": 25, "periodSeconds": 10},
                    },
                },
            }
        },
    )
    before = generations(kube, ns, STACK)
    rec: Recorder = recorder("WorkerPool", ns, "workers", probe=lambda: aws.desired("shop-workers"))
    op = operator(ns)

    # every resource of the stack is reconciled
    def all_ready() -> None:
        for kind, name in STACK:
            ready = condition(kube.status(kind, ns, name), "Ready")
            assert (ready["status"], ready["reason"]) == ("True", "Reconciled"), (kind, ready)

    eventually(all_ready, what="every resource of stack.yaml Ready")
    # the replica pool's minCapacity 1 wins over its unknown metric: one tagged replica
    replicas = eventually(
        lambda: _one(aws.replicas_of("shop-db")), what="one read replica of shop-db"
    )
    assert replicas["DBInstanceIdentifier"].startswith("shop-db-ro-")

    # idle: an empty queue keeps the workers at 0
    idle = rec.wait_ticks(1, after=0, what="a first WorkerPool decision")[-1]
    assert (idle.current, idle.desired) == (0, 0)
    assert idle.metric("backlog")["value"] == 0

    # 1,500 messages at 100 per worker (10 s / 0.1 s): 15 workers within two ticks of
    # the backlog being complete (moto takes seconds to take them: ticks in between
    # may scale out on part of it already)
    log = recorder(
        "WorkerPool", ns, "workers", probe=decision_probe(op, "WorkerPool", ns, "workers")
    )
    aws.send(queue, 1500)
    assert aws.backlog(queue) == 1500
    complete = time.time()
    ticks_before = decisions(op, "WorkerPool", ns, "workers")

    def at_answer() -> None:
        status = kube.status("WorkerPool", ns, "workers")
        assert status.get("desiredCapacity") == 15, status.get("lastDecision")
        assert aws.desired("shop-workers") == 15
        assert rec.probed()[-1] == 15  # the recorder saw it too: the scale-in starts from it

    eventually(at_answer, what="the worker group at 15")
    ticks_taken = decisions(op, "WorkerPool", ns, "workers") - ticks_before
    assert ticks_taken <= 2, f"15 workers {ticks_taken} ticks after the backlog was complete"

    # a tick that read part of the backlog may have scaled to 15 already (1,401 or more
    # messages): then the tick that reads all of it changes nothing material and writes no
    # status, so the ticks are read from /metrics
    def whole_backlog_seen() -> Decided:
        seen = [d for d in decided(log) if d.time > complete and d.value("backlog") == 1500]
        assert seen, "no tick has read the whole backlog yet"
        return seen[0]

    whole = eventually(whole_backlog_seen, what="a tick reading 1,500 messages")
    assert whole.desired == 15, whole  # 1,500 messages at 100 a worker
    scaled_out = event_messages(kube, "WorkerPool", ns, "workers", "ScaledOut")
    assert scaled_out and scaled_out[-1].split(":")[0].endswith("-> 15"), scaled_out

    # drain: scale-in waits for the cooldown and the stabilization window, then steps
    aws.sqs.purge_queue(QueueUrl=queue)
    drained = time.time()
    assert aws.backlog(queue) == 0

    def three_steps_in() -> list[int]:
        values = rec.probed_since(drained)
        assert values[0] == 15, values
        assert len(values) >= 4, f"group desired capacity so far: {values}"
        return values

    steps = eventually(three_steps_in, what="three scale-in steps", timeout=120)
    for before_step, after_step in itertools.pairwise(steps):
        allowed = max(1, math.ceil(before_step * 25 / 100))
        assert 1 <= before_step - after_step <= allowed, steps  # never one jump
    assert steps[-1] > 0

    # the group's capacity changes before the status that records the decision is
    # written: wait until the recorder has seen the third scale-in decision too
    def three_decisions_in() -> tuple[list[Tick], list[Tick]]:
        recorded = rec.snapshot()
        decided_in = [t for t in recorded if t.direction == "In"]
        assert len(decided_in) >= 3, f"{len(decided_in)} scale-in decisions recorded"
        return recorded, decided_in

    ticks, ins = eventually(three_decisions_in, what="three scale-in decisions", timeout=60)
    last_out = parse_time(ins[0].history["lastScaleOut"])
    first_in = parse_time(ins[0].history["lastScaleIn"])
    assert first_in - last_out >= cooldown_in
    # the newest recommendation of 15 anywhere in the recorded stabilization windows
    last_15 = max(
        parse_time(at)
        for t in ticks
        for at, value in t.history.get("scaleInWindow", [])
        if value >= 15
    )
    assert first_in - last_15 >= window_in
    held = [
        t
        for t in ticks[: ticks.index(ins[0])]
        if t.seen > drained and t.metric("backlog")["value"] == 0
    ]
    assert held, "no tick held 15 after the queue was drained"
    for t in held:
        assert (t.direction, t.desired) == ("None", 15)
        assert t.limited_by in ("scaleInStabilization", "scaleInCooldown"), t.decision
    scale_in_times = [parse_time(t.history["lastScaleIn"]) for t in ins]
    for a, b in itertools.pairwise(scale_in_times):
        assert b - a >= cooldown_in
    assert len(event_messages(kube, "WorkerPool", ns, "workers", "ScaledIn")) >= 3

    assert_desired_exposed(op, kube, "WorkerPool", ns, "workers")
    assert_spec_untouched(kube, ns, STACK, before)
    assert not op.problems()


def _one(found: dict[str, dict[str, Any]]) -> dict[str, Any]:
    assert len(found) == 1, sorted(found)
    return next(iter(found.values()))


# --- 2. CPU from CloudWatch: the web tier scales out and stops at maxCapacity ---------


def test_web_tier_scales_out_on_cloudwatch_cpu_and_stops_at_max(
    aws: Aws, kube: Kube, operator: Any, recorder: Any, namespace: str
) -> None:
    group = f"web-{suffix()}"
    aws.group_with_template(group, desired=2, max_size=50)
    aws.cpu(group, 90.0)  # target 50: 1.8 x the capacity

    web = example("WebTier")
    web["metadata"]["namespace"] = namespace
    spec = web["spec"]
    spec["target"]["name"] = group
    spec["metrics"][0]["cloudWatch"]["dimensions"][0]["value"] = group
    # kept, and unknown: loopback where nothing listens (unknown never blocks scale-out)
    spec["metrics"][1]["prometheus"]["serverAddress"] = f"http://127.0.0.1:{free_port()}"
    spec["metrics"][1]["prometheus"]["timeoutSeconds"] = 2
    del spec["schedules"]  # time-of-day independent bounds
    spec["maxCapacity"] = 8  # above fallbackCapacity 6: reaching 8 is the CPU's doing
    spec["pollIntervalSeconds"] = 5
    spec["warmupSeconds"] = 0  # moto's instances serve at once: each tick sees them all ready
    spec["behavior"]["scaleOut"] = {"cooldownSeconds": 0, "maxStep": {"units": 10}}
    kube.apply(web)
    before = generations(kube, namespace, [("WebTier", "web")])
    rec: Recorder = recorder("WebTier", namespace, "web", probe=lambda: aws.desired(group))
    op = operator(namespace)

    def at_max() -> Tick:
        status = kube.status("WebTier", namespace, "web")
        limited = condition(status, "ScalingLimited")
        assert (limited["status"], limited["reason"]) == ("True", "MaxCapacity"), limited
        return Tick(time.time(), status)

    limited_at = eventually(at_max, what="ScalingLimited=True MaxCapacity")
    assert limited_at.current == limited_at.desired == 8
    assert limited_at.limited_by == "maxCapacity"
    assert limited_at.metric("cpu")["value"] == 90
    assert limited_at.metric("cpu")["recommendation"] == math.ceil(8 * 90 / 50)  # 15 asked
    # it stays at 8 for the following ticks, though CPU still asks for more. Nothing
    # material changes any more (the unknown metric's failures are counted up to the
    # threshold), so the status is not rewritten every tick: the ticks come from /metrics
    log = recorder(
        "WebTier", namespace, "web", probe=decision_probe(op, "WebTier", namespace, "web")
    )
    later = decisions_logged(log, 2, what="two more decisions at max")
    assert all((d.desired, d.limited_by) == (8, "maxCapacity") for d in later), later
    assert aws.desired(group) == 8
    assert rec.probed() == [2, 4, 8]  # HPA's rule each tick: ceil(2 x 1.8), ceil(4 x 1.8)

    out_ticks = [t for t in rec.snapshot() if t.direction == "Out"]
    assert [(t.current, t.desired) for t in out_ticks] == [(2, 4), (4, 8)]
    for t in out_ticks:  # the Prometheus metric was unknown all along
        available = t.condition("MetricsAvailable")
        assert (available["status"], available["reason"]) == ("False", "MetricsUnknown")
        assert "requests-per-minute" in available["message"]
        assert t.metric("requests-per-minute")["state"] != "Known"
    scaled_out = event_messages(kube, "WebTier", namespace, "web", "ScaledOut")
    assert [m.split(":")[0] for m in scaled_out] == ["2 -> 4", "4 -> 8"], scaled_out
    assert_desired_exposed(op, kube, "WebTier", namespace, "web")
    assert_spec_untouched(kube, namespace, [("WebTier", "web")], before)
    assert not op.problems()
