"""The simulated world: a capacity pool with warm-up, metric feeds with delay and period.

Units: demand is what arrives per *trace row interval* (requests per minute
for a per-minute trace); one capacity unit serves ``capacity_per_unit`` of
it at 100% utilization. Time is in steps of ``step_seconds``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from stackscaler.model.crds import BACKLOG_METRIC
from stackscaler.model.spec import (
    CloudWatchSource,
    MetricSpec,
    PrometheusSource,
    Resource,
    ScalingSpec,
    SqsSource,
    TargetType,
)

# Warm-up defaults by target kind: seconds from launch until a unit serves.
WARMUP_BY_TARGET = {
    "AutoScalingGroup": 180.0,  # EC2 boot + health check
    "DBInstance": 600.0,  # RDS read replica creation
    "DBCluster": 600.0,  # Aurora reader
    "ReplicationGroup": 600.0,  # ElastiCache replica
    "Deployment": 30.0,  # pod start + readiness
    "StatefulSet": 30.0,
}
CLOUDWATCH_DELAY_SECONDS = 60.0
"""A CloudWatch datapoint can be read about a minute after its period ends."""
PROMETHEUS_SCRAPE_SECONDS = 30.0
"""Prometheus: one scrape interval of period, visible at the next scrape."""
UTIL_CAP = 10.0
"""Utilization with no ready unit but some demand is reported as 1000%."""


def default_warmup(resource: Resource) -> float:
    return WARMUP_BY_TARGET.get(resource.target.kind, 180.0)


def target_utilization(spec: ScalingSpec, capacity_per_unit: float) -> float:
    """The headroom the user chose, as a utilization (0-1]: the most demanding target.

    ``Value`` targets are a utilization in percent (CPU); ``AverageValue``
    targets are demand per unit, so target / capacity_per_unit; a queue
    backlog target is not a utilization (1.0); step scaling neither.
    """
    utils: list[float] = []
    for m in spec.metrics:
        if m.target is None or m.name == BACKLOG_METRIC:
            continue
        if m.target.type is TargetType.VALUE:
            utils.append(m.target.value / 100.0)
        else:
            utils.append(m.target.value / capacity_per_unit)
    u = min(utils, default=1.0)
    return min(max(u, 1e-6), 1.0)


class Pool:
    """Launched units: ready ones, and pending ones that serve after their warm-up.

    Scale-in removes pending units first (newest first), then ready ones.
    """

    __slots__ = ("pending", "ready", "warmup")

    def __init__(self, ready: int, warmup: float) -> None:
        self.ready = ready
        self.warmup = warmup
        self.pending: deque[list[float]] = deque()  # [ready_at, units], in launch order

    @property
    def capacity(self) -> int:
        return self.ready + sum(int(p[1]) for p in self.pending)

    def advance(self, t: float) -> None:
        while self.pending and self.pending[0][0] <= t:
            self.ready += int(self.pending.popleft()[1])

    def resize(self, t: float, desired: int) -> None:
        delta = desired - self.capacity
        if delta > 0:
            self.pending.append([t + self.warmup, float(delta)])
            self.advance(t)  # a zero warm-up serves at once
            return
        remove = -delta
        while remove and self.pending:
            last = self.pending[-1]
            take = min(int(last[1]), remove)
            last[1] -= take
            remove -= take
            if not last[1]:
                self.pending.pop()
        self.ready -= remove


@dataclass(frozen=True)
class FeedSpec:
    """How one metric reaches the policy: its signal, period and delivery delay (in steps)."""

    name: str
    signal: str
    """util (percent, capped at 100), total (demand per row interval) or backlog (level)."""
    period_steps: int
    delay_steps: int


def feed_spec(m: MetricSpec, step_seconds: float) -> FeedSpec:
    source = m.source
    if m.name == BACKLOG_METRIC or isinstance(source, SqsSource):
        signal, period, delay = "backlog", step_seconds, 0.0
    else:
        total = m.target is not None and m.target.type is TargetType.AVERAGE_VALUE
        signal = "total" if total else "util"
        if isinstance(source, CloudWatchSource):
            period, delay = float(source.period_seconds), CLOUDWATCH_DELAY_SECONDS
        elif isinstance(source, PrometheusSource):
            period, delay = PROMETHEUS_SCRAPE_SECONDS, 0.0
        else:
            period, delay = 60.0, 0.0
    return FeedSpec(
        m.name,
        signal,
        max(1, round(period / step_seconds)),
        max(0, round(delay / step_seconds)),
    )


class Signals:
    """What happened, step by step: prefix sums of utilization and demand, backlog levels."""

    __slots__ = ("backlog", "demand_sum", "initial", "util_sum")

    def __init__(self, util: float, demand: float, backlog: float) -> None:
        self.initial = (min(100.0, util * 100.0), demand, backlog)
        self.util_sum = [0.0]
        self.demand_sum = [0.0]
        self.backlog: list[float] = []

    def record(self, util: float, demand: float, backlog: float) -> None:
        self.util_sum.append(self.util_sum[-1] + min(100.0, util * 100.0))
        self.demand_sum.append(self.demand_sum[-1] + demand)
        self.backlog.append(backlog)

    def read(self, f: FeedSpec, i: int) -> tuple[float, int]:
        """(value, step at which the datapoint's period ended) available at step ``i``.

        The newest complete period whose end is at least ``delay`` steps ago;
        before the first such period, the state at the start (steady history).
        """
        end = ((i - f.delay_steps) // f.period_steps) * f.period_steps
        start = end - f.period_steps
        if start < 0:
            k = {"util": 0, "total": 1, "backlog": 2}[f.signal]
            return self.initial[k], i
        if f.signal == "backlog":
            return self.backlog[end - 1], end
        sums = self.util_sum if f.signal == "util" else self.demand_sum
        return (sums[end] - sums[start]) / f.period_steps, end


def utilization(demand: float, ready: int, capacity_per_unit: float) -> float:
    if ready > 0:
        return demand / (ready * capacity_per_unit)
    return UTIL_CAP if demand > 0 else 0.0


def units_needed(demand: float, capacity_per_unit: float, target: float) -> int:
    """Smallest capacity keeping utilization <= target."""
    return max(0, math.ceil(demand / (capacity_per_unit * target) - 1e-9))
