"""Application Auto Scaling's target tracking for a DynamoDB table, as AWS documents it.

A baseline for ``stackscaler simulate`` on a TableCapacity; docs/simulate.md cites
the sources:

- DynamoDB auto scaling creates CloudWatch alarms on the consumed capacity and
  Application Auto Scaling acts when one fires: it "increases provisioned capacity
  when utilization exceeds [the target] for at least 2 consecutive minutes" and
  "decreases provisioned capacity when utilization is 20% or more below the target
  for 15 consecutive minutes" (AWS Knowledge Center, "Why is my DynamoDB auto scaling
  not working as expected": at 100 RCUs and a 70 % target, above 70 RCUs for 2
  minutes, below 50 RCUs for 15). The low threshold is the target less 20 points.
- The proposal is target tracking's: the capacity that brings utilization to the
  target, ``ceil(consumed / target)``, within min and max; a policy is invoked every
  minute while its alarm is in ALARM.
- Cooldowns: 0 s in both directions for DynamoDB tables and GSIs by default
  (Application Auto Scaling's defaults, ``ScaleInCooldown`` / ``ScaleOutCooldown``).
- Read and write are separate scalable targets with their own alarms: each scale-in
  is its own UpdateTable and spends its own decrease. When the table has none left
  UpdateTable fails (LimitExceededException) and the alarm, still in ALARM, tries
  again the next minute.

Pure: the caller feeds one datapoint per minute.
"""

from __future__ import annotations

import math
from collections import deque

HIGH_DATAPOINTS = 2
LOW_DATAPOINTS = 15
LOW_POINTS_BELOW = 20.0
"""The low alarm's threshold: this many utilization points below the target."""


class AasTableController:
    """One scalable dimension's target tracking policy (its two alarms)."""

    def __init__(
        self,
        target_percent: float,
        min_capacity: int,
        max_capacity: int,
        *,
        scale_in_cooldown: float = 0.0,
        scale_out_cooldown: float = 0.0,
    ) -> None:
        if not 0 < target_percent <= 100:
            raise ValueError(f"target must be within (0, 100] %, got {target_percent:g}")
        self.target = target_percent / 100.0
        self.low = max(0.0, target_percent - LOW_POINTS_BELOW) / 100.0
        self.min_capacity = min_capacity
        self.max_capacity = max_capacity
        self.scale_in_cooldown = scale_in_cooldown
        self.scale_out_cooldown = scale_out_cooldown
        self.datapoints: deque[float] = deque(maxlen=LOW_DATAPOINTS)
        self.last_in = -math.inf
        self.last_out = -math.inf
        self.reason = ""

    def proposal(self, consumed: float) -> int:
        return min(
            max(math.ceil(consumed / self.target - 1e-9), self.min_capacity), self.max_capacity
        )

    def observe(self, t: float, consumed: float, capacity: int) -> int:
        """A new one-minute datapoint (consumed units per second) at ``t`` with the table
        at ``capacity``: the capacity Application Auto Scaling asks for (``capacity``:
        no change). The alarms compare the datapoints with the thresholds of the current
        capacity (AAS updates them when the capacity changes)."""
        self.datapoints.append(consumed)
        points = list(self.datapoints)
        want = self.proposal(consumed)
        high = len(points) >= HIGH_DATAPOINTS and all(
            p > self.target * capacity for p in points[-HIGH_DATAPOINTS:]
        )
        if high and want > capacity and t >= self.last_out + self.scale_out_cooldown:
            self.reason = f"alarm high: {capacity} -> {want}"
            return want
        low = len(points) >= LOW_DATAPOINTS and all(p < self.low * capacity for p in points)
        if low and want < capacity and t >= self.last_in + self.scale_in_cooldown:
            self.reason = f"alarm low: {capacity} -> {want}"
            return want
        self.reason = f"hold {capacity}"
        return capacity

    def applied(self, t: float, before: int, after: int) -> None:
        """The change was made (cooldowns start from it)."""
        if after > before:
            self.last_out = t
        elif after < before:
            self.last_in = t
