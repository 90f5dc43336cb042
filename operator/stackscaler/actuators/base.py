"""The actuator interface: observe a target's capacity, apply a desired one.

One module per target kind, one registry. ``observe`` reports the capacity
the policy works from (units serving plus units being added, so nothing is
ordered twice) and the target's own bounds; ``apply`` changes the target
toward ``desired`` only when it differs from what is there, and says what it
did. Actuators batch internally where the provider allows (ASG describes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from stackscaler.model.spec import Resource


@dataclass(frozen=True)
class Capacity:
    current: int
    """Capacity the policy decides from: ready + pending."""
    ready: int
    """Units serving now (InService instances, available replicas)."""
    pending: int = 0
    """Units being added (Pending instances, replicas being created)."""
    removing: int = 0
    """Units being removed (terminating instances, replicas being deleted)."""
    minimum: int | None = None
    """The target's own lower bound (ASG MinSize), if it has one."""
    maximum: int | None = None
    """The target's own upper bound (ASG MaxSize, engine replica limit)."""
    is_setpoint: bool = False
    """``current`` is a setpoint the target holds (ASG DesiredCapacity, /scale
    spec.replicas): a value other than what stackscaler set means someone else set it.
    False for fleets that converge step by step (RDS replicas, ElastiCache)."""
    busy: str | None = None
    """Why the target cannot be changed right now (a modification in progress)."""
    tags: tuple[tuple[str, str], ...] = ()
    """The target's own tags, where its describe call returns them (ASG): for tenancy."""
    detail: str = ""


@dataclass(frozen=True)
class ApplyResult:
    requested: int
    """The capacity asked of the target (after its own bounds)."""
    changed: bool
    """Whether a change was sent."""
    clamped: str | None = None
    """How the target's own bounds limited the desired capacity, if they did."""
    detail: str = ""


class Actuator(Protocol):
    async def observe(self, resource: Resource) -> Capacity: ...

    async def apply(self, resource: Resource, desired: int, observed: Capacity) -> ApplyResult:
        """Move the target toward ``desired``; never called in DryRun."""
        ...

    async def close(self) -> None: ...
