"""Flapping load: the capacity does not flap with it.

Requests per 5 s period (CloudWatch Sum) alternate between 800 and 200, each
tick seeing the other value: 8 instances wanted, then 2, then 8 again. The
scale-out is immediate, the scale-in follows the highest recommendation of
the last 20 s (scaleIn.stabilizationWindowSeconds), so the group goes to 8
once and stays there while the load flaps; only when the load has stayed low
for the whole window does it come back to 2. One reversal in all, and it
comes at least one window after the last high recommendation.
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
    decisions_after,
    event_messages,
    eventually,
    generations,
    parse_time,
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

PERIOD, WINDOW, FLAPS = 5, 20, 8
"""CloudWatch period and poll interval; scale-in window; periods of flapping load."""
LOW, HIGH = 200.0, 800.0
NAMESPACE, METRIC = "Shop/Web", "Requests"


def test_flapping_load_moves_the_capacity_once_each_way(
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
                max_capacity=10,
                tolerance=0.1,
                poll=PERIOD,
                behavior={
                    "scaleOut": {"cooldownSeconds": 0, "maxStep": {"units": 100}},
                    "scaleIn": {
                        "cooldownSeconds": 0,
                        "stabilizationWindowSeconds": WINDOW,
                        "maxStep": {"units": 100},
                    },
                },
            )
        )
        before = generations(kube, namespace, [("WebTier", "web")])
        rec: Recorder = recorder("WebTier", namespace, "web", probe=lambda: aws.desired(group))
        op = operator(namespace)

        # the first decision is written; one more that changes nothing is only counted
        steady = rec.wait_ticks(1, after=0, what="a decision on a steady load")
        assert all((t.current, t.desired) == (2, 2) for t in steady), [t.decision for t in steady]
        web = ("WebTier", namespace, "web")
        directions = decisions_after(op, web, Counter(), 2, what="two decisions on a steady load")
        assert set(directions) == {"None"}, directions

        # the load flaps with every period, then stays low
        start = period_start(time.time(), PERIOD) + 2 * PERIOD
        end = start + FLAPS * PERIOD
        feeder.value = lambda slot: (
            (HIGH if int(slot // PERIOD) % 2 else LOW) if start <= slot < end else LOW
        )
        flapping = time.time()

        def back_to_two() -> None:
            assert rec.probed_since(flapping)[-2:] == [8, 2], rec.probed_since(flapping)
            assert any(t.direction == "In" for t in rec.since(flapping)), "not recorded"

        eventually(
            back_to_two, what="the scale-in after the flapping", timeout=FLAPS * PERIOD + 120
        )
        values = rec.probed_since(flapping)
        assert values == [2, 8, 2], values
        assert direction_changes(values) == 1

        ticks = rec.since(flapping)
        read = [t.metric("requests").get("value") for t in ticks]
        assert read.count(HIGH) >= FLAPS // 2 - 1, read  # it saw the flapping
        up = next(i for i, t in enumerate(ticks) if t.direction == "Out")
        down = next(i for i, t in enumerate(ticks) if t.direction == "In")
        held = [t for t in ticks[up + 1 : down] if t.metric("requests").get("value") == LOW]
        assert len(held) >= 2, [t.decision for t in ticks]
        for t in held:  # low load at 8: the window holds it
            assert (t.current, t.desired) == (8, 8), t.decision
            assert t.limited_by == "scaleInStabilization", t.decision
        # the last recommendation of 8: a tick that wrote it, or (a tick that asked 8
        # again changes nothing material, so it may not be written) its time in the
        # scale-in window, frozen there once a lower recommendation followed it (to
        # the second, as lastDecision.time is)
        last_high = max(
            [t.time for t in ticks[:down] if t.metric("requests")["recommendation"] == 8]
            + [
                float(int(parse_time(at)))
                for t in ticks[:down]
                for at, value in t.history.get("scaleInWindow", [])
                if value >= 8
            ]
        )
        assert ticks[down].time - last_high >= WINDOW, (ticks[down].time, last_high)
        assert (ticks[down].current, ticks[down].desired) == (8, 2)

        out = event_messages(kube, "WebTier", namespace, "web", "ScaledOut")
        scaled_in = event_messages(kube, "WebTier", namespace, "web", "ScaledIn")
        assert [m.split(":")[0] for m in out] == ["2 -> 8"]
        assert [m.split(":")[0] for m in scaled_in] == ["8 -> 2"]
        assert not feeder.errors
        assert_spec_untouched(kube, namespace, [("WebTier", "web")], before)
        assert not op.problems()
    finally:
        feeder.stop()
