"""The simulated world: a capacity pool with warm-up, metric feeds with delay and period.

Units: demand is what arrives per *trace row interval* (requests per minute
for a per-minute trace); one capacity unit serves ``capacity_per_unit`` of
it at 100% utilization. Time is in steps of ``step_seconds``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from stackscaler.model.crds import BACKLOG_METRIC, WARMUP_SECONDS_BY_TARGET
from stackscaler.model.spec import (
    CloudWatchSource,
    MetricSpec,
    PrometheusSource,
    Resource,
    ScalingSpec,
    SqsSource,
    TargetType,
    TierSource,
)

WARMUP_BY_TARGET = {kind: float(s) for kind, s in WARMUP_SECONDS_BY_TARGET.items()}
"""Seconds from launch until a unit serves, by target kind: the CRD's warmupSeconds defaults
(EC2 boot and health check 180, RDS replica and ElastiCache replica 600, pods 30)."""
CLOUDWATCH_DELAY_SECONDS = 60.0
"""A CloudWatch datapoint can be read about a minute after its period ends."""
PROMETHEUS_SCRAPE_SECONDS = 30.0
"""Prometheus: one scrape interval of period, visible at the next scrape."""
UTIL_CAP = 10.0
"""Utilization with no ready unit but some demand is reported as 1000%."""


def default_warmup(resource: Resource) -> float:
    return WARMUP_BY_TARGET.get(resource.target.kind, 180.0)


def follows(m: MetricSpec) -> bool:
    """Whether ``m`` reads another tier (a tier source), not this tier's own load."""
    return isinstance(m.source, TierSource)


def own_metrics(spec: ScalingSpec) -> tuple[MetricSpec, ...]:
    """The metrics the tier's own load produces (its tier sources left out)."""
    return tuple(m for m in spec.metrics if not follows(m))


def target_utilization(spec: ScalingSpec, capacity_per_unit: float) -> float:
    """The headroom the user chose, as a utilization (0-1]: the most demanding target.

    ``Value`` targets are a utilization in percent (CPU); ``AverageValue``
    targets are demand per unit, so target / capacity_per_unit; a queue
    backlog target is not a utilization (1.0); step scaling neither; a tier
    source measures another tier, not this one's load (left out).
    """
    utils: list[float] = []
    for m in own_metrics(spec):
        if m.target is None or m.name == BACKLOG_METRIC:
            continue
        if m.target.type is TargetType.VALUE:
            utils.append(m.target.value / 100.0)
        else:
            utils.append(m.target.value / capacity_per_unit)
    u = min(utils, default=1.0)
    return min(max(u, 1e-6), 1.0)


class Pool:
    """Launched units: ready ones, and starting ones that serve after their warm-up.

    ``starting`` units are paid for and counted in ``capacity`` but serve no
    demand and produce no metric yet (EC2 instances in warm-up, pods not ready,
    replicas being created). Scale-in removes starting units first (newest
    first), then ready ones, at once (no unit is ever "leaving" for long).
    """

    __slots__ = ("pending", "ready", "starting", "warmup")

    def __init__(self, ready: int, warmup: float) -> None:
        self.ready = ready
        self.starting = 0
        self.warmup = warmup
        self.pending: deque[list[float]] = deque()  # [ready_at, units], in launch order

    @property
    def capacity(self) -> int:
        return self.ready + self.starting

    def advance(self, t: float) -> None:
        while self.pending and self.pending[0][0] <= t:
            n = int(self.pending.popleft()[1])
            self.ready += n
            self.starting -= n

    def resize(self, t: float, desired: int) -> None:
        delta = desired - self.capacity
        if delta > 0:
            self.pending.append([t + self.warmup, float(delta)])
            self.starting += delta
            self.advance(t)  # a zero warm-up serves at once
            return
        remove = -delta
        while remove and self.pending:
            last = self.pending[-1]
            take = min(int(last[1]), remove)
            last[1] -= take
            self.starting -= take
            remove -= take
            if not last[1]:
                self.pending.pop()
        self.ready -= remove


@dataclass(frozen=True)
class FeedSpec:
    """How one metric reaches the policy: its signal, period and delivery delay (in steps)."""

    name: str
    signal: str
    """util (percent, capped at 100), total (demand per row interval), per_ready (demand
    per ready unit) or backlog (level)."""
    period_steps: int
    delay_steps: int


def feed_spec(m: MetricSpec, step_seconds: float) -> FeedSpec:
    """How the tier's own metric ``m`` reaches the policy (not a tier source: those read
    the other tier's last decision, :mod:`stackscaler.sim.stack`)."""
    source = m.source
    if isinstance(source, TierSource):
        raise ValueError(
            f"metric {m.name!r} follows {source} (a tier source): simulate it with the tier "
            "it follows (stackscaler simulate --stack)"
        )
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
    """What happened, step by step: prefix sums of utilization, demand and demand per
    ready unit; backlog levels; ready units."""

    __slots__ = ("backlog", "demand_sum", "initial", "per_ready_sum", "ready", "util_sum")

    def __init__(self, util: float, demand: float, backlog: float, ready: int = 0) -> None:
        self.initial = (min(100.0, util * 100.0), demand, backlog, demand / max(ready, 1))
        self.util_sum = [0.0]
        self.demand_sum = [0.0]
        self.per_ready_sum = [0.0]
        self.backlog: list[float] = []
        self.ready: list[int] = []
        """Ready units at each recorded step."""

    def record(self, util: float, demand: float, backlog: float, ready: int = 0) -> None:
        self.util_sum.append(self.util_sum[-1] + min(100.0, util * 100.0))
        self.demand_sum.append(self.demand_sum[-1] + demand)
        self.per_ready_sum.append(self.per_ready_sum[-1] + demand / max(ready, 1))
        self.backlog.append(backlog)
        self.ready.append(ready)

    def window(self, f: FeedSpec, i: int) -> tuple[int, int]:
        """Steps [start, end) averaged by the datapoint of ``f`` readable at step ``i``.

        The newest complete period whose end is at least ``delay`` steps ago;
        ``start < 0`` means no such period yet (the state at the start holds).
        """
        end = ((i - f.delay_steps) // f.period_steps) * f.period_steps
        return end - f.period_steps, end

    def read(self, f: FeedSpec, i: int) -> tuple[float, int]:
        """(value, step at which the datapoint's period ended) available at step ``i``.

        Before the first complete period: the state at the start (steady history).
        """
        start, end = self.window(f, i)
        if start < 0:
            k = {"util": 0, "total": 1, "backlog": 2, "per_ready": 3}[f.signal]
            return self.initial[k], i
        if f.signal == "backlog":
            return self.backlog[end - 1], end
        sums = {"util": self.util_sum, "total": self.demand_sum, "per_ready": self.per_ready_sum}
        s = sums[f.signal]
        return (s[end] - s[start]) / f.period_steps, end

    def ready_through(self, f: FeedSpec, i: int, now: int) -> int:
        """Units ready through the whole period of the datapoint readable at step ``i``
        and still there: the units whose samples that datapoint holds (``now``: ready now).
        """
        start, end = self.window(f, i)
        if start < 0:
            return now
        return min(now, *self.ready[start:end])


def utilization(demand: float, ready: int, capacity_per_unit: float) -> float:
    if ready > 0:
        return demand / (ready * capacity_per_unit)
    return UTIL_CAP if demand > 0 else 0.0


def units_needed(demand: float, capacity_per_unit: float, target: float) -> int:
    """Smallest capacity keeping utilization <= target."""
    return max(0, math.ceil(demand / (capacity_per_unit * target) - 1e-9))
