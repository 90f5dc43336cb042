"""Values the policy core takes and returns. Pure."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stackscaler.policy.budget import DecreaseBudget
from stackscaler.policy.history import History


class Direction(enum.StrEnum):
    OUT = "Out"
    IN = "In"
    NONE = "None"


class Limit(enum.StrEnum):
    """The rule that limited a decision (what ScalingLimited reports)."""

    MAX_CAPACITY = "maxCapacity"
    MIN_CAPACITY = "minCapacity"
    SCALE_OUT_COOLDOWN = "scaleOutCooldown"
    SCALE_IN_COOLDOWN = "scaleInCooldown"
    SCALE_OUT_STABILIZATION = "scaleOutStabilization"
    SCALE_IN_STABILIZATION = "scaleInStabilization"
    SCALE_OUT_RATE_LIMIT = "scaleOutRateLimit"
    SCALE_IN_RATE_LIMIT = "scaleInRateLimit"
    UNKNOWN_METRICS = "unknownMetrics"
    FALLBACK = "fallback"
    WARMUP = "warmup"
    """No scale-in while units are starting (AWS: scale-in waits until warm-up ends)."""
    DECREASE_BUDGET = "decreaseBudget"
    """No scale-in: the table's decreases of the UTC day are spent until the next is earned."""
    DECREASE_SAVED = "decreaseSaved"
    """No scale-in yet: the step is too small to be worth one of the day's scarce decreases."""


class MetricState(enum.StrEnum):
    KNOWN = "Known"
    UNKNOWN = "Unknown"
    STALE = "Stale"


@dataclass(frozen=True)
class MetricObservation:
    """One metric's reading. ``value=None`` is unknown: never read as zero.

    ``timestamp`` is when the sample was taken (None: at decision time);
    ``error`` says why the value is unknown.
    """

    value: float | None
    timestamp: datetime | None = None
    error: str | None = None

    @classmethod
    def unknown(cls, error: str) -> MetricObservation:
        return cls(None, None, error)


@dataclass(frozen=True)
class Observations:
    """What the edges observed for one resource at one tick.

    ``capacity`` is the target's current capacity as the actuator counts it:
    every unit serving or ordered (for an ASG its DesiredCapacity; for RDS,
    replicas still being created count). A metric missing from ``metrics``
    is unknown.

    Capacity in flight: ``starting`` units are part of ``capacity`` but do
    not yet contribute to the metrics (launching, in warm-up, replicas being
    created, pods not ready); ``ready`` is None when the actuator cannot
    tell, which means every unit of ``capacity`` is ready (``starting`` 0).
    ``leaving`` units are being removed and are not part of ``capacity``.
    """

    capacity: int
    metrics: Mapping[str, MetricObservation] = field(default_factory=dict)
    starting: int = 0
    """Units ordered (in ``capacity``) that do not produce the metrics yet."""
    leaving: int = 0
    """Units being removed (not in ``capacity``)."""
    decreases: DecreaseBudget | None = None
    """A DynamoDB table's (or index's) budget of decreases for the UTC day: set by
    the TableCapacity actuator only; None for every other kind (no budget applies)."""

    @property
    def ready(self) -> int:
        """Units that produce the metrics: capacity minus the units starting."""
        return max(0, self.capacity - max(0, self.starting))


@dataclass(frozen=True)
class MetricResult:
    name: str
    state: MetricState
    value: float | None
    target: float | None
    recommendation: int | None
    detail: str
    time: datetime | None = None
    """When the value was measured (the observation's timestamp, else the decision's
    time); None when unknown."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "state": str(self.state)}
        if self.value is not None:
            out["value"] = self.value
        if self.target is not None:
            out["target"] = self.target
        if self.recommendation is not None:
            out["recommendation"] = self.recommendation
        return out


@dataclass(frozen=True)
class Decision:
    """The policy's answer for one resource at one tick."""

    current: int
    desired: int
    direction: Direction
    limited_by: Limit | None
    reasons: tuple[str, ...]
    metrics: tuple[MetricResult, ...]
    recommendation: int
    """Combined recommendation before stabilization, cooldowns, rate limits, bounds."""
    min_capacity: int
    max_capacity: int
    """Effective bounds at decision time (schedules applied)."""
    active_schedules: tuple[str, ...]
    metrics_available: bool
    fallback_active: bool
    history: History
    """History to persist if this decision is carried out."""
    history_if_held: History = field(default_factory=History)
    """History to persist if it is not (DryRun, paused, target busy, apply failed):
    the observations are remembered (stabilization windows, failure counts), the scale
    action that did not happen is not."""
    headline: str = ""
    """One line: what was decided and the main reason (for tables and Events)."""
    starting: int = 0
    """Units of ``current`` that were starting (not yet in the metrics), as used."""
    leaving: int = 0
    """Units being removed (not in ``current``), as reported."""
    decrease_held: int | None = None
    """A table's scale-in that rule 9 held back (to save a decrease, or none left): the
    capacity it would have lowered to. Read and write of one table share one budget and
    one UpdateTable lowering both is one decrease, so when another resource of the same
    table (and index) lowers in the same tick, this one can go down to it at no cost."""

    @property
    def changed(self) -> bool:
        return self.desired != self.current

    @property
    def ready(self) -> int:
        """Units of ``current`` that produced the metrics."""
        return self.current - self.starting

    def to_dict(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "desired": self.desired,
            "direction": str(self.direction),
            "limitedBy": None if self.limited_by is None else str(self.limited_by),
            "recommendation": self.recommendation,
            "minCapacity": self.min_capacity,
            "maxCapacity": self.max_capacity,
            "activeSchedules": list(self.active_schedules),
            "metricsAvailable": self.metrics_available,
            "fallbackActive": self.fallback_active,
            "headline": self.headline,
            "reasons": list(self.reasons),
            "metrics": [m.to_dict() for m in self.metrics],
            "ready": self.ready,
            "starting": self.starting,
            "leaving": self.leaving,
            "history": self.history.to_dict(),
        }
