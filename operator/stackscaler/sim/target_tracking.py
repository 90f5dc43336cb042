"""AWS target tracking, as Amazon EC2 Auto Scaling documents it, with instance warm-up.

A baseline for the simulator; docs/simulate.md cites the sources (the EC2
Auto Scaling user guide: target tracking scaling policies, default instance
warmup, scaling cooldowns).

- One target tracking policy per metric with a target. Each has two alarms
  on one-minute datapoints: high after 3 consecutive datapoints above the
  target, low after 15 consecutive datapoints below ``LOW_ALARM_RATIO`` x
  the target. A policy is invoked every minute while its alarm is in ALARM.
- Metrics aggregate only the instances that are not warming up (in the
  simulator: the units that serve). A ``Value`` target tracks the group's
  average utilization; an ``AverageValue`` target a per-instance metric
  (requests per ready instance, as ALBRequestCountPerTarget).
- Scale-out: the capacity that brings the metric to the target, computed
  from the instances whose samples the datapoint aggregates (not warming up
  through its minute), ``ceil(in_metric x value / target)``; the instances
  warming up are already part of the desired capacity, so a breach that
  needs the capacity already ordered adds nothing, and one that needs more
  adds only the difference. Any policy in ALARM scales out.
- Scale-in: only when every policy's low alarm is in ALARM, only as far as
  all allow, and never while instances are warming up.
- No cooldowns: EC2 Auto Scaling applies cooldowns to simple scaling only.
  With ``app_autoscaling`` (targets that are not Auto Scaling groups, scaled
  by Application Auto Scaling), the default 300 s scale-in cooldown applies
  instead of the warm-up block on scale-in.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from stackscaler.model.spec import ScalingSpec, TargetType
from stackscaler.sim.model import FeedSpec, Pool, Signals

HIGH_DATAPOINTS = 3
LOW_DATAPOINTS = 15
LOW_ALARM_RATIO = 0.9
"""The low alarm's threshold relative to the target (target tracking scales in only
when the metric is clearly below the target; see docs/simulate.md)."""
DATAPOINT_SECONDS = 60.0
APP_AUTOSCALING_SCALE_IN_COOLDOWN = 300.0


@dataclass
class _Policy:
    metric: str
    target: float
    feed: FeedSpec
    datapoints: deque[float]


class TargetTrackingController:
    name = "target-tracking"

    def __init__(
        self,
        spec: ScalingSpec,
        feeds: Sequence[FeedSpec],
        step_seconds: float,
        *,
        app_autoscaling: bool = False,
        low_alarm_ratio: float = LOW_ALARM_RATIO,
    ) -> None:
        self.spec = spec
        period = max(1, round(DATAPOINT_SECONDS / step_seconds))
        self.interval_steps = period
        self.app_autoscaling = app_autoscaling
        self.low_alarm_ratio = low_alarm_ratio
        self.policies: list[_Policy] = []
        for m, f in zip(spec.metrics, feeds, strict=True):
            if m.target is None:
                continue
            signal = f.signal
            if m.target.type is TargetType.AVERAGE_VALUE and signal == "total":
                signal = "per_ready"  # the per-instance metric over the instances in service
            feed = replace(f, signal=signal, period_steps=period)
            self.policies.append(
                _Policy(m.name, m.target.value, feed, deque(maxlen=LOW_DATAPOINTS))
            )
        if not self.policies:
            raise ValueError("target tracking needs a metric with a target")
        self.last_scale_in = -math.inf
        self.last_reason = ""

    def desired(self, i: int, now: datetime, pool: Pool, signals: Signals) -> int:
        cap = pool.capacity
        lo, hi = self.spec.min_capacity, self.spec.max_capacity
        out: list[int] = []
        ins: list[int] = []
        all_low = True
        for p in self.policies:
            v, _ = signals.read(p.feed, i)
            in_metric = signals.ready_through(p.feed, i, pool.ready)
            if p.feed.signal == "backlog":  # per instance (the SQS recipe's custom metric)
                v /= max(in_metric, 1)
            p.datapoints.append(v)
            proposal = math.ceil(in_metric * v / p.target - 1e-9) if in_metric else None
            recent = list(p.datapoints)
            high = len(recent) >= HIGH_DATAPOINTS and all(
                x > p.target for x in recent[-HIGH_DATAPOINTS:]
            )
            low = len(recent) >= LOW_DATAPOINTS and all(
                x < self.low_alarm_ratio * p.target for x in recent
            )
            if high and proposal is not None:
                out.append(proposal)
            if low and proposal is not None:
                ins.append(proposal)
            else:
                all_low = False
        if out and max(out) > cap and cap < hi:
            new = min(max(out), hi)
            self.last_reason = f"alarm high: {cap} -> {new}"
            return new
        if all_low and ins:
            t = now.timestamp()
            if self.app_autoscaling:
                blocked = t < self.last_scale_in + APP_AUTOSCALING_SCALE_IN_COOLDOWN
            else:
                blocked = pool.starting > 0
            new = max(*ins, lo)
            if new < cap and not blocked:
                self.last_scale_in = t
                self.last_reason = f"alarm low: {cap} -> {new}"
                return new
        bounded = min(max(cap, lo), hi)
        self.last_reason = f"hold {bounded}"
        return bounded
