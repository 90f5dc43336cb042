"""EC2 Auto Scaling groups: observe in batches, set the desired capacity.

Every resource due in the same tick asks for its own group; the asks are
coalesced per (region, role assumed for a namespace) into
DescribeAutoScalingGroups calls of up to 100 names each (MaxRecords 100,
NextToken followed), and each resource gets its own group's capacity back,
or TargetNotFound when the group is missing.

``current`` is the group's DesiredCapacity: what has been ordered, so an
instance that is still launching is never ordered twice. ``apply`` sends one
SetDesiredCapacity (HonorCooldown=False: the policy has its own cooldowns)
only when the desired capacity differs from it. Without ``syncMinMax`` the
desired capacity is clamped to the group's own MinSize/MaxSize and the clamp
is reported; with it, the group's MinSize/MaxSize are first set to the
resource's minCapacity/maxCapacity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from stackscaler.actuators.base import ApplyResult, Capacity
from stackscaler.aws.clients import AwsCaller, RoleRef
from stackscaler.batching import Coalescer
from stackscaler.errors import PermanentError, TargetNotFound
from stackscaler.model.spec import AutoScalingGroupTarget, Resource

DESCRIBE_BATCH = 100
"""Names per DescribeAutoScalingGroups call (its MaxRecords limit)."""

BatchKey = tuple[str, RoleRef | None]
"""(region, role): the groups one set of credentials describes together.

A role assumed for two namespaces is two sessions: never one call."""


def group_capacity(group: Mapping[str, Any]) -> Capacity:
    """The capacity of one group as DescribeAutoScalingGroups reports it.

    ready: InService instances; pending: lifecycle states starting with
    Pending (Pending, Pending:Wait, Pending:Proceed); removing: states starting
    with Terminating. Standby, Detaching and other states count in none.
    """
    states = [str(i.get("LifecycleState", "")) for i in group.get("Instances", ())]
    ready = sum(1 for s in states if s == "InService")
    pending = sum(1 for s in states if s.startswith("Pending"))
    removing = sum(1 for s in states if s.startswith("Terminating"))
    other = len(states) - ready - pending - removing
    desired = int(group["DesiredCapacity"])
    lo, hi = int(group["MinSize"]), int(group["MaxSize"])
    detail = (
        f"DesiredCapacity {desired}: {ready} InService, {pending} pending, "
        f"{removing} terminating"
        + (f", {other} in other states" if other else "")
        + f" (MinSize {lo}, MaxSize {hi})"
    )
    status = group.get("Status")
    return Capacity(
        current=desired,
        is_setpoint=True,
        ready=ready,
        pending=pending,
        removing=removing,
        minimum=lo,
        maximum=hi,
        busy=f"the group is being deleted ({status})" if status else None,
        tags=tuple((str(t.get("Key", "")), str(t.get("Value", ""))) for t in group.get("Tags", ())),
        detail=detail,
    )


def _target(resource: Resource) -> AutoScalingGroupTarget:
    if not isinstance(resource.target, AutoScalingGroupTarget):
        raise PermanentError(
            f"{resource.key}: the Auto Scaling group actuator cannot scale a "
            f"{resource.target.kind} target"
        )
    return resource.target


def _names(names: Sequence[str]) -> str:
    """The groups one call describes, for error messages."""
    if len(names) == 1:
        return f"Auto Scaling group {names[0]}"
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"Auto Scaling groups {', '.join(names[:3])}{more}"


class AsgActuator:
    """Actuator for ``AutoScalingGroup`` targets."""

    def __init__(self, caller: AwsCaller, *, window: float = 0.05) -> None:
        self._caller = caller
        self._batches: Coalescer[BatchKey, str, Capacity] = Coalescer(self._describe, window=window)

    async def observe(self, resource: Resource) -> Capacity:
        target = _target(resource)
        region = self._caller.clients.region(target.region)
        role = RoleRef.of(target.role_arn, resource.namespace)
        return await self._batches.submit((region, role), target.name)

    async def _describe(
        self, key: BatchKey, names: Sequence[str]
    ) -> list[Capacity | BaseException]:
        region, role = key
        unique = list(dict.fromkeys(names))
        chunks = [unique[i : i + DESCRIBE_BATCH] for i in range(0, len(unique), DESCRIBE_BATCH)]
        outcomes = await asyncio.gather(
            *(self._describe_chunk(region, role, chunk) for chunk in chunks),
            return_exceptions=True,
        )
        found: dict[str, Capacity | BaseException] = {}
        for chunk, outcome in zip(chunks, outcomes, strict=True):
            for name in chunk:
                if isinstance(outcome, BaseException):
                    found[name] = outcome  # one failed call fails only its own names
                elif name in outcome:
                    found[name] = group_capacity(outcome[name])
                else:
                    found[name] = TargetNotFound(
                        f"Auto Scaling group {name} does not exist in {region}"
                        + (f" (as {role})" if role else "")
                    )
        return [found[name] for name in names]

    async def _describe_chunk(
        self, region: str, role: RoleRef | None, names: list[str]
    ) -> dict[str, Mapping[str, Any]]:
        groups: dict[str, Mapping[str, Any]] = {}
        token: str | None = None
        while True:
            params: dict[str, Any] = {"AutoScalingGroupNames": names, "MaxRecords": DESCRIBE_BATCH}
            if token:
                params["NextToken"] = token
            out = await self._caller.call(
                "autoscaling",
                "DescribeAutoScalingGroups",
                region=region,
                role=role,
                resource=_names(names),
                **params,
            )
            for group in out.get("AutoScalingGroups", ()):
                groups[group["AutoScalingGroupName"]] = group
            token = out.get("NextToken")
            if not token:
                return groups

    async def apply(self, resource: Resource, desired: int, observed: Capacity) -> ApplyResult:
        target = _target(resource)
        role = RoleRef.of(target.role_arn, resource.namespace)
        where = f"Auto Scaling group {target.name}"
        if observed.busy:
            return ApplyResult(
                requested=observed.current, changed=False, detail=f"not changed: {observed.busy}"
            )
        changed = False
        clamped: str | None = None
        notes: list[str] = []
        if target.sync_min_max:
            # The group's bounds follow the resource's; they are widened only when a
            # schedule moved the desired capacity outside minCapacity/maxCapacity, so
            # that SetDesiredCapacity is never rejected for being out of bounds.
            lo = min(resource.scaling.min_capacity, desired)
            hi = max(resource.scaling.max_capacity, desired)
            if (observed.minimum, observed.maximum) != (lo, hi):
                await self._caller.call(
                    "autoscaling",
                    "UpdateAutoScalingGroup",
                    region=target.region,
                    role=role,
                    resource=where,
                    AutoScalingGroupName=target.name,
                    MinSize=lo,
                    MaxSize=hi,
                )
                changed = True
                notes.append(f"MinSize/MaxSize {observed.minimum}/{observed.maximum} -> {lo}/{hi}")
            requested = desired
        else:
            requested = desired
            if observed.maximum is not None and desired > observed.maximum:
                requested = observed.maximum
                clamped = f"desired {desired} clamped to the group's MaxSize {observed.maximum}"
            elif observed.minimum is not None and desired < observed.minimum:
                requested = observed.minimum
                clamped = f"desired {desired} clamped to the group's MinSize {observed.minimum}"
        if requested != observed.current:
            await self._caller.call(
                "autoscaling",
                "SetDesiredCapacity",
                region=target.region,
                role=role,
                resource=where,
                AutoScalingGroupName=target.name,
                DesiredCapacity=requested,
                HonorCooldown=False,
            )
            changed = True
            notes.append(f"DesiredCapacity {observed.current} -> {requested}")
        return ApplyResult(
            requested=requested,
            changed=changed,
            clamped=clamped,
            detail="; ".join(notes) or f"DesiredCapacity already {observed.current}",
        )

    async def close(self) -> None:
        """Nothing to release: the AwsCaller belongs to whoever made it."""
