"""``run(...)``: one tier, one trace, one policy through the capacity model -> a Report."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from stackscaler.forecast import PredictiveSettings
from stackscaler.model.spec import Resource, ScalingSpec
from stackscaler.model.spec import warmup as operator_warmup
from stackscaler.policy.rules import effective_bounds
from stackscaler.sim.hpa import HpaController
from stackscaler.sim.model import (
    Pool,
    Signals,
    default_warmup,
    feed_spec,
    own_metrics,
    target_utilization,
    units_needed,
    utilization,
)
from stackscaler.sim.policies import (
    POLICIES,
    Controller,
    DecideController,
    MetricRead,
    PlanController,
    oracle_plan,
)
from stackscaler.sim.predictive import PredictiveSummary, SimForecaster
from stackscaler.sim.target_tracking import TargetTrackingController
from stackscaler.sim.trace import Trace

DEFAULT_PRICE = 0.096
"""m5.large on-demand, us-east-1, USD per hour."""
REVERSAL_SECONDS = 600.0


@dataclass(frozen=True)
class RunConfig:
    step_seconds: float = 60.0
    scale: float = 1.0
    capacity_per_unit: float = 1.0
    warmup_seconds: float | None = None
    """Seconds until a new unit serves; None: the default for the tier's target kind."""
    starting_seconds: float | None = None
    """How long the default policy is told a new unit is starting (the operator's
    ``warmupSeconds``); None: the tier's ``warmupSeconds`` when it sets one, else
    until the unit serves."""
    price_per_unit_hour: float = DEFAULT_PRICE
    start: datetime = datetime(1995, 7, 1, 4, 0, tzinfo=UTC)
    record_series: bool = False
    predictive: PredictiveSettings | None = None
    """The default policy forecasts with these instead of the resource's own
    ``spec.predictive`` (``stackscaler simulate --predictive ...``: the spec with the
    flags' overrides); None: the spec's (none without one). With a forecast, the
    ``reactive`` policy is the default without it."""

    def __post_init__(self) -> None:
        if not 1.0 <= self.step_seconds <= 60.0:
            raise ValueError(f"step must be within 1-60 s, got {self.step_seconds:g}")
        if not (self.capacity_per_unit > 0 and math.isfinite(self.capacity_per_unit)):
            raise ValueError("capacity per unit must be > 0")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError("scale must be > 0")
        for w in (self.warmup_seconds, self.starting_seconds):
            if w is not None and not (0 <= w < math.inf):
                raise ValueError("warm-up must be >= 0 seconds")


@dataclass(frozen=True)
class Series:
    """Per-step values for plots (only when ``record_series``)."""

    minutes: tuple[float, ...] = ()
    demand_units: tuple[float, ...] = ()
    """Demand in units at 100% utilization."""
    ready: tuple[int, ...] = ()
    desired: tuple[int, ...] = ()
    forecast_units: tuple[float, ...] = ()
    """The forecast of the demand at each step, in units at 100% (NaN: none; empty
    without a forecast)."""
    floor: tuple[float, ...] = ()
    """The forecast's capacity floor at each step (NaN: none)."""


@dataclass(frozen=True)
class Report:
    policy: str
    tier: str
    trace: str
    step_seconds: float
    warmup_seconds: float
    capacity_per_unit: float
    target_utilization: float
    total_minutes: float
    capacity_unit_hours: float
    demand_unit_hours: float
    oracle_capacity_unit_hours: float
    over_provisioning: float
    under_provisioned_minutes: float
    worst_deficit_units: int
    p95_utilization: float
    peak_capacity: int
    scale_actions: int
    reversals: int
    max_backlog: float | None
    price_per_unit_hour: float
    cost: float
    series: Series = field(default=Series(), compare=False)
    predictive: PredictiveSummary | None = None
    """What the forecast did (the default policy with predictive settings)."""

    @property
    def oracle_ratio(self) -> float:
        return self.capacity_unit_hours / max(self.oracle_capacity_unit_hours, 1e-9)

    @property
    def under_provisioned_fraction(self) -> float:
        return self.under_provisioned_minutes / max(self.total_minutes, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "tier": self.tier,
            "trace": self.trace,
            "step_seconds": self.step_seconds,
            "warmup_seconds": self.warmup_seconds,
            "capacity_per_unit": self.capacity_per_unit,
            "target_utilization": round(self.target_utilization, 6),
            "total_minutes": round(self.total_minutes, 3),
            "capacity_unit_hours": round(self.capacity_unit_hours, 3),
            "demand_unit_hours": round(self.demand_unit_hours, 3),
            "oracle_capacity_unit_hours": round(self.oracle_capacity_unit_hours, 3),
            "oracle_ratio": round(self.oracle_ratio, 4),
            "over_provisioning": round(self.over_provisioning, 4),
            "under_provisioned_minutes": round(self.under_provisioned_minutes, 3),
            "under_provisioned_percent": round(100 * self.under_provisioned_fraction, 4),
            "worst_deficit_units": self.worst_deficit_units,
            "p95_utilization": round(self.p95_utilization, 4),
            "peak_capacity": self.peak_capacity,
            "scale_actions": self.scale_actions,
            "reversals": self.reversals,
            "max_backlog": None if self.max_backlog is None else round(self.max_backlog, 3),
            "price_per_unit_hour": self.price_per_unit_hour,
            "cost": round(self.cost, 2),
            **({} if self.predictive is None else {"predictive": self.predictive.to_dict()}),
        }


def resample(trace: Trace, step_seconds: float, scale: float) -> list[float]:
    """Demand per trace-row interval at each step (rows repeat or average)."""
    rows, row_s = trace.demand, trace.step_seconds
    n = max(1, int(trace.duration_seconds // step_seconds))
    if math.isclose(step_seconds, row_s):
        return [d * scale for d in rows]
    out = []
    for i in range(n):
        a, b = i * step_seconds, (i + 1) * step_seconds
        ra, rb = int(a // row_s), max(int(a // row_s) + 1, math.ceil(b / row_s - 1e-9))
        chunk = rows[ra:rb]
        out.append(scale * sum(chunk) / len(chunk))
    return out


def schedule_changes(spec: ScalingSpec, start: datetime, end: datetime) -> list[datetime]:
    """Every instant within (start, end] at which a schedule window opens or closes."""
    points: list[datetime] = []
    minute = timedelta(minutes=1)
    for sched in spec.schedules:
        duration = timedelta(seconds=sched.duration_seconds)
        t = start - duration - minute
        while t <= end:
            fire = sched.cron.next_fire_after(t, sched.time_zone, end - t + minute)
            if fire is None:
                break
            points += [fire, fire + duration]
            t = fire
    return sorted(p for p in points if start < p <= end)


def _needs(resource: Resource, demand: Sequence[float], cfg: RunConfig, target: float) -> list[int]:
    spec = resource.scaling
    lo, hi = spec.min_capacity, spec.max_capacity
    need = [min(max(units_needed(d, cfg.capacity_per_unit, target), lo), hi) for d in demand]
    if spec.schedules:  # schedule floors are the user's promise too
        # the bounds change only when a window opens or closes: evaluate them there
        end = cfg.start + timedelta(seconds=len(need) * cfg.step_seconds)
        changes = deque(schedule_changes(spec, cfg.start, end))
        s_lo, s_hi, active = effective_bounds(spec, cfg.start)
        for i in range(len(need)):
            now = cfg.start + timedelta(seconds=i * cfg.step_seconds)
            if changes and changes[0] <= now:
                while changes and changes[0] <= now:
                    changes.popleft()
                s_lo, s_hi, active = effective_bounds(spec, now)
            if active:
                need[i] = min(max(need[i], s_lo), s_hi)
    return need


@dataclass(frozen=True)
class Prepared:
    """What every policy of one comparison shares: demand per step, needs, oracle plan."""

    demand: tuple[float, ...]
    need: tuple[int, ...]
    oracle: tuple[int, ...]
    target: float
    warmup: float


def prepare(resource: Resource, trace: Trace, cfg: RunConfig) -> Prepared:
    return prepare_demand(resource, resample(trace, cfg.step_seconds, cfg.scale), cfg)


def prepare_demand(resource: Resource, demand: Sequence[float], cfg: RunConfig) -> Prepared:
    """:func:`prepare` for a demand already per step (a coupled tier's, ``--stack``)."""
    target = target_utilization(resource.scaling, cfg.capacity_per_unit)
    warmup = default_warmup(resource) if cfg.warmup_seconds is None else cfg.warmup_seconds
    need = _needs(resource, demand, cfg, target)
    plan = oracle_plan(need, round(warmup / cfg.step_seconds))
    return Prepared(tuple(demand), tuple(need), tuple(plan), target, warmup)


def spec_settings(resource: Resource) -> PredictiveSettings | None:
    """The resource's ``spec.predictive`` as the forecast's settings (None: it has none)."""
    p = resource.scaling.predictive
    return None if p is None else PredictiveSettings.from_spec(p)


def predictive_settings(resource: Resource, cfg: RunConfig) -> PredictiveSettings | None:
    """The forecast the default policy runs on ``resource``: ``cfg.predictive`` (the
    overrides of ``stackscaler simulate --predictive ...``) when set, else the resource's
    ``spec.predictive``; None: no forecast."""
    return cfg.predictive if cfg.predictive is not None else spec_settings(resource)


def forecaster(resource: Resource, cfg: RunConfig) -> SimForecaster | None:
    """The default policy's forecast (None: none, :func:`predictive_settings`). The lead
    defaults to the operator's warm-up of the tier (the time a new unit needs to count)."""
    settings = predictive_settings(resource, cfg)
    if settings is None:
        return None
    lead = settings.lead_seconds
    if lead is None:
        lead = operator_warmup(resource).seconds
    return SimForecaster(
        settings,
        resource.scaling,
        step_seconds=cfg.step_seconds,
        lead_seconds=float(lead),
        capacity_per_unit=cfg.capacity_per_unit,
    )


def controller(
    name: str,
    resource: Resource,
    prep: Prepared,
    cfg: RunConfig,
    *,
    reads: Mapping[str, MetricRead] | None = None,
) -> Controller:
    """The controller of policy ``name`` for one tier.

    ``reads``: the tier sources of the tier, read from the other tiers of a stack
    (:mod:`stackscaler.sim.stack`); None outside a stack, where a tier source cannot be
    simulated. The HPA and AWS target tracking cannot read another tier: in a stack
    they run on the tier's own metrics.
    """
    spec = resource.scaling
    if name == "static-peak":
        return PlanController(name, [max(prep.need, default=0)] * len(prep.need))
    if name == "oracle":
        return PlanController(name, prep.oracle)
    if name not in ("default", "reactive", "hpa", "target-tracking"):
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")
    own = spec.metrics if reads is None else own_metrics(spec)
    feeds = [feed_spec(m, cfg.step_seconds) for m in own]
    if name in ("default", "reactive"):
        if name == "reactive" and predictive_settings(resource, cfg) is None:
            raise ValueError(
                f"policy 'reactive' (default without the forecast): {resource.key} has no "
                "spec.predictive (or --predictive)"
            )
        starting = cfg.starting_seconds
        if starting is None:  # what the operator's actuators count as starting
            starting = float(operator_warmup(resource).seconds)
        return DecideController(
            name,
            spec,
            feeds,
            cfg.step_seconds,
            float(spec.poll_interval_seconds),
            starting_seconds=starting,
            forecaster=forecaster(resource, cfg) if name == "default" else None,
            reads=reads,
        )
    if not own:
        raise ValueError(
            f"{resource.key}: policy {name!r} cannot read another tier and the tier has no "
            "metric of its own"
        )
    spec = replace(spec, metrics=own)
    if name == "hpa":
        return HpaController(spec, feeds, cfg.step_seconds)
    app = resource.target.kind != "AutoScalingGroup"
    return TargetTrackingController(spec, feeds, cfg.step_seconds, app_autoscaling=app)


class TierRun:
    """One tier's replay, one step at a time: its pool, its controller, the metrics it
    produces and the tallies of its report. :func:`run` drives one over a trace;
    :mod:`stackscaler.sim.stack` drives several in lockstep."""

    def __init__(
        self,
        resource: Resource,
        policy: str,
        cfg: RunConfig,
        prep: Prepared,
        row_seconds: float,
        *,
        ctl: Controller | None = None,
    ) -> None:
        self.resource = resource
        self.policy = policy
        self.cfg = cfg
        self.prep = prep
        self.ctl = ctl if ctl is not None else controller(policy, resource, prep, cfg)
        self.row_fraction = cfg.step_seconds / row_seconds
        """Of a row's demand arriving in one step."""
        self.is_queue = resource.queue is not None
        initial = prep.oracle[0] if policy in ("oracle", "static-peak") else prep.need[0]
        if policy == "static-peak":
            initial = max(prep.need, default=0)
        self.pool = Pool(initial, prep.warmup)
        self.backlog = 0.0
        demand0 = prep.demand[0] if prep.demand else 0.0
        cpu = cfg.capacity_per_unit
        self.signals = Signals(utilization(demand0, initial, cpu), demand0, 0.0, initial)
        self.capacity = initial
        self.peak = initial
        self.unit_steps = 0.0
        self.demand_units = 0.0
        self.under_steps = 0
        self.worst = 0
        self.max_backlog = 0.0
        self.utils: list[float] = []
        self.actions: list[tuple[float, int]] = []
        self.reversals = 0
        self.s_ready: list[int] = []
        self.s_desired: list[int] = []
        self.s_forecast: list[float] = []
        self.s_floor: list[float] = []
        self.forecaster = self.ctl.forecaster if isinstance(self.ctl, DecideController) else None

    def decide(self, i: int) -> None:
        """The controller's decision at step ``i`` (on its interval), applied to the pool."""
        t = i * self.cfg.step_seconds
        self.pool.advance(t)
        if i % self.ctl.interval_steps:
            return
        now = self.cfg.start + timedelta(seconds=t)
        desired = self.ctl.desired(i, now, self.pool, self.signals)
        if desired == self.capacity:
            return
        direction = 1 if desired > self.capacity else -1
        actions = self.actions
        if actions and actions[-1][1] != direction and t - actions[-1][0] <= REVERSAL_SECONDS:
            self.reversals += 1
        actions.append((t, direction))
        self.pool.resize(t, desired)
        self.capacity = desired
        self.peak = max(self.peak, desired)

    def serve(self, d: float) -> None:
        """Step ``i``'s demand ``d`` served by the units ready (after :meth:`decide`)."""
        cpu = self.cfg.capacity_per_unit
        ready = self.pool.ready
        util = utilization(d, ready, cpu)
        if self.is_queue:
            self.backlog = max(0.0, self.backlog + (d - ready * cpu) * self.row_fraction)
            self.max_backlog = max(self.max_backlog, self.backlog)
        self.signals.record(util, d, self.backlog, ready)
        self.utils.append(util)
        self.unit_steps += self.capacity
        self.demand_units += d / cpu
        if util > 1.0 + 1e-12:
            self.under_steps += 1
            self.worst = max(self.worst, math.ceil(d / cpu - 1e-9) - ready)
        if self.cfg.record_series:
            self.s_ready.append(ready)
            self.s_desired.append(self.capacity)
            fc = self.forecaster
            if fc is not None:
                self.s_forecast.append(fc.forecast_units)
                self.s_floor.append(math.nan if fc.floor is None else float(fc.floor))

    def step(self, i: int, d: float) -> None:
        self.decide(i)
        self.serve(d)

    def report(self, trace_name: str) -> Report:
        prep, cfg = self.prep, self.cfg
        step, cpu = cfg.step_seconds, cfg.capacity_per_unit
        n = len(self.utils)
        hours = step / 3600.0
        cap_h = self.unit_steps * hours
        dem_h = self.demand_units * hours
        oracle_h = sum(prep.oracle[:n]) * hours
        utils = sorted(self.utils)
        p95 = utils[min(n - 1, math.ceil(0.95 * n) - 1)] if utils else 0.0
        series = Series()
        if cfg.record_series:
            series = Series(
                minutes=tuple(i * step / 60 for i in range(n)),
                demand_units=tuple(d / cpu for d in prep.demand[:n]),
                ready=tuple(self.s_ready),
                desired=tuple(self.s_desired),
                forecast_units=tuple(self.s_forecast),
                floor=tuple(self.s_floor),
            )
        fc = self.forecaster
        return Report(
            policy=self.policy,
            tier=self.resource.key,
            trace=trace_name,
            step_seconds=step,
            warmup_seconds=prep.warmup,
            capacity_per_unit=cpu,
            target_utilization=prep.target,
            total_minutes=n * step / 60,
            capacity_unit_hours=cap_h,
            demand_unit_hours=dem_h,
            oracle_capacity_unit_hours=oracle_h,
            over_provisioning=(cap_h - dem_h) / dem_h if dem_h > 0 else math.inf,
            under_provisioned_minutes=self.under_steps * step / 60,
            worst_deficit_units=self.worst,
            p95_utilization=p95,
            peak_capacity=self.peak,
            scale_actions=len(self.actions),
            reversals=self.reversals,
            max_backlog=self.max_backlog if self.is_queue else None,
            price_per_unit_hour=cfg.price_per_unit_hour,
            cost=cap_h * cfg.price_per_unit_hour,
            series=series,
            predictive=None if fc is None else fc.summary(),
        )


def run(
    resource: Resource,
    trace: Trace,
    policy: str,
    cfg: RunConfig,
    prepared: Prepared | None = None,
) -> Report:
    """Simulate one tier under one policy; deterministic."""
    prep = prepared or prepare(resource, trace, cfg)
    tier = TierRun(resource, policy, cfg, prep, trace.step_seconds)
    for i, d in enumerate(prep.demand):
        tier.step(i, d)
    return tier.report(trace.name)


def compare(
    resource: Resource, trace: Trace, policies: Sequence[str], cfg: RunConfig
) -> list[Report]:
    prep = prepare(resource, trace, cfg)
    return [run(resource, trace, p, cfg, prep) for p in policies]
