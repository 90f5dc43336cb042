"""Target sweeps and iso-quality comparisons.

A policy that runs past its target looks cheap and one that keeps headroom
looks expensive, so one setting per policy misleads. A sweep runs each
policy at several targets (the same utilization for every target-tracking
metric of the tier) and keeps every point (capacity-unit-hours,
under-provisioned minutes). An iso-quality comparison then asks, for each
policy: what is the cheapest setting that under-provisions no more than a
reference?

The oracle stays the one of the tier's own target, so every point's
``x oracle`` is against the same lower bound.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from stackscaler.model.crds import BACKLOG_METRIC
from stackscaler.model.spec import Resource, TargetType
from stackscaler.sim.run import Prepared, Report, RunConfig, prepare, run
from stackscaler.sim.trace import Trace

UNDER_EPSILON = 1e-6
"""Minutes: two runs within this many under-provisioned minutes are equally safe."""


def retarget(resource: Resource, utilization: float, capacity_per_unit: float) -> Resource:
    """The same tier with every target-tracking target at ``utilization`` (0-1].

    A ``Value`` target (a per-unit utilization such as CPU) becomes
    100 x utilization; an ``AverageValue`` target (a total per unit) becomes
    utilization x ``capacity_per_unit``. Queue backlog targets and step
    scaling are left as they are.
    """
    if not 0 < utilization <= 1:
        raise ValueError(f"utilization must be within (0, 1], got {utilization:g}")
    metrics = []
    for m in resource.scaling.metrics:
        if m.target is None or m.name == BACKLOG_METRIC:
            metrics.append(m)
            continue
        if m.target.type is TargetType.VALUE:
            value = 100.0 * utilization
        else:
            value = utilization * capacity_per_unit
        metrics.append(replace(m, target=replace(m.target, value=value)))
    return replace(resource, scaling=replace(resource.scaling, metrics=tuple(metrics)))


@dataclass(frozen=True)
class Point:
    """One run of a sweep: a policy at one target."""

    policy: str
    target: float
    """The utilization every target-tracking target was set to (0-1)."""
    report: Report
    own: bool = False
    """The tier's own setting (for ``default``: the policy as the user configured it)."""

    @property
    def unit_hours(self) -> float:
        return self.report.capacity_unit_hours

    @property
    def under_minutes(self) -> float:
        return self.report.under_provisioned_minutes

    @property
    def label(self) -> str:
        return f"{self.policy}@{100 * self.target:.0f}%"


def cheapest(points: Iterable[Point], policy: str, max_under: float) -> Point | None:
    """The policy's cheapest point with at most ``max_under`` under-provisioned minutes.

    Ties on unit-hours go to the safer point, then to the higher target. None
    when no setting of the policy is that safe.
    """
    ok = [p for p in points if p.policy == policy and p.under_minutes <= max_under + UNDER_EPSILON]
    if not ok:
        return None
    return min(ok, key=lambda p: (p.unit_hours, p.under_minutes, -p.target))


def frontier(points: Iterable[Point], policy: str) -> list[Point]:
    """The policy's Pareto frontier: no other setting is both cheaper and safer.

    Sorted by unit-hours (ascending); under-provisioned minutes then strictly
    decrease along it.
    """
    mine = sorted(
        (p for p in points if p.policy == policy),
        key=lambda p: (p.unit_hours, p.under_minutes),
    )
    out: list[Point] = []
    for p in mine:
        if not out or p.under_minutes < out[-1].under_minutes - UNDER_EPSILON:
            out.append(p)
    return out


@dataclass(frozen=True)
class IsoQuality:
    """At one under-provisioning budget, each policy's cheapest setting (None: none as safe)."""

    budget_minutes: float
    best: dict[str, Point | None]

    def winner(self) -> str | None:
        """The policy with the fewest unit-hours within the budget (None: none fits)."""
        fits = [(p.unit_hours, name) for name, p in self.best.items() if p is not None]
        return min(fits)[1] if fits else None


def iso_quality(points: Sequence[Point], policies: Sequence[str], budget: float) -> IsoQuality:
    return IsoQuality(budget, {name: cheapest(points, name, budget) for name in policies})


def beats(ours: Point, theirs: Point | None) -> bool:
    """``ours`` wins at iso-quality against the other policy's cheapest setting that is
    at least as safe: no such setting exists, or it needs more unit-hours."""
    return theirs is None or ours.unit_hours < theirs.unit_hours


@dataclass(frozen=True)
class FrontierCount:
    """Our policy swept against one other policy swept: for each of the other's settings,
    is our cheapest setting that is at least as safe also at least as cheap?"""

    as_cheap: int
    dearer: int
    none_as_safe: int
    """The other's settings no setting of ours is as safe as."""
    worst: float
    """The largest ratio of our unit-hours to theirs among the ``dearer`` (1.0: none)."""

    @property
    def total(self) -> int:
        return self.as_cheap + self.dearer + self.none_as_safe

    def plus(self, other: FrontierCount) -> FrontierCount:
        """Both counts together (over several traces or baselines)."""
        return FrontierCount(
            self.as_cheap + other.as_cheap,
            self.dearer + other.dearer,
            self.none_as_safe + other.none_as_safe,
            max(self.worst, other.worst),
        )


def frontier_count(points: Sequence[Point], ours: str, theirs: str) -> FrontierCount:
    """:class:`FrontierCount` of ``ours`` against ``theirs`` over the same sweep."""
    as_cheap = dearer = none = 0
    worst = 1.0
    for p in points:
        if p.policy != theirs:
            continue
        mine = cheapest(points, ours, p.under_minutes)
        if mine is None:
            none += 1
        elif mine.unit_hours <= p.unit_hours:
            as_cheap += 1
        else:
            dearer += 1
            worst = max(worst, mine.unit_hours / max(p.unit_hours, 1e-9))
    return FrontierCount(as_cheap, dearer, none, worst)


def sweep(
    resource: Resource,
    trace: Trace,
    policies: Sequence[str],
    targets: Sequence[float],
    cfg: RunConfig,
    *,
    prepared: Prepared | None = None,
) -> list[Point]:
    """Every policy at every target (utilization, 0-1); the oracle of the tier's own target."""
    prep = prepared or prepare(resource, trace, cfg)
    own = prep.target
    points = []
    for policy in policies:
        for u in targets:
            tier = retarget(resource, u, cfg.capacity_per_unit)
            rep = run(tier, trace, policy, cfg, prep)
            points.append(Point(policy, u, rep, own=abs(u - own) < 1e-9))
    return points
