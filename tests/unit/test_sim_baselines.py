"""The simulator's peers, as their own documentation and source say they behave.

HPA cases cite the Kubernetes test they mirror (pkg/controller/podautoscaler/
replica_calculator_test.go); AWS cases the EC2 Auto Scaling user guide
(target tracking, default instance warmup). docs/simulate.md has the links.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stackscaler.model.spec import Resource, parse_resource
from stackscaler.policy import Observations
from stackscaler.sim import policies as policies_module
from stackscaler.sim.hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Behavior,
    HpaController,
    PodGroups,
    external_per_pod_replicas,
    resource_replicas,
)
from stackscaler.sim.model import FeedSpec, Pool, Signals, feed_spec
from stackscaler.sim.policies import DecideController
from stackscaler.sim.run import RunConfig, compare, controller, prepare, run
from stackscaler.sim.target_tracking import TargetTrackingController
from stackscaler.sim.trace import Trace

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def tier(**spec: Any) -> Resource:
    base: dict[str, Any] = {
        "target": {"kind": "AutoScalingGroup", "name": "asg"},
        "minCapacity": 1,
        "maxCapacity": 100,
        "metrics": [
            {
                "name": "cpu",
                "cloudWatch": {"namespace": "AWS/EC2", "metricName": "CPUUtilization"},
                "target": {"type": "Value", "value": 50},
            }
        ],
    }
    base.update(spec)
    doc = {
        "apiVersion": "stackscaler.dev/v1alpha1",
        "kind": "WebTier",
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": base,
    }
    return parse_resource(doc)


def steady(util_percent: float, ready: int, steps: int = 10) -> Signals:
    """Signals with ``steps`` recorded steps at one utilization, ``ready`` units serving."""
    s = Signals(util_percent / 100, 1.0, 0.0, ready)
    for _ in range(steps):
        s.record(util_percent / 100, 1.0, 0.0, ready)
    return s


def pool(ready: int, starting: int = 0) -> Pool:
    p = Pool(ready, warmup=180)
    if starting:
        p.resize(0, ready + starting)
    return p


UTIL = FeedSpec("cpu", "util", period_steps=1, delay_steps=0)


# --- HPA: the replica calculator -----------------------------------------------------


def test_hpa_unready_pods_count_at_zero_on_scale_up() -> None:
    # TestReplicaCalcScaleUpUnreadyLessScale: 3 pods, one not ready; the ready ones at 50%
    # and 70% of request (60%), target 30%: not ceil(3 x 2) = 6, but 4 (the unready at 0%)
    assert resource_replicas(3, 60, 30, PodGroups(ready=2, unready=1)) == 4


def test_hpa_unready_pods_can_cancel_a_scale_up() -> None:
    # TestReplicaCalcScaleUpUnreadyNoScale: one ready pod at 40%, two unready, target 30%:
    # with the unready at 0% the ratio falls below 1, so the direction flips: no change
    assert resource_replicas(3, 40, 30, PodGroups(ready=1, unready=2)) == 3


def test_hpa_unready_pods_are_left_out_of_a_scale_down() -> None:
    # TestReplicaCalcScaleDownIgnoresUnreadyPods: 5 pods, 2 unready, ready ones average 33%,
    # target 50%: ceil(0.66 x 3) = 2 (the unready pods neither count nor hold capacity)
    assert resource_replicas(5, 100 / 3, 50, PodGroups(ready=3, unready=2)) == 2


def test_hpa_missing_pods_count_at_100_percent_on_scale_down() -> None:
    # TestReplicaCalcMissingMetricsNoChangeLt: 2 pods, one without a sample, the other at
    # 40%, target 50%: the missing one at 100% makes 70% (a scale-up), so no change
    assert resource_replicas(2, 40, 50, PodGroups(ready=1, missing=1)) == 2
    # and a large drop still scales down, but less: (3 x 10% + 100%) / 4 = 32% -> 3 pods
    assert resource_replicas(4, 10, 50, PodGroups(ready=3, missing=1)) == 3


def test_hpa_missing_pods_count_at_zero_on_scale_up() -> None:
    # TestReplicaCalcMissingMetricsScaleUp-like: 4 pods, one missing, 3 at 90%, target 50%:
    # (3 x 90%) / 4 = 67% -> ceil(1.35 x 4) = 6 (without the rule: ceil(1.8 x 3) = 6 too,
    # with 2 missing the rule bites: 2 x 90% / 4 = 45% is within the tolerance, so 4)
    assert resource_replicas(4, 90, 50, PodGroups(ready=3, missing=1)) == 6
    assert resource_replicas(4, 90, 50, PodGroups(ready=2, missing=2)) == 4


def test_hpa_tolerance_and_no_samples() -> None:
    assert resource_replicas(10, 54, 50, PodGroups(ready=10)) == 10  # within 10%
    assert resource_replicas(10, 56, 50, PodGroups(ready=10)) == 12
    assert resource_replicas(10, 90, 50, PodGroups(ready=0, unready=10)) is None


def test_hpa_external_average_value_uses_all_replicas() -> None:
    # GetExternalPerPodMetricReplicas: 1,500 messages at 100 per pod -> 15, from 10
    assert external_per_pod_replicas(10, 1500, 100) == 15
    assert external_per_pod_replicas(10, 1050, 100) == 10  # within the tolerance


# --- HPA: behavior (stabilization and rate limits) ---------------------------------


def test_hpa_new_autoscaler_does_not_scale_in_during_its_first_window() -> None:
    b = Behavior(DEFAULT_SCALE_UP, DEFAULT_SCALE_DOWN)
    b.record_initial(0, 10)
    assert b.stabilize(15, 10, 3) == 10  # the window holds the initial 10
    assert b.stabilize(299, 10, 3) == 10
    assert b.stabilize(316, 10, 3) == 3  # 300 s later only lower recommendations remain


def test_hpa_scale_up_rate_is_max_of_4_pods_and_100_percent_per_15_s() -> None:
    b = Behavior(DEFAULT_SCALE_UP, DEFAULT_SCALE_DOWN)
    assert b.rate(0, 2, 50, 1, 100) == 6  # 2 + 4 pods beats 2 x 2
    assert b.rate(0, 10, 50, 1, 100) == 20  # 100% beats 4 pods
    b.record_scale(0, 10, 20)
    assert b.rate(10, 20, 50, 1, 100) == 20  # the period started at 10: 20 already used it
    assert b.rate(15, 20, 50, 1, 100) == 40  # a new period


def test_hpa_rate_base_is_the_size_at_the_start_of_the_period() -> None:
    # a scale-down 5 s earlier: the period started at 10, so a burst may reach 20
    b = Behavior(DEFAULT_SCALE_UP, DEFAULT_SCALE_DOWN)
    b.record_scale(0, 10, 9)
    assert b.rate(5, 9, 50, 1, 100) == 20


def test_hpa_controller_sets_starting_pods_aside() -> None:
    # 2 pods serve at 100% CPU (target 50%), 2 more are starting: the need is
    # ceil(2 x 100 / 50) = 4, which is ordered already: no further scale-up
    spec = tier().scaling
    ctl = HpaController(spec, [UTIL], 60.0)
    assert ctl.desired(10, NOW, pool(2, starting=2), steady(100, 2)) == 4


def test_hpa_controller_counts_a_pod_only_once_its_sample_follows_readiness() -> None:
    # the datapoint of the last minute was taken while 2 pods served; 4 serve now: the
    # 2 new ones have no sample taken while ready yet, so they are set aside (0% on a
    # scale-up): ceil(2 x 100 / 50) = 4, not ceil(4 x 100 / 50) = 8
    spec = tier().scaling
    ctl = HpaController(spec, [UTIL], 60.0)
    signals = steady(100, 2)
    assert ctl.desired(10, NOW, pool(4), signals) == 4


def test_hpa_does_not_overshoot_a_10x_step_while_pods_start() -> None:
    trace = Trace("step", 60.0, tuple([1000.0] * 60 + [10000.0] * 120 + [1000.0] * 60))
    cfg = RunConfig(capacity_per_unit=2000)
    hpa, oracle = compare(tier(), trace, ["hpa", "oracle"], cfg)
    assert hpa.peak_capacity <= oracle.peak_capacity + 1


# --- AWS target tracking with instance warm-up --------------------------------------


def tt(spec: Any = None, **kw: Any) -> TargetTrackingController:
    s = spec or tier().scaling
    return TargetTrackingController(s, [feed_spec(m, 60.0) for m in s.metrics], 60.0, **kw)


def cpu_feed(values: list[float], ready: list[int]) -> Signals:
    s = Signals(values[0] / 100, 1.0, 0.0, ready[0])
    for v, r in zip(values, ready, strict=True):
        s.record(v / 100, 1.0, 0.0, r)
    return s


def test_target_tracking_scales_out_after_3_datapoints_above_target() -> None:
    ctl = tt()
    signals = cpu_feed([100.0] * 10, [5] * 10)
    p = pool(5)
    # CloudWatch: the datapoint of a minute is readable a minute after it ends
    assert ctl.desired(2, NOW, p, signals) == 5  # one datapoint so far
    assert ctl.desired(3, NOW, p, signals) == 5
    assert ctl.desired(4, NOW, p, signals) == 10  # 3 breaches: 5 x 100 / 50


def test_target_tracking_does_not_scale_out_again_while_instances_warm_up() -> None:
    # 5 instances serve at 100% (target 50%): 10 wanted, 10 in the group already (5 in
    # warm-up): the breach needs the capacity already ordered, so nothing is added
    ctl = tt()
    signals = cpu_feed([100.0] * 10, [5] * 10)
    p = pool(5, starting=5)
    for i in range(2, 9):
        assert ctl.desired(i, NOW, p, signals) == 10
    # a larger breach adds only the difference: 5 x 100 / 40 = 13 (not 10 + 13)
    ctl = tt(tier(metrics=[{**tier_metric(), "target": {"type": "Value", "value": 40}}]).scaling)
    for i in range(2, 5):
        out = ctl.desired(i, NOW, p, signals)
    assert out == 13


def tier_metric() -> dict[str, Any]:
    return {
        "name": "cpu",
        "cloudWatch": {"namespace": "AWS/EC2", "metricName": "CPUUtilization"},
    }


def test_target_tracking_does_not_scale_in_while_instances_warm_up() -> None:
    signals = cpu_feed([10.0] * 30, [10] * 30)
    warming = pool(10, starting=2)
    ctl = tt()
    assert [ctl.desired(i, NOW, warming, signals) for i in range(2, 25)][-1] == 12
    ctl = tt()
    out = [ctl.desired(i, NOW, pool(12), signals) for i in range(2, 25)]
    first_in = next(k for k, v in enumerate(out) if v < 12)
    assert first_in == 14  # the 15th datapoint below the low alarm
    assert out[first_in] == 2  # ceil(10 x 10 / 50): the ones whose samples it holds


def test_target_tracking_low_alarm_sits_below_the_target() -> None:
    signals = cpu_feed([47.0] * 30, [10] * 30)  # below 50 but above 0.9 x 50
    ctl = tt()
    assert {ctl.desired(i, NOW, pool(10), signals) for i in range(2, 25)} == {10}


def test_target_tracking_scales_in_only_when_every_policy_allows() -> None:
    spec = tier(
        metrics=[
            {**tier_metric(), "target": {"type": "Value", "value": 50}},
            {
                "name": "rpm",
                "prometheus": {"serverAddress": "http://p:9090", "query": "q"},
                "target": {"type": "AverageValue", "value": 0.105},
            },
        ]
    ).scaling
    # CPU is far below its target, but the requests per instance (1.0 demand / 10 ready =
    # 0.1) are only just below theirs (not below 0.9 x 0.105): no scale-in
    signals = cpu_feed([10.0] * 30, [10] * 30)
    ctl = tt(spec)
    assert {ctl.desired(i, NOW, pool(10), signals) for i in range(2, 28)} == {10}


def test_target_tracking_10x_step_buys_no_more_than_it_needs() -> None:
    trace = Trace("step", 60.0, tuple([1000.0] * 60 + [10000.0] * 120 + [1000.0] * 60))
    cfg = RunConfig(capacity_per_unit=2000)
    got, oracle = compare(tier(), trace, ["target-tracking", "oracle"], cfg)
    assert got.peak_capacity <= oracle.peak_capacity + 1


def test_app_autoscaling_targets_use_a_scale_in_cooldown() -> None:
    signals = cpu_feed([10.0] * 60, [10] * 60)
    ctl = tt(app_autoscaling=True)
    p = pool(10, starting=2)  # creating replicas do not block scale-in there
    out = [ctl.desired(i, NOW.replace(minute=i % 60), p, signals) for i in range(2, 25)]
    assert min(out) < 12


# --- the default policy is told the capacity in flight -----------------------------


def test_default_policy_is_told_the_units_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Observations] = []
    real = policies_module.decide

    def spy(spec: Any, obs: Observations, history: Any, now: datetime) -> Any:
        seen.append(obs)
        return real(spec, obs, history, now)

    monkeypatch.setattr(policies_module, "decide", spy)
    spec = tier().scaling
    ctl = DecideController("default", spec, [UTIL], 60.0, 30.0)
    ctl.desired(10, NOW, pool(4, starting=3), steady(100, 4))
    assert (seen[-1].capacity, seen[-1].starting, seen[-1].ready, seen[-1].leaving) == (7, 3, 4, 0)


def test_every_policy_runs_on_a_step_in_10_s_steps() -> None:
    trace = Trace("s", 10.0, tuple([100.0] * 60 + [1000.0] * 120))
    reports = compare(tier(), trace, ["default", "hpa", "target-tracking"], RunConfig(10.0))
    assert all(r.peak_capacity > 2 for r in reports)
    assert run(tier(), trace, "hpa", RunConfig(10.0)) == reports[1]  # deterministic


def test_default_policy_is_told_starting_for_the_operators_warmup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the world: units serve 180 s after launch; the operator counts them as starting
    # for its own warmupSeconds (300 s here), whatever the world does
    seen: list[int] = []
    real = policies_module.decide

    def spy(spec: Any, obs: Observations, history: Any, now: datetime) -> Any:
        seen.append(obs.starting)
        return real(spec, obs, history, now)

    monkeypatch.setattr(policies_module, "decide", spy)
    spec = tier().scaling
    ctl = DecideController("default", spec, [UTIL], 60.0, 60.0, starting_seconds=300.0)
    p = pool(2)
    signals = steady(100, 2, steps=20)
    t0 = NOW.timestamp()
    want = ctl.desired(10, NOW, p, signals)  # 2 at 100% vs 50%: out
    assert want > 2
    p.resize(t0, want)
    p.advance(t0 + 200)  # serving after 180 s ...
    later = datetime.fromtimestamp(t0 + 240, UTC)
    ctl.desired(14, later, p, signals)
    assert p.starting == 0 and seen[-1] == want - 2  # ... but still starting for the operator
    ctl.desired(15, datetime.fromtimestamp(t0 + 300, UTC), p, signals)
    assert seen[-1] == 0


def test_the_tiers_warmup_seconds_is_what_the_default_policy_counts() -> None:
    trace = Trace("flat", 60.0, (10.0,) * 10)
    r = tier(warmupSeconds=300)
    prep = prepare(r, trace, RunConfig())
    ctl = controller("default", r, prep, RunConfig())
    assert isinstance(ctl, DecideController) and ctl.starting_seconds == 300
    told = controller("default", r, prep, RunConfig(starting_seconds=240))
    assert isinstance(told, DecideController) and told.starting_seconds == 240
    plain = controller("default", tier(), prep, RunConfig())
    # as the operator counts it: the group's 180 s to serve + a 60 s CloudWatch period
    # and its 60 s delivery, until a datapoint includes the new unit
    assert isinstance(plain, DecideController) and plain.starting_seconds == 300
    assert prep.warmup == 180  # the world's warm-up is the target kind's, not the spec's
