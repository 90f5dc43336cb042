"""Step load: the capacity follows a step up and a step down, in steps, without overshoot.

Requests per 5 s period (CloudWatch Sum) step from 200 (2 instances' worth)
to 1,000 (10) and later back to 200. Scale-out is rate-limited to 3
instances per tick and scale-in too, after a 15 s stabilization window. The
group climbs 2 -> 5 -> 8 -> 10 from the first tick that sees the step, holds
10 while the load holds, waits out the window after the drop and comes down
10 -> 7 -> 4 -> 2: monotone each way, never above 10 or below 2, one
reversal, one Event per action.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from tests.e2e.conftest import (
    Aws,
    Kube,
    Recorder,
    assert_spec_untouched,
    decision_counts,
    decisions_after,
    event_messages,
    eventually,
    generations,
    suffix,
)
from tests.faults.support import (
    Feeder,
    direction_changes,
    period_start,
    requests_per_unit,
    web_tier,
)

pytestmark = pytest.mark.controlplane

PERIOD, WINDOW = 5, 15
LOW, HIGH = 200.0, 1000.0
NAMESPACE, METRIC = "Shop/Web", "Requests"


def test_step_load_is_followed_in_rate_limited_steps_without_overshoot(
    aws: Aws, kube: Kube, operator: Any, recorder: Any, namespace: str
) -> None:
    group = f"web-{suffix()}"
    aws.group_with_template(group, desired=2, max_size=20)
    dims = {"AutoScalingGroupName": group}
    feeder = Feeder(
        aws.cloudwatch,
        namespace=NAMESPACE,
        metric=METRIC,
        dimensions=dims,
        every=PERIOD,
        offset=1,
        value=lambda _slot: LOW,
    ).start()
    step = {"units": 3, "periodSeconds": 1}  # 3 per tick: ticks are 5 s apart
    try:
        kube.apply(
            web_tier(
                namespace,
                "web",
                group,
                metrics=[
                    requests_per_unit(
                        dims, namespace=NAMESPACE, metric=METRIC, period=PERIOD, per_unit=100
                    )
                ],
                min_capacity=1,
                max_capacity=20,
                tolerance=0.1,
                poll=PERIOD,
                behavior={
                    "scaleOut": {"cooldownSeconds": 0, "maxStep": step},
                    "scaleIn": {
                        "cooldownSeconds": 0,
                        "stabilizationWindowSeconds": WINDOW,
                        "maxStep": step,
                    },
                },
            )
        )
        before = generations(kube, namespace, [("WebTier", "web")])
        rec: Recorder = recorder("WebTier", namespace, "web", probe=lambda: aws.desired(group))
        op = operator(namespace)
        web = ("WebTier", namespace, "web")
        # the first decision is written; one more that changes nothing is only counted
        steady = rec.wait_ticks(1, after=0, what="a decision on a steady load")
        assert all((t.current, t.desired) == (2, 2) for t in steady), [t.decision for t in steady]
        directions = decisions_after(op, web, Counter(), 2, what="two decisions on a steady load")
        assert set(directions) == {"None"}, directions

        # step up
        up_at = period_start(time.time(), PERIOD) + 2 * PERIOD
        feeder.value = lambda slot: HIGH if slot >= up_at else LOW
        stepped = time.time()

        def at_ten() -> None:
            ticks = rec.since(stepped)
            assert ticks and ticks[-1].current == 10, [t.current for t in ticks]

        eventually(at_ten, what="10 instances", timeout=120)
        mark = decision_counts(op, web)
        holding = decisions_after(op, web, mark, 2, what="10 instances, held for two ticks")
        assert set(holding) == {"None"}, holding
        assert rec.probed()[-1] == 10

        # step down
        down_at = period_start(time.time(), PERIOD) + 2 * PERIOD
        feeder.value = lambda slot: HIGH if up_at <= slot < down_at else LOW
        dropped = time.time()

        def back_at_two() -> None:
            ticks = rec.since(dropped)
            assert ticks and ticks[-1].current == 2 and ticks[-1].desired == 2, [
                (t.current, t.desired) for t in ticks
            ]

        eventually(back_at_two, what="back at 2 after the window", timeout=120)

        values = rec.probed_since(stepped)
        assert values == [2, 5, 8, 10, 7, 4, 2], values
        assert direction_changes(values) == 1

        ticks = rec.since(stepped)
        outs = [t for t in ticks if t.direction == "Out"]
        assert [(t.current, t.desired) for t in outs] == [(2, 5), (5, 8), (8, 10)]
        assert [t.limited_by for t in outs] == ["scaleOutRateLimit", "scaleOutRateLimit", None]
        assert all(t.metric("requests")["recommendation"] == 10 for t in outs)
        ins = [t for t in ticks if t.direction == "In"]
        assert [(t.current, t.desired) for t in ins] == [(10, 7), (7, 4), (4, 2)]
        assert [t.limited_by for t in ins] == ["scaleInRateLimit", "scaleInRateLimit", None]
        # the load dropped, and the window held 10 before the first step in
        first_in = ticks.index(ins[0])
        held = [
            t for t in ticks[:first_in] if t.current == 10 and t.metric("requests")["value"] == LOW
        ]
        assert held and all(t.limited_by == "scaleInStabilization" for t in held), [
            t.decision for t in held
        ]
        last_ten = max(
            t.time for t in ticks[:first_in] if t.metric("requests")["recommendation"] == 10
        )
        assert ins[0].time - last_ten >= WINDOW
        # between the steps nothing moved: no oscillation at the top
        top = ticks[ticks.index(outs[-1]) + 1 : first_in]
        assert top and all((t.current, t.desired) == (10, 10) for t in top)

        out = event_messages(kube, "WebTier", namespace, "web", "ScaledOut")
        scaled_in = event_messages(kube, "WebTier", namespace, "web", "ScaledIn")
        assert [m.split(":")[0] for m in out] == ["2 -> 5", "5 -> 8", "8 -> 10"]
        assert [m.split(":")[0] for m in scaled_in] == ["10 -> 7", "7 -> 4", "4 -> 2"]
        assert not feeder.errors
        assert_spec_untouched(kube, namespace, [("WebTier", "web")], before)
        assert not op.problems()
    finally:
        feeder.stop()
