"""``stackscaler simulate --stack``: several tiers of one file under one trace, in lockstep.

The trace drives the **front** tier. Each **coupled** tier's load is a ratio of the
front tier's demand (reads per web request, jobs per request), later by its own lag::

    load_j(t) = ratio_j x demand_front(t - lag_j)      (before the trace: its first step)

The load arrives whether or not the front tier serves it. Each tier has its own
capacity model (units per step at 100%, warm-up: an Auto Scaling group 180 s, an RDS
replica 600 s; :mod:`stackscaler.sim.model`) and its own metrics, computed from its own
load and its own ready units exactly as in a single-tier run (replica CPU is its load
over its ready replicas).

A **tier source** (``spec.metrics[].tier``) reads the tier it follows as the operator
reads it: what that tier's last decision recorded in its status, at that moment, and
nothing later (no peeking):

- ``Metric``: one of its metrics as it observed it, with the sample's own time (so the
  followed tier's metric lag is carried over, and the follower's ``staleAfterSeconds``
  applies to the original sample); unknown when it was unknown there;
- ``Demand``: its decision's recommendation, the capacity its metrics asked for before
  stabilization, cooldowns, rate limits and bounds (unknown while one of its metrics is);
- ``DesiredCapacity``: the capacity it decided (its forecast's floor included);
- ``ReadyCapacity``: its units that serve, current minus starting, as it counted them.

At every step the tiers decide in dependency order (a followed tier before its
followers), so a follower reads at most the decision its followed tier made at the
same moment. Before the followed tier's first decision the value is unknown.

Policies (:data:`STACK_POLICIES`), applied to every tier: ``default`` (the operator:
``policy.decide`` with the tier sources and each tier's ``spec.predictive``),
``reactive`` (the same without any forecast), ``alone`` (the same with the tier
sources left out: every tier on its own metrics, as before tier sources), and the
baselines, which cannot read another tier (``hpa``, ``target-tracking`` on each tier's
own metrics; ``static-peak`` and ``oracle`` per tier, from its own load).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from stackscaler.model.spec import Resource, TierSource, TierValue
from stackscaler.model.tiers import TierRef, cycle_through, describe_cycle
from stackscaler.policy import MetricObservation
from stackscaler.policy.types import MetricState
from stackscaler.sim.model import follows, own_metrics
from stackscaler.sim.policies import POLICIES, DecideController, MetricRead
from stackscaler.sim.run import (
    Prepared,
    Report,
    RunConfig,
    TierRun,
    controller,
    prepare_demand,
    resample,
)
from stackscaler.sim.trace import Trace

STACK_POLICIES = ("default", "alone", *POLICIES[1:])
"""The policies of a stack run (``reactive`` too when a tier forecasts)."""
ALONE = "alone"
REACTIVE = "reactive"


@dataclass(frozen=True)
class Coupling:
    """A coupled tier's load: ``ratio`` x the front tier's demand, ``lag_seconds`` later."""

    tier: str
    """The coupled resource's name."""
    ratio: float
    lag_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ratio) and self.ratio > 0):
            raise ValueError(f"{self.tier}: the coupling ratio must be > 0, got {self.ratio:g}")
        if not (math.isfinite(self.lag_seconds) and self.lag_seconds >= 0):
            raise ValueError(f"{self.tier}: the coupling lag must be >= 0 s")

    def describe(self, front: str) -> str:
        lag = f", {self.lag_seconds:g} s later" if self.lag_seconds else ""
        return f"{self.ratio:g} x the demand of {front}{lag}"


@dataclass(frozen=True)
class StackTier:
    """One tier of a stack: its resource, its capacity model, and how its load comes."""

    resource: Resource
    cfg: RunConfig
    coupling: Coupling | None = None
    """None: the front tier, which the trace drives."""

    @property
    def ref(self) -> tuple[str, str, str]:
        """(namespace, kind, name): what a tier source of its namespace names."""
        r = self.resource
        return (r.namespace or "default", r.kind, r.name)

    @property
    def forecasts(self) -> bool:
        """Whether the default policy forecasts on this tier (spec or override)."""
        return self.cfg.predictive is not None or self.resource.scaling.predictive is not None

    @property
    def has_tier_sources(self) -> bool:
        return any(follows(m) for m in self.resource.scaling.metrics)


# --- the stack's shape ------------------------------------------------------------------


def _followed(tiers: Sequence[StackTier], k: int) -> list[tuple[str, TierSource, int]]:
    """(metric, source, index of the tier it reads) of every tier source of tier ``k``."""
    t = tiers[k]
    ns = t.ref[0]
    index = {tier.ref: j for j, tier in enumerate(tiers)}
    out = []
    for m in t.resource.scaling.metrics:
        src = m.source
        if not isinstance(src, TierSource):
            continue
        j = index.get((ns, src.kind, src.name))
        if j is None:
            raise ValueError(
                f"{t.resource.key}: metric {m.name!r} follows {src.kind} {src.name}, which is "
                "not in the stack: make it the front tier or couple it to the front"
            )
        if src.value is TierValue.METRIC:
            names = [x.name for x in tiers[j].resource.scaling.metrics]
            if src.metric not in names:
                raise ValueError(
                    f"{t.resource.key}: metric {m.name!r} follows {src}, which {src.kind} "
                    f"{src.name} does not have (its metrics: {', '.join(names)})"
                )
        out.append((m.name, src, j))
    return out


def check(tiers: Sequence[StackTier]) -> list[int]:
    """Validate a stack and return its tiers' decision order (followed tiers first).

    One front tier, first; coupled tiers named once; every tier on the same steps and
    start; every tier source reads a tier of the stack in its own namespace; no cycle.
    """
    if not tiers or tiers[0].coupling is not None:
        raise ValueError("a stack starts with its front tier (no coupling)")
    if any(t.coupling is None for t in tiers[1:]):
        raise ValueError("a stack has one front tier; every other tier needs a coupling")
    refs = [t.ref for t in tiers]
    if len(set(refs)) != len(refs):
        raise ValueError("a tier is in the stack twice")
    first = tiers[0].cfg
    for t in tiers[1:]:
        if t.cfg.step_seconds != first.step_seconds or t.cfg.start != first.start:
            raise ValueError("the tiers of a stack share their steps and start")
    deps = [{j for _, _, j in _followed(tiers, k)} for k in range(len(tiers))]
    order: list[int] = []
    placed: set[int] = set()
    while len(order) < len(tiers):
        ready = [k for k in range(len(tiers)) if k not in placed and deps[k] <= placed]
        if not ready:
            raise ValueError(_cycle(tiers, deps, placed))
        order.extend(ready)
        placed.update(ready)
    return order


def _cycle(tiers: Sequence[StackTier], deps: Sequence[set[int]], placed: set[int]) -> str:
    """The message for the tiers left unplaced: the shortest cycle through one of them."""
    refs = [TierRef(t.resource.kind, t.resource.name) for t in tiers]
    if len(set(refs)) < len(refs):  # the same kind and name in two namespaces
        refs = [TierRef(t.resource.kind, t.resource.key) for t in tiers]
    index = {r: k for k, r in enumerate(refs)}

    def follows_of(ref: TierRef) -> list[TierRef]:
        return [refs[j] for j in deps[index[ref]]]

    for k in range(len(tiers)):
        if k not in placed:
            path = cycle_through(refs[k], follows_of)
            if path is not None:
                return describe_cycle(path)
    raise AssertionError("unplaced tiers without a cycle")  # pragma: no cover


def demands(tiers: Sequence[StackTier], trace: Trace) -> list[tuple[float, ...]]:
    """Each tier's load per step: the front's the trace's (scaled), a coupled tier's the
    ratio of the front's, its lag later (the front's first step before the trace)."""
    cfg = tiers[0].cfg
    front = resample(trace, cfg.step_seconds, cfg.scale)
    out = [tuple(front)]
    for t in tiers[1:]:
        c = t.coupling
        assert c is not None
        lag = round(c.lag_seconds / cfg.step_seconds)
        out.append(tuple(c.ratio * front[max(0, i - lag)] for i in range(len(front))))
    return out


def coupled_trace_name(trace: Trace, tier: StackTier) -> str:
    c = tier.coupling
    if c is None:
        return trace.name
    lag = f" +{c.lag_seconds:g}s" if c.lag_seconds else ""
    return f"{trace.name} x{c.ratio:g}{lag}"


# --- tier sources ---------------------------------------------------------------------


class TierRead:
    """A tier source, read from the followed tier's last decision (its status)."""

    __slots__ = ("followed", "label", "source")

    def __init__(self, source: TierSource, followed: DecideController, label: str) -> None:
        self.source = source
        self.followed = followed
        self.label = label

    def observe(self, now: datetime) -> MetricObservation:
        ctl = self.followed
        d, at = ctl.last, ctl.last_time
        if d is None or at is None:
            return MetricObservation.unknown(f"{self.label}: no decision recorded yet")
        value = self.source.value
        if value is TierValue.METRIC:
            name = self.source.metric
            result = next((r for r in d.metrics if r.name == name), None)
            if result is None:
                return MetricObservation.unknown(f"{self.label}: it has no metric {name!r}")
            if result.state is not MetricState.KNOWN or result.value is None:
                return MetricObservation.unknown(f"{self.label}: {result.state} there")
            sample = ctl.last_metrics.get(result.name)
            when = at if sample is None or sample.timestamp is None else sample.timestamp
            return MetricObservation(result.value, when)
        if value is TierValue.DEMAND:
            if not d.metrics_available or not d.metrics:
                return MetricObservation.unknown(f"{self.label}: its demand is unknown")
            return MetricObservation(float(d.recommendation), at)
        if value is TierValue.DESIRED_CAPACITY:
            return MetricObservation(float(d.desired), at)
        return MetricObservation(float(d.ready), at)


# --- the run ----------------------------------------------------------------------------


def without_tier_sources(resource: Resource) -> Resource:
    """The resource on its own metrics (policy ``alone``)."""
    own = own_metrics(resource.scaling)
    if not own:
        raise ValueError(
            f"{resource.key}: policy 'alone' leaves out its tier sources, and it has no "
            "metric of its own"
        )
    return replace(resource, scaling=replace(resource.scaling, metrics=own))


def _runs(
    tiers: Sequence[StackTier],
    preps: Sequence[Prepared],
    policy: str,
    order: Sequence[int],
    row_seconds: float,
) -> list[TierRun]:
    runs: dict[int, TierRun] = {}
    for k in order:
        t, prep = tiers[k], preps[k]
        resource, cfg, name = t.resource, t.cfg, policy
        reads: dict[str, MetricRead] = {}
        if policy == ALONE:
            resource, name = without_tier_sources(resource), "default"
        elif policy in ("default", REACTIVE):
            if policy == REACTIVE:
                name = REACTIVE if t.forecasts else "default"
            for metric, src, j in _followed(tiers, k):
                ctl = runs[j].ctl
                assert isinstance(ctl, DecideController)
                reads[metric] = TierRead(src, ctl, f"{src.kind} {src.name}")
        ctl = controller(name, resource, prep, cfg, reads=reads)
        runs[k] = TierRun(t.resource, policy, cfg, prep, row_seconds, ctl=ctl)
    return [runs[k] for k in range(len(tiers))]


def run_stack(
    tiers: Sequence[StackTier],
    trace: Trace,
    policy: str,
    prepared: Sequence[Prepared] | None = None,
) -> tuple[Report, ...]:
    """Simulate the stack under one policy; one report per tier, in the stack's order."""
    order = check(tiers)
    if policy not in (*STACK_POLICIES, REACTIVE):
        raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(STACK_POLICIES)}")
    if prepared is None:
        prepared = [
            prepare_demand(t.resource, d, t.cfg)
            for t, d in zip(tiers, demands(tiers, trace), strict=True)
        ]
    runs = _runs(tiers, prepared, policy, order, trace.step_seconds)
    n = len(prepared[0].demand)
    ordered = [(runs[k], prepared[k].demand) for k in order]
    for i in range(n):
        for tier, demand in ordered:
            tier.step(i, demand[i])
    return tuple(r.report(coupled_trace_name(trace, t)) for r, t in zip(runs, tiers, strict=True))


def compare_stack(
    tiers: Sequence[StackTier], trace: Trace, policies: Sequence[str]
) -> list[tuple[Report, ...]]:
    """Every policy over the same stack: per policy, one report per tier."""
    check(tiers)
    preps = [
        prepare_demand(t.resource, d, t.cfg)
        for t, d in zip(tiers, demands(tiers, trace), strict=True)
    ]
    return [run_stack(tiers, trace, p, preps) for p in policies]
