"""Restarts: a new operator process remembers only what the status says, and that is enough.

* SIGKILL right after a scale action: the restarted operator honours the
  cooldown. The cooldown lives in status.history, not in the process: a new
  process reads it back and does not act again.
* A restart of 1,000 WebTiers on 1,000 Auto Scaling groups: every one of them
  ticks again, each keeps what its status remembers (a scale-out cooldown, a
  scale-out stabilization window) and no scale action is repeated.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import client, config

from tests.e2e.conftest import (
    API_VERSION,
    GROUP,
    VERSION,
    Aws,
    Kube,
    Recorder,
    Tick,
    assert_spec_untouched,
    conditions,
    decision_counts,
    decisions_after,
    event_messages,
    eventually,
    generations,
    parse_time,
    suffix,
)
from tests.faults.support import cloudwatch, poll, put_minutes, web_tier
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
    # its first tick is always written; the next ones only if something material
    # changed, so the operator's own counters show all three decisions
    (t,) = rec.ticks_after(mark, 1, what="the first tick of the restarted operator")
    assert (t.current, t.desired, t.direction) == (3, 3, "None"), t.decision
    assert t.limited_by == "scaleOutCooldown", t.decision
    assert t.metric("backlog")["recommendation"] == 10
    assert t.history["lastScaleOut"] == first.history["lastScaleOut"]
    workers = ("WorkerPool", namespace, "workers")
    directions = decisions_after(
        op, workers, Counter(), 3, what="three ticks of the restarted operator"
    )
    assert set(directions) == {"None"}, directions  # the new process decided nothing else
    held = decision_counts(op, workers, by="limited_by")
    assert set(held) == {"scaleOutCooldown"}, held
    labels = dict(zip(("kind", "namespace", "name"), workers, strict=True))
    assert op.sample("stackscaler_capacity_desired", labels) == 3
    status = kube.status(*workers)
    assert status["history"]["lastScaleOut"] == first.history["lastScaleOut"]
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


# --- 1,000 tiers --------------------------------------------------------------------

FLEET = 1000
SCALING = 100
"""Tiers that scale out before the restart. The operator's Auto Scaling token bucket
allows 5 calls a second (10 at once), so 1,000 scale-outs would take 200 s by design;
100 take 20 s. The other 900 idle at 0 and carry a stabilization window instead."""
POLL = 120
"""One tick per process while the test watches (the first tick comes at once)."""


@contextmanager
def _kube_objects(kubeconfig: Any) -> Iterator[Any]:
    """CustomObjectsApi with a connection pool as large as the test's thread pool."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = 16
    api = client.ApiClient(cfg)
    try:
        yield client.CustomObjectsApi(api)
    finally:
        api.close()


def test_a_restart_of_1000_tiers_ticks_each_again_and_repeats_no_action(
    aws: Aws, kube: Kube, operator: Any, namespace: str, controlplane: Any
) -> None:
    s = suffix()
    metrics_ns = f"Fleet/{s}"
    names = [f"tier-{i:04d}" for i in range(FLEET)]
    groups = [f"fleet-{s}-{i:04d}" for i in range(FLEET)]
    scaling = set(names[:SCALING])
    template = f"fleet-{s}-lt"
    aws.ec2.create_launch_template(
        LaunchTemplateName=template,
        LaunchTemplateData={"ImageId": "ami-12345678", "InstanceType": "t3.micro"},
    )

    def make_group(i: int) -> None:
        aws.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=groups[i],
            LaunchTemplate={"LaunchTemplateName": template, "Version": "$Latest"},
            MinSize=0,
            MaxSize=10,
            DesiredCapacity=1 if i < SCALING else 0,
            AvailabilityZones=[f"{REGION}a"],
        )

    # A: 90 % of a 50 % target at 1 instance -> 2, then a 600 s scale-out cooldown.
    # B: idle at 0 (0 is not above the activation threshold); a scale-out must be
    #    the lowest recommendation of the last 600 s.
    put_minutes(aws.cloudwatch, metrics_ns, "LoadA", 90.0)
    put_minutes(aws.cloudwatch, metrics_ns, "LoadB", 0.0)
    docs = [
        web_tier(
            namespace,
            names[i],
            groups[i],
            metrics=[cloudwatch("load", namespace=metrics_ns, metric="LoadA")],
            min_capacity=1,
            max_capacity=10,
            poll=POLL,
            behavior={
                "scaleOut": {"cooldownSeconds": 600, "maxStep": {"units": 100}},
                "scaleIn": {"cooldownSeconds": 600},
            },
        )
        if i < SCALING
        else web_tier(
            namespace,
            names[i],
            groups[i],
            metrics=[cloudwatch("load", namespace=metrics_ns, metric="LoadB")],
            min_capacity=0,
            max_capacity=10,
            poll=POLL,
            behavior={
                "scaleOut": {
                    "cooldownSeconds": 0,
                    "stabilizationWindowSeconds": 600,
                    "maxStep": {"units": 100},
                },
                "scaleIn": {"cooldownSeconds": 600},
            },
        )
        for i in range(FLEET)
    ]
    with _kube_objects(controlplane.kubeconfig) as objects, ThreadPoolExecutor(8) as pool:
        list(pool.map(make_group, range(FLEET)))
        list(
            pool.map(
                lambda doc: objects.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, "webtiers", doc
                ),
                docs,
            )
        )

        def statuses() -> dict[str, dict[str, Any]]:
            listed = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, "webtiers")
            return {o["metadata"]["name"]: o.get("status") or {} for o in listed["items"]}

        op = operator(namespace)

        # before: every tier decided once; 100 scaled out 1 -> 2, 900 hold 0
        def first_ticks() -> dict[str, dict[str, Any]]:
            now = statuses()
            assert len(now) == FLEET
            undecided = [n for n, st in now.items() if "lastDecision" not in st]
            assert not undecided, f"{len(undecided)} tiers without a decision yet"
            pending = [n for n, st in now.items() if "pendingAction" in st]
            assert not pending, f"{len(pending)} actions in flight"
            unscaled = [n for n in scaling if now[n].get("appliedCapacity") != 2]
            assert not unscaled, f"{len(unscaled)} of {SCALING} not scaled out yet"
            return now

        before = poll(
            first_ticks, what="1,000 first decisions", timeout=600
        )  # issue 12: at 1,000 tiers a decision can take minutes
        for name, st in before.items():
            decision = st["lastDecision"]
            if name in scaling:  # scaled out (a later aligned tick may hold it in the cooldown)
                assert (st["currentCapacity"], st["desiredCapacity"]) == (2, 2) or (
                    decision["direction"] == "Out"
                ), decision
                assert "lastScaleOut" in st["history"], st["history"]
            else:
                assert (st["currentCapacity"], st["desiredCapacity"]) == (0, 0), decision
                assert decision["direction"] == "None", decision
        assert _desired(aws, groups) == {2: SCALING, 0: FLEET - SCALING}
        assert op.stop() == 0  # a rolling update: SIGTERM
        assert not op.problems()

        # while it was down, the idle tiers' load arrived (0 and 90 average to 45)
        put_minutes(aws.cloudwatch, metrics_ns, "LoadB", 90.0)
        op.start()

        def ticked_again() -> dict[str, dict[str, Any]]:
            now = statuses()
            stale = [
                n
                for n, st in now.items()
                if parse_time(st["lastDecision"]["time"])
                <= parse_time(before[n]["lastDecision"]["time"])
            ]
            assert not stale, f"{len(stale)} tiers have not ticked since the restart"
            return now

        after = poll(ticked_again, what="1,000 ticks after the restart", timeout=600)

    for name, st in after.items():
        decision = st["lastDecision"]
        assert decision["direction"] == "None", (name, decision)
        if name in scaling:  # the cooldown from status: 4 wanted, 2 kept
            assert (st["currentCapacity"], st["desiredCapacity"]) == (2, 2), (name, decision)
            assert decision["limitedBy"] == "scaleOutCooldown", (name, decision)
            assert decision["metrics"][0]["recommendation"] == 4, (name, decision)
            assert st["history"]["lastScaleOut"] == before[name]["history"]["lastScaleOut"]
        else:  # the window from status: the load is back, 0 is still its lowest
            assert (st["currentCapacity"], st["desiredCapacity"]) == (0, 0), (name, decision)
            assert decision["limitedBy"] == "scaleOutStabilization", (name, decision)
            assert decision["metrics"][0]["value"] == 45, (name, decision)
        assert "OutOfBandChange" not in {
            c["type"] for c in st["conditions"] if c["status"] == "True"
        }
    assert _desired(aws, groups) == {2: SCALING, 0: FLEET - SCALING}
    assert not op.samples("stackscaler_aws_calls_total", {"operation": "SetDesiredCapacity"})
    assert op.sample("stackscaler_resources", {"kind": "WebTier"}) == FLEET
    events = kube.core.list_namespaced_event(namespace).items
    reasons = Counter(e.reason for e in events)
    assert reasons == {"ScaledOut": SCALING}, reasons  # one per action, none repeated
    assert {e.involved_object.name for e in events} == scaling
    assert not op.problems()


def _desired(aws: Aws, groups: list[str]) -> Counter[int]:
    """How many of ``groups`` have each DesiredCapacity, as moto has them."""
    found: Counter[int] = Counter()
    for i in range(0, len(groups), 100):
        page = aws.autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=groups[i : i + 100], MaxRecords=100
        )["AutoScalingGroups"]
        assert len(page) == len(groups[i : i + 100])
        found.update(int(g["DesiredCapacity"]) for g in page)
    return found
