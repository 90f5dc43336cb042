"""The actuator interface: observe a target's capacity, apply a desired one.

One module per target kind, one registry. ``observe`` reports the capacity
the policy works from (units serving plus units being added, so nothing is
ordered twice) and the target's own bounds; ``apply`` changes the target
toward ``desired`` only when it differs from what is there, and says what it
did. Actuators batch internally where the provider allows (ASG describes).

Capacity in flight, the contract with the reconciler and the policy:

- ``current``: every unit serving or ordered (an ASG's DesiredCapacity, the
  replicas that exist or are being created). The policy decides from it.
- ``ready``: the units of ``current`` that produce the metrics now: serving
  (InService, ``available``, an available pod) AND past their warm-up
  (``spec.warmupSeconds``, see :func:`stackscaler.model.spec.warmup`).
  ``0 <= ready <= current``.
- ``starting = current - ready``: ordered but not yet in the metrics:
  launching, in warm-up, being created or changed, not yet launched at all,
  not ready. The reconciler passes it to the policy as
  ``Observations.starting``; ``pending`` and ``warming`` only break it down
  for the detail (and do not always add up to it: an ASG's units not yet
  launched are in neither).
- ``removing``: units being removed; not part of ``current``. The policy
  gets it as ``Observations.leaving``.

A unit whose state or launch time is unknown is not counted ready: it has
not been seen producing the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from stackscaler.model.spec import Resource
from stackscaler.policy.budget import DecreaseBudget


@dataclass(frozen=True)
class Capacity:
    current: int
    """Capacity the policy decides from: units serving plus units ordered."""
    ready: int
    """Units of ``current`` that produce the metrics now: serving and past their warm-up."""
    pending: int = 0
    """Units being added that do not serve yet (Pending instances, replicas being created)."""
    removing: int = 0
    """Units being removed (terminating instances, replicas being deleted): not in ``current``."""
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
    warming: int = 0
    """Units serving but still in their warm-up (part of ``starting``)."""
    warmup_seconds: int | None = None
    """The warm-up applied to this observation, where the actuator applies one."""
    decreases: DecreaseBudget | None = None
    """A DynamoDB table's (or index's) decreases of the UTC day, as DescribeTable reports
    them; None for every other target."""

    @property
    def starting(self) -> int:
        """Units ordered that do not produce the metrics yet: ``current - ready``, at least 0."""
        return max(0, self.current - self.ready)


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
