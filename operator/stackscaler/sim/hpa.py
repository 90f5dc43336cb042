"""The Kubernetes HorizontalPodAutoscaler, as its controller computes replicas.

A baseline for the simulator, written from the controller's source
(kubernetes/kubernetes ``pkg/controller/podautoscaler``) and the HPA
documentation ("Algorithm details"); docs/simulate.md cites both.

- ``replica_calculator.go`` ``GetResourceReplicas`` and ``groupPods`` (a
  ``Resource`` CPU metric with an ``Utilization`` target): the usage ratio
  comes from the pods that have a sample taken while ready; pods that are
  pending, not ready, or whose newest sample predates their readiness plus
  one metric window (within the 5-minute ``--horizontal-pod-autoscaler-cpu-
  initialization-period``; after it, a pod unready since within the 30 s
  ``--horizontal-pod-autoscaler-initial-readiness-delay`` of its start) are
  set aside ("unready"). On a scale-up the unready pods count at 0% and the
  pods with no sample ("missing") at 0%; on a scale-down the unready pods
  are left out and the missing ones count at 100% of their request. A ratio
  within the tolerance (0.1), or one that the set-aside pods would turn the
  other way, keeps the current count.
- ``GetExternalPerPodMetricReplicas`` (an ``External`` metric with an
  ``AverageValue`` target, the way KEDA feeds totals and queue backlogs):
  ``ceil(total / target)`` unless ``total / (target x replicas)`` is within
  the tolerance; no readiness rule.
- ``horizontal.go``: the highest recommendation of all metrics; with a
  metric that cannot be computed, no scale-down (and with none, no change);
  the scale-down stabilization window (300 s: the highest recommendation of
  the window, which starts with the current size when the autoscaler is
  new); scale-up by at most max(4 pods, 100%) and scale-down by up to 100%
  per 15 s, each from the size at the start of the period; min and max.
  It syncs every 15 s (``--horizontal-pod-autoscaler-sync-period``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from stackscaler.model.spec import ScalingSpec, TargetType
from stackscaler.sim.model import FeedSpec, Pool, Signals

SYNC_SECONDS = 15.0
TOLERANCE = 0.1
CPU_INITIALIZATION_PERIOD_SECONDS = 300.0
INITIAL_READINESS_DELAY_SECONDS = 30.0


class PolicyType(StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


class Select(StrEnum):
    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


@dataclass(frozen=True)
class ScalingPolicy:
    type: PolicyType
    value: int
    period_seconds: int


@dataclass(frozen=True)
class ScalingRules:
    stabilization_window_seconds: int
    policies: tuple[ScalingPolicy, ...]
    select: Select = Select.MAX


DEFAULT_SCALE_UP = ScalingRules(
    0, (ScalingPolicy(PolicyType.PODS, 4, 15), ScalingPolicy(PolicyType.PERCENT, 100, 15))
)
DEFAULT_SCALE_DOWN = ScalingRules(300, (ScalingPolicy(PolicyType.PERCENT, 100, 15),))


@dataclass(frozen=True)
class PodGroups:
    """The pods of one CPU reading, as ``groupPods`` sorts them."""

    ready: int
    """Running and ready, with a sample taken while ready: they make the usage ratio."""
    unready: int = 0
    """Pending, not ready, or sampled before readiness (set aside; 0% on a scale-up)."""
    missing: int = 0
    """Ready but with no sample (0% on a scale-up, 100% of request on a scale-down)."""


def resource_replicas(
    current: int, utilization: float, target: float, pods: PodGroups, tolerance: float = TOLERANCE
) -> int | None:
    """``GetResourceReplicas``: replicas for an average utilization (percent of request).

    ``utilization`` is the average over the ready pods; None when no ready pod
    has a sample ("did not receive metrics for any ready pods").
    """
    if pods.ready <= 0:
        return None
    util = math.floor(utilization)  # the controller's utilization is an integer percent
    ratio = util / target
    rebalance = pods.unready > 0 and ratio > 1.0
    if not rebalance and pods.missing == 0:
        if abs(1.0 - ratio) <= tolerance:
            return current
        return math.ceil(ratio * pods.ready - 1e-9)
    usage = float(util * pods.ready)  # percent-pods
    counted = pods.ready
    if pods.missing:
        if ratio < 1.0:
            usage += 100.0 * pods.missing
            counted += pods.missing
        elif ratio > 1.0:
            counted += pods.missing
    if rebalance:
        counted += pods.unready
    new_ratio = math.floor(usage / counted) / target
    if (
        abs(1.0 - new_ratio) <= tolerance
        or (ratio < 1.0 and new_ratio > 1.0)
        or (ratio > 1.0 and new_ratio < 1.0)
    ):
        return current
    new = math.ceil(new_ratio * counted - 1e-9)
    if (new_ratio < 1.0 and new > current) or (new_ratio > 1.0 and new < current):
        return current
    return new


def external_per_pod_replicas(
    status_replicas: int, total: float, target_per_pod: float, tolerance: float = TOLERANCE
) -> int:
    """``GetExternalPerPodMetricReplicas``: replicas for a total at ``target_per_pod`` each."""
    if status_replicas <= 0:
        return math.ceil(total / target_per_pod - 1e-9)
    ratio = total / (target_per_pod * status_replicas)
    if abs(1.0 - ratio) > tolerance:
        return math.ceil(total / target_per_pod - 1e-9)
    return status_replicas


def _change_in_period(events: Sequence[tuple[float, int]], t: float, period: float) -> int:
    return sum(n for at, n in events if at > t - period)


class Behavior:
    """The controller's memory for one HPA: recommendations and scale events.

    ``stabilizeRecommendationWithBehaviors`` then
    ``convertDesiredReplicasWithBehaviorRate`` of ``horizontal.go``.
    """

    def __init__(
        self,
        up: ScalingRules = DEFAULT_SCALE_UP,
        down: ScalingRules = DEFAULT_SCALE_DOWN,
    ) -> None:
        self.up = up
        self.down = down
        self.recommendations: list[tuple[float, int]] = []
        self.up_events: list[tuple[float, int]] = []
        self.down_events: list[tuple[float, int]] = []
        self._keep = float(
            max(
                up.stabilization_window_seconds,
                down.stabilization_window_seconds,
                *(p.period_seconds for p in up.policies + down.policies),
            )
        )

    def record_initial(self, t: float, current: int) -> None:
        """A new autoscaler's window starts with the current size
        (``recordInitialRecommendation``)."""
        if not self.recommendations:
            self.recommendations.append((t, current))

    def stabilize(self, t: float, current: int, desired: int) -> int:
        up_cut = t - self.up.stabilization_window_seconds
        down_cut = t - self.down.stabilization_window_seconds
        up = down = desired
        for at, rec in self.recommendations:
            if at > up_cut:
                up = min(up, rec)
            if at > down_cut:
                down = max(down, rec)
        out = min(max(current, up), down)
        self.recommendations = [r for r in self.recommendations if r[0] > t - self._keep]
        self.recommendations.append((t, desired))
        return out

    def _period_start(self, t: float, current: int, period: float) -> int:
        added = _change_in_period(self.up_events, t, period)
        removed = _change_in_period(self.down_events, t, period)
        return current - added + removed

    def rate(self, t: float, current: int, desired: int, lo: int, hi: int) -> int:
        if desired > current:
            rules = self.up
            if rules.select is Select.DISABLED:
                limit = current
            else:
                proposals = []
                for p in rules.policies:
                    start = self._period_start(t, current, p.period_seconds)
                    if p.type is PolicyType.PODS:
                        proposals.append(start + p.value)
                    else:
                        proposals.append(math.ceil(start * (1 + p.value / 100) - 1e-9))
                limit = max(proposals) if rules.select is Select.MAX else min(proposals)
            limit = max(limit, current)
            return min(desired, hi, limit)
        if desired < current:
            rules = self.down
            if rules.select is Select.DISABLED:
                limit = current
            else:
                proposals = []
                for p in rules.policies:
                    start = self._period_start(t, current, p.period_seconds)
                    if p.type is PolicyType.PODS:
                        proposals.append(start - p.value)
                    else:
                        proposals.append(int(start * (1 - p.value / 100)))
                limit = min(proposals) if rules.select is Select.MAX else max(proposals)
            limit = min(limit, current)
            return max(desired, lo, limit)
        return desired

    def record_scale(self, t: float, before: int, after: int) -> None:
        cut = t - self._keep
        if after > before:
            self.up_events = [e for e in self.up_events if e[0] > cut]
            self.up_events.append((t, after - before))
        elif after < before:
            self.down_events = [e for e in self.down_events if e[0] > cut]
            self.down_events.append((t, before - after))


class HpaController:
    """The HPA on the simulated metric feeds: every ``Value`` target is the CPU
    ``Resource`` metric (``Utilization``), every ``AverageValue`` target and a queue
    backlog an ``External`` metric with an ``AverageValue`` target."""

    name = "hpa"
    interval_steps = 1

    def __init__(
        self,
        spec: ScalingSpec,
        feeds: Sequence[FeedSpec],
        step_seconds: float,
        tolerance: float = TOLERANCE,
    ) -> None:
        self.spec = spec
        self.step_seconds = step_seconds
        self.tolerance = tolerance
        self.metrics = [
            (m.target.type, m.target.value, f)
            for m, f in zip(spec.metrics, feeds, strict=True)
            if m.target is not None
        ]
        self.behavior = Behavior()
        self.last_reason = ""

    def _recommend(self, i: int, current: int, pool: Pool, signals: Signals) -> int | None:
        recs: list[int] = []
        invalid = 0
        for kind, target, feed in self.metrics:
            value, _ = signals.read(feed, i)
            if kind is TargetType.VALUE and feed.signal == "util":
                ready = signals.ready_through(feed, i, pool.ready)
                pods = PodGroups(ready=ready, unready=max(0, current - ready))
                rec = resource_replicas(current, value, target, pods, self.tolerance)
            else:
                rec = external_per_pod_replicas(current, value, target, self.tolerance)
            if rec is None:
                invalid += 1
            else:
                recs.append(rec)
        if not recs:
            return None
        desired = max(recs)
        if invalid and desired < current:
            return None  # some metric unavailable: never scale down
        return desired

    def sync(self, t: float, i: int, current: int, pool: Pool, signals: Signals) -> int:
        """One controller pass at time ``t`` (seconds); returns the new replica count."""
        lo, hi = self.spec.min_capacity, self.spec.max_capacity
        self.behavior.record_initial(t, current)
        if current > hi:
            desired = hi
        elif current < lo:
            desired = lo
        elif current == 0 and lo != 0:
            return current  # scaling disabled at 0 replicas
        else:
            rec = self._recommend(i, current, pool, signals)
            if rec is None:
                self.last_reason = f"hold {current} (no usable metric)"
                return current
            stable = self.behavior.stabilize(t, current, rec)
            desired = self.behavior.rate(t, current, stable, lo, hi)
            desired = min(max(desired, lo), hi)
        if desired != current:
            self.behavior.record_scale(t, current, desired)
        self.last_reason = f"{current} -> {desired}"
        return desired

    def desired(self, i: int, now: datetime, pool: Pool, signals: Signals) -> int:
        """The passes due within this step (every 15 s); passes after the first run only
        while the previous one scaled up (a pass with unchanged inputs changes nothing
        that a 60 s step can show, except rate-limited scale-ups)."""
        t0 = now.timestamp()
        first = math.ceil(t0 / SYNC_SECONDS - 1e-9) * SYNC_SECONDS
        current = pool.capacity
        t = first
        while t < t0 + self.step_seconds - 1e-9:
            new = self.sync(t, i, current, pool, signals)
            grew = new > current
            current = new
            if not grew:
                break
            t += SYNC_SECONDS
        return current
