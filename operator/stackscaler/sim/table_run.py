"""``stackscaler simulate`` on a TableCapacity: the dimensions of one table (or GSI)
under one trace and one policy, through :mod:`stackscaler.sim.table`'s world.

The dimensions of one table share its decrease budget: a read resource and a write
resource of the same table (and index) run together. Policies:

- ``default``: ``policy.decide`` with each resource's spec every
  ``pollIntervalSeconds``, told the table's decreases (DescribeTable's
  NumberOfDecreasesToday and LastDecreaseDateTime); changes decided in the same tick
  are one UpdateTable (the operator merges them), so lowering read and write together
  is one decrease.
- ``target-tracking``: Application Auto Scaling's target tracking for DynamoDB
  (:mod:`stackscaler.sim.aas_dynamodb`), each dimension on its own.
- ``static-peak``: the oracle's highest need, constant.
- ``oracle``: perfect foresight at the target, unconstrained: at every step the
  smallest capacity keeping consumed <= target x provisioned. It ignores the decrease
  budget (it would need far more than 27 decreases a day): the lower bound, not a
  policy the table could follow.

And the cost of on-demand mode for the same trace: every request unit billed.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stackscaler.model.spec import ScalingSpec
from stackscaler.policy import DecreaseBudget, History, MetricObservation, Observations, decide
from stackscaler.sim.aas_dynamodb import AasTableController
from stackscaler.sim.table import (
    BURST_SECONDS,
    DAY_SECONDS,
    DecreaseLedger,
    Dimension,
    on_demand_price,
    unit_hour_price,
    utc_day,
)

CONSUMED = "consumed"
THROTTLES = "throttles"
TABLE_POLICIES = ("default", "target-tracking", "static-peak", "oracle")
METRIC_PERIOD_SECONDS = 60.0
"""DynamoDB publishes consumed capacity and throttle events per minute."""
METRIC_DELAY_SECONDS = 60.0
"""A CloudWatch datapoint is readable about a minute after its period ends."""
TROUGH_SECONDS = 3600.0
"""A day's trough: the hour of the UTC day with the least demand."""
TROUGH_GOAL = 1.5
GAP_SECONDS = 600.0
"""Ten minutes or more without a single request: the trace's log was down (NASA's has
such gaps), not a trough of the traffic."""


@dataclass(frozen=True)
class TableTier:
    """One TableCapacity resource as the simulator runs it."""

    name: str
    dimension: str
    """Read or Write."""
    spec: ScalingSpec
    target: float
    """Target utilization (0, 1]."""
    capacity_per_unit: float
    """Trace demand (per row interval) one capacity unit serves: one unit is one request
    per second, so 60 for a per-minute trace of requests that each take one unit."""


@dataclass(frozen=True)
class TableConfig:
    step_seconds: float = 60.0
    scale: float = 1.0
    start: datetime = datetime(1995, 7, 1, 4, 0, tzinfo=UTC)
    burst_seconds: float = BURST_SECONDS
    record_series: bool = False

    def __post_init__(self) -> None:
        if not 1.0 <= self.step_seconds <= 60.0:
            raise ValueError(f"step must be within 1-60 s, got {self.step_seconds:g}")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError("scale must be > 0")
        if not 0 <= self.burst_seconds < math.inf:
            raise ValueError("burst seconds must be >= 0")


@dataclass(frozen=True)
class TierStats:
    name: str
    dimension: str
    capacity_unit_hours: float
    oracle_unit_hours: float
    throttled_minutes: float
    throttled_units: float
    request_units: float
    """Units consumed by the demand (what on-demand bills)."""
    peak: int
    increases: int
    lowerings: int
    """Changes that lowered this dimension (each part of one UpdateTable)."""
    cost: float
    on_demand_cost: float
    trough_ratios: tuple[float, ...]
    """Per full UTC day with a trough: capacity at the end of the day's trough / the
    oracle's highest need over that hour."""
    trough_days: tuple[int, ...] = ()
    """The UTC day (days since the epoch) of each of ``trough_ratios``."""
    capacity: tuple[int, ...] = field(default=(), compare=False, repr=False)
    """Per step (only with ``record_series``)."""

    @property
    def oracle_ratio(self) -> float:
        return self.capacity_unit_hours / max(self.oracle_unit_hours, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tier": self.name,
            "dimension": self.dimension,
            "capacity_unit_hours": round(self.capacity_unit_hours, 3),
            "oracle_capacity_unit_hours": round(self.oracle_unit_hours, 3),
            "oracle_ratio": round(self.oracle_ratio, 4),
            "throttled_minutes": round(self.throttled_minutes, 3),
            "throttled_request_units": round(self.throttled_units, 3),
            "request_units": round(self.request_units, 3),
            "peak_capacity": self.peak,
            "increases": self.increases,
            "decreases": self.lowerings,
            "cost": round(self.cost, 4),
            "on_demand_cost": round(self.on_demand_cost, 4),
            "trough_oracle_ratio_max": round(max(self.trough_ratios, default=0.0), 4),
            "trough_oracle_ratios": {
                datetime.fromtimestamp(d * DAY_SECONDS, UTC).date().isoformat(): round(r, 4)
                for d, r in zip(self.trough_days, self.trough_ratios, strict=True)
            },
        }


@dataclass(frozen=True)
class TableReport:
    policy: str
    table: str
    trace: str
    step_seconds: float
    total_minutes: float
    tiers: tuple[TierStats, ...]
    throttled_minutes: float
    """Minutes in which any dimension throttled."""
    decreases: int
    """UpdateTable calls that lowered capacity (what the budget counts)."""
    decreases_refused: int
    max_decreases_per_day: int
    decreases_per_day: tuple[int, ...]
    """Per UTC day of the run, in order (days without a decrease count 0)."""
    budgeted: bool = True
    """False for the oracle: it ignores the budget."""

    @property
    def capacity_unit_hours(self) -> float:
        return sum(t.capacity_unit_hours for t in self.tiers)

    @property
    def cost(self) -> float:
        return sum(t.cost for t in self.tiers)

    @property
    def on_demand_cost(self) -> float:
        return sum(t.on_demand_cost for t in self.tiers)

    @property
    def trough_max_ratio(self) -> float:
        return max((max(t.trough_ratios, default=0.0) for t in self.tiers), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "table": self.table,
            "trace": self.trace,
            "step_seconds": self.step_seconds,
            "total_minutes": round(self.total_minutes, 3),
            "capacity_unit_hours": round(self.capacity_unit_hours, 3),
            "throttled_minutes": round(self.throttled_minutes, 3),
            "decreases": self.decreases,
            "decreases_refused": self.decreases_refused,
            "max_decreases_per_utc_day": self.max_decreases_per_day,
            "decreases_per_utc_day": list(self.decreases_per_day),
            "budgeted": self.budgeted,
            "cost": round(self.cost, 4),
            "on_demand_cost": round(self.on_demand_cost, 4),
            "trough_oracle_ratio_max": round(self.trough_max_ratio, 4),
            "tiers": [t.to_dict() for t in self.tiers],
        }


def demand_units(demand: Sequence[float], tier: TableTier) -> list[float]:
    """Units per second each step's demand consumes."""
    return [d / tier.capacity_per_unit for d in demand]


def needs(units: Sequence[float], tier: TableTier) -> list[int]:
    lo, hi = tier.spec.min_capacity, tier.spec.max_capacity
    return [min(max(math.ceil(u / tier.target - 1e-9), lo), hi) for u in units]


class _Feed:
    """One dimension's CloudWatch datapoints: consumed (per second) and throttle events
    (the period's Sum), the newest complete period readable after the delay."""

    __slots__ = ("consumed", "delay", "initial", "period", "throttled")

    def __init__(self, step_seconds: float, initial: float) -> None:
        self.period = max(1, round(METRIC_PERIOD_SECONDS / step_seconds))
        self.delay = max(0, round(METRIC_DELAY_SECONDS / step_seconds))
        self.consumed = array("d", [0.0])
        self.throttled = array("d", [0.0])
        self.initial = initial

    def record(self, consumed: float, throttled: float) -> None:
        self.consumed.append(self.consumed[-1] + consumed)
        self.throttled.append(self.throttled[-1] + throttled)

    def read(self, i: int) -> tuple[float, float, int]:
        """(consumed per second, throttle events, the step the period ended) at step i."""
        end = ((i - self.delay) // self.period) * self.period
        start = end - self.period
        if start < 0:
            return self.initial, 0.0, i
        c = (self.consumed[end] - self.consumed[start]) / self.period
        return c, self.throttled[end] - self.throttled[start], end


class _Decide:
    def __init__(self, tier: TableTier, step_seconds: float) -> None:
        unknown = [m.name for m in tier.spec.metrics if m.name not in (CONSUMED, THROTTLES)]
        if unknown:
            raise ValueError(
                f"{tier.name}: the simulator models a table's own metrics ({CONSUMED}, "
                f"{THROTTLES}) only; remove {', '.join(unknown)} to simulate it"
            )
        self.tier = tier
        self.step_seconds = step_seconds
        self.interval = max(1, round(tier.spec.poll_interval_seconds / step_seconds))
        self.history = History()
        self.held = History()
        self.reason = ""

    def desired(
        self, i: int, now: datetime, feed: _Feed, capacity: int, ledger: DecreaseLedger
    ) -> int:
        t = now.timestamp()
        consumed, throttles, end = feed.read(i)
        age = (i - end) * self.step_seconds
        sampled = now - timedelta(seconds=age) if end != i else None
        metrics = {
            CONSUMED: MetricObservation(consumed, sampled),
            THROTTLES: MetricObservation(throttles, sampled),
        }
        budget = DecreaseBudget(ledger.decreases_today(t), ledger.last)
        obs = Observations(capacity, metrics, decreases=budget)
        d = decide(self.tier.spec, obs, self.history, now)
        self.held = d.history_if_held
        self.history = d.history
        self.reason = d.headline
        return d.desired

    def refused(self) -> None:
        self.history = self.held


class _Aas:
    def __init__(self, tier: TableTier, step_seconds: float) -> None:
        spec = tier.spec
        self.ctl = AasTableController(100.0 * tier.target, spec.min_capacity, spec.max_capacity)
        self.interval = max(1, round(60.0 / step_seconds))

    def desired(self, i: int, t: float, feed: _Feed, capacity: int) -> int:
        consumed, _, _ = feed.read(i)
        return self.ctl.observe(t, consumed, capacity)


def _gaps(base: Sequence[float], steps: int) -> list[int]:
    """Prefix counts of the steps inside a gap: a run of at least ``steps`` steps with no
    demand at all (a log's outage, not traffic)."""
    marks = [0] * len(base)
    run = 0
    for i, b in enumerate(base):
        run = run + 1 if b <= 0 else 0
        if run == steps:
            for j in range(i - steps + 1, i + 1):
                marks[j] = 1
        elif run > steps:
            marks[i] = 1
    prefix = [0]
    for m in marks:
        prefix.append(prefix[-1] + m)
    return prefix


def troughs(base: Sequence[float], start: float, step: float) -> list[tuple[int, int, int]]:
    """Per full UTC day of the run: (the UTC day, the first and last steps of its
    least-demand hour). An hour that holds a gap (:data:`GAP_SECONDS` or more without a
    single request: the trace's log was down) is no trough; a day with no hour free of
    gaps has none."""
    n = len(base)
    w = max(1, round(TROUGH_SECONDS / step))
    per_day = round(DAY_SECONDS / step)
    first = 0
    while first < n and (start + first * step) % DAY_SECONDS > 1e-6:
        first += 1
    prefix = [0.0]
    for b in base:
        prefix.append(prefix[-1] + b)
    gaps = _gaps(base, max(1, round(GAP_SECONDS / step)))
    out = []
    d0 = first
    while d0 + per_day <= n:
        best, at = math.inf, -1
        for s in range(d0, d0 + per_day - w + 1):
            total = prefix[s + w] - prefix[s]
            if total < best - 1e-9 and gaps[s + w] == gaps[s]:
                best, at = total, s
        if at >= 0:
            out.append((utc_day(start + d0 * step), at, at + w - 1))
        d0 += per_day
    return out


def run_table(
    tiers: Sequence[TableTier],
    demand: Sequence[float],
    policy: str,
    cfg: TableConfig,
    *,
    table: str = "",
    trace: str = "",
) -> TableReport:
    """Simulate the dimensions ``tiers`` of one table under ``policy`` (deterministic).

    ``demand``: the trace's demand per step (already resampled and scaled).
    """
    if policy not in TABLE_POLICIES:
        raise ValueError(
            f"policy {policy!r} does not apply to a table; choose from {', '.join(TABLE_POLICIES)}"
        )
    step = cfg.step_seconds
    t0 = cfg.start.timestamp()
    n = len(demand)
    units = [demand_units(demand, tier) for tier in tiers]
    need = [needs(u, tier) for u, tier in zip(units, tiers, strict=True)]
    if policy == "oracle":
        plans: list[list[int]] | None = need
    elif policy == "static-peak":
        plans = [[max(nd, default=0)] * n for nd in need]
    else:
        plans = None
    initial = [
        plan[0] if plans is not None else nd[0]
        for plan, nd in zip(plans or need, need, strict=True)
    ]
    dims = [Dimension(c, cfg.burst_seconds) for c in initial]
    feeds = [_Feed(step, u[0] if u else 0.0) for u in units]
    ledger = DecreaseLedger()
    decide_ctl = [_Decide(t, step) for t in tiers] if policy == "default" else []
    aas_ctl = [_Aas(t, step) for t in tiers] if policy == "target-tracking" else []
    k = len(tiers)
    cap_steps = [0.0] * k
    throttled_steps = [0] * k
    throttled_units = [0.0] * k
    any_throttled = 0
    peak = list(initial)
    increases = [0] * k
    lowerings = [0] * k
    series: list[array[int]] = [array("i") for _ in tiers]
    oracle_lowerings: list[float] = []
    for i in range(n):
        now = cfg.start + timedelta(seconds=i * step)
        t = t0 + i * step
        current = [d.provisioned for d in dims]
        if plans is not None:
            want = [p[i] for p in plans]
        elif decide_ctl:
            want = [
                c.desired(i, now, feeds[j], current[j], ledger)
                if i % c.interval == 0
                else current[j]
                for j, c in enumerate(decide_ctl)
            ]
        else:
            want = [
                a.desired(i, t, feeds[j], current[j]) if i % a.interval == 0 else current[j]
                for j, a in enumerate(aas_ctl)
            ]
        lowers = [j for j in range(k) if want[j] < current[j]]
        if policy == "oracle":
            if lowers:
                oracle_lowerings.append(t)
            made = set(lowers)
        elif policy == "target-tracking":  # separate scalable targets: one call each
            made = {j for j in lowers if ledger.request(t)}
        elif lowers:  # one UpdateTable for the tick's changes: one decrease
            made = set(lowers) if ledger.request(t) else set()
        else:
            made = set()
        for j in range(k):
            if want[j] > current[j] or j in made:
                if want[j] > current[j]:
                    increases[j] += 1
                else:
                    lowerings[j] += 1
                dims[j].resize(want[j])
                peak[j] = max(peak[j], want[j])
                if aas_ctl:
                    aas_ctl[j].ctl.applied(t, current[j], want[j])
            elif j in lowers and decide_ctl:
                decide_ctl[j].refused()
        throttled_now = False
        for j in range(k):
            served = dims[j].serve(units[j][i], step)
            feeds[j].record(served.consumed, served.throttled_units)
            cap_steps[j] += dims[j].provisioned
            if served.throttled_units > 1e-9:
                throttled_steps[j] += 1
                throttled_units[j] += served.throttled_units
                throttled_now = True
            series[j].append(dims[j].provisioned)
        any_throttled += throttled_now
    hours = step / 3600.0
    days_troughs = troughs(units[0] if units else [], t0, step)
    stats = []
    for j, tier in enumerate(tiers):
        request_units = sum(units[j]) * step
        ratios = tuple(series[j][b] / max(*need[j][a : b + 1], 1) for _, a, b in days_troughs)
        stats.append(
            TierStats(
                name=tier.name,
                dimension=tier.dimension,
                capacity_unit_hours=cap_steps[j] * hours,
                oracle_unit_hours=sum(need[j]) * hours,
                throttled_minutes=throttled_steps[j] * step / 60.0,
                throttled_units=throttled_units[j],
                request_units=request_units,
                peak=peak[j],
                increases=increases[j],
                lowerings=lowerings[j],
                cost=cap_steps[j] * hours * unit_hour_price(tier.dimension),
                on_demand_cost=on_demand_price(tier.dimension, request_units),
                trough_ratios=ratios,
                trough_days=tuple(d for d, _, _ in days_troughs),
                capacity=tuple(series[j]) if cfg.record_series else (),
            )
        )
    times = oracle_lowerings if policy == "oracle" else ledger.times
    days = utc_day(t0), utc_day(t0 + max(n - 1, 0) * step)
    counts = [0] * (days[1] - days[0] + 1)
    for x in times:
        counts[utc_day(x) - days[0]] += 1
    return TableReport(
        policy=policy,
        table=table,
        trace=trace,
        step_seconds=step,
        total_minutes=n * step / 60.0,
        tiers=tuple(stats),
        throttled_minutes=any_throttled * step / 60.0,
        decreases=len(times),
        decreases_refused=ledger.refused,
        max_decreases_per_day=max(counts, default=0),
        decreases_per_day=tuple(counts),
        budgeted=policy != "oracle",
    )
