"""EC2 Auto Scaling groups: observe in batches, set the desired capacity.

Every resource due in the same tick asks for its own group; the asks are
coalesced per (region, role assumed for a namespace) into
DescribeAutoScalingGroups calls of up to 100 names each (MaxRecords 100,
NextToken followed), and each resource gets its own group's capacity back,
or TargetNotFound when the group is missing.

``current`` is the group's DesiredCapacity: what has been ordered, so an
instance that is still launching is never ordered twice. ``ready`` counts the
InService instances past their warm-up: launched (EC2 LaunchTime) at least
the resource's warm-up ago, which is ``spec.warmupSeconds``, else the group's
own DefaultInstanceWarmup, else 180 s. DescribeAutoScalingGroups does not
report launch times, so the same batch asks EC2 DescribeInstances for the
InService instances whose launch time it does not know yet (100 ids per call,
by an ``instance-id`` filter, so an instance EC2 does not show yet is unknown
rather than an error). Launch times never change and are kept (bounded, per
region and role), so a steady fleet costs no EC2 call at all; with a warm-up
of 0 none is asked for.

AWS counts DefaultInstanceWarmup from the moment an instance is InService;
stackscaler counts from its launch, the one time EC2 reports, so the boot is
inside the warm-up here (the difference is the time from launch to
InService, usually a minute or two).

``apply`` sends one SetDesiredCapacity (HonorCooldown=False: the policy has
its own cooldowns) only when the desired capacity differs from it. Without
``syncMinMax`` the desired capacity is clamped to the group's own
MinSize/MaxSize and the clamp is reported; with it, the group's
MinSize/MaxSize are first set to the resource's minCapacity/maxCapacity.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stackscaler.actuators.base import ApplyResult, Capacity
from stackscaler.actuators.warmup import Clock, LaunchTimes, past_warmup, utcnow
from stackscaler.aws.clients import AwsCaller, RoleRef
from stackscaler.batching import QUIET, WINDOW, Coalescer
from stackscaler.errors import PermanentError, StackscalerError, TargetNotFound
from stackscaler.model.crds import WARMUP_SECONDS_BY_TARGET
from stackscaler.model.spec import AutoScalingGroupTarget, Resource, Warmup, warmup

DESCRIBE_BATCH = 100
"""Names per DescribeAutoScalingGroups call (its MaxRecords limit)."""
INSTANCES_BATCH = 100
"""Instance ids per DescribeInstances call (the values of one instance-id filter)."""

BatchKey = tuple[str, RoleRef | None]
"""(region, role): the groups one set of credentials describes together.

A role assumed for two namespaces is two sessions: never one call."""

Ask = tuple[str, int | None]
"""What one resource asks of a batch: its group's name and its spec.warmupSeconds."""


@dataclass(frozen=True)
class GroupView:
    """One group as described, and the launch times known of its InService instances."""

    group: Mapping[str, Any]
    launched: Mapping[str, datetime]


def _group_setting(group: Mapping[str, Any]) -> int | None:
    """The group's DefaultInstanceWarmup when it sets one (0-3600; -1 turns it off)."""
    own = group.get("DefaultInstanceWarmup")
    if isinstance(own, int) and not isinstance(own, bool) and own >= 0:
        return own
    return None


def group_warmup(resource: Resource, group: Mapping[str, Any]) -> Warmup:
    """spec.warmupSeconds, else the group's DefaultInstanceWarmup, else the default."""
    own = _group_setting(group)
    setting = None if own is None else (own, "the group's DefaultInstanceWarmup")
    return warmup(resource, target_setting=setting)


def _needs_launch_times(spec_warmup: int | None, group: Mapping[str, Any]) -> bool:
    if spec_warmup is not None:
        return spec_warmup > 0
    own = _group_setting(group)
    return (WARMUP_SECONDS_BY_TARGET["AutoScalingGroup"] if own is None else own) > 0


def _in_service(group: Mapping[str, Any]) -> list[str]:
    return [
        str(i["InstanceId"])
        for i in group.get("Instances", ())
        if i.get("LifecycleState") == "InService" and i.get("InstanceId")
    ]


def group_capacity(
    group: Mapping[str, Any],
    *,
    warmup: Warmup | None = None,
    launched: Mapping[str, datetime] | None = None,
    now: datetime | None = None,
) -> Capacity:
    """The capacity of one group as DescribeAutoScalingGroups reports it.

    ready: InService instances launched at least ``warmup`` before ``now``
    (every InService instance without a warm-up), at most DesiredCapacity;
    warming: the other InService ones (an unknown launch time counts here);
    pending: lifecycle states starting with Pending (Pending, Pending:Wait,
    Pending:Proceed); removing: states starting with Terminating. Standby,
    Detaching and other states count in none. Units ordered but not launched
    yet (DesiredCapacity above the instances) are starting as well.
    """
    seconds = warmup.seconds if warmup is not None else 0
    times = launched or {}
    at = now or utcnow()
    warm = warming = unknown = pending = removing = other = 0
    for instance in group.get("Instances", ()):
        state = str(instance.get("LifecycleState", ""))
        if state == "InService":
            when = times.get(str(instance.get("InstanceId", "")))
            if past_warmup(when, at, seconds):
                warm += 1
            else:
                warming += 1
                unknown += when is None
        elif state.startswith("Pending"):
            pending += 1
        elif state.startswith("Terminating"):
            removing += 1
        else:
            other += 1
    desired = int(group["DesiredCapacity"])
    lo, hi = int(group["MinSize"]), int(group["MaxSize"])
    in_service = f"{warm} InService"
    if warmup is not None and seconds:
        in_service += f" and warm, {warming} in warm-up ({warmup.seconds} s, {warmup.source})"
        if unknown:
            in_service += f", {unknown} of them with no launch time from EC2 yet"
    detail = (
        f"DesiredCapacity {desired}: {in_service}, {pending} pending, {removing} terminating"
        + (f", {other} in other states" if other else "")
        + f" (MinSize {lo}, MaxSize {hi})"
    )
    status = group.get("Status")
    return Capacity(
        current=desired,
        is_setpoint=True,
        ready=min(warm, desired),
        pending=pending,
        removing=removing,
        warming=warming,
        warmup_seconds=None if warmup is None else warmup.seconds,
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


def _batch(names: Sequence[str]) -> str:
    """A batched call, for error messages: never the names, which may be other tenants'."""
    return f"a batch of {len(names)} Auto Scaling group(s)"


def _own(err: BaseException, name: str) -> BaseException:
    """A batched call's error as one group's own: its message names that group only."""
    if not isinstance(err, StackscalerError):
        return err
    own = copy.copy(err)
    own.args = (f"Auto Scaling group {name}: {err}",)
    return own


class AsgActuator:
    """Actuator for ``AutoScalingGroup`` targets."""

    def __init__(
        self,
        caller: AwsCaller,
        *,
        quiet: float = QUIET,
        window: float = WINDOW,
        clock: Clock = utcnow,
    ) -> None:
        self._caller = caller
        self._clock = clock
        self._batches: Coalescer[BatchKey, Ask, GroupView] = Coalescer(
            self._describe, quiet=quiet, window=window, max_batch=DESCRIBE_BATCH
        )
        self._launched: LaunchTimes[tuple[str, RoleRef | None, str]] = LaunchTimes()

    async def observe(self, resource: Resource) -> Capacity:
        target = _target(resource)
        region = self._caller.clients.region(target.region)
        role = RoleRef.of(target.role_arn, resource.namespace)
        view = await self._batches.submit(
            (region, role), (target.name, resource.scaling.warmup_seconds)
        )
        return group_capacity(
            view.group,
            warmup=group_warmup(resource, view.group),
            launched=view.launched,
            now=self._clock(),
        )

    async def _describe(
        self, key: BatchKey, asks: Sequence[Ask]
    ) -> list[GroupView | BaseException]:
        region, role = key
        unique = list(dict.fromkeys(name for name, _ in asks))
        chunks = [unique[i : i + DESCRIBE_BATCH] for i in range(0, len(unique), DESCRIBE_BATCH)]
        outcomes = await asyncio.gather(
            *(self._describe_chunk(region, role, chunk) for chunk in chunks),
            return_exceptions=True,
        )
        found: dict[str, Mapping[str, Any] | BaseException] = {}
        for chunk, outcome in zip(chunks, outcomes, strict=True):
            for name in chunk:
                if isinstance(outcome, BaseException):
                    found[name] = outcome  # one failed call fails only its own names
                elif name in outcome:
                    found[name] = outcome[name]
                else:
                    found[name] = TargetNotFound(
                        f"Auto Scaling group {name} does not exist in {region}"
                        + (f" (as {role})" if role else "")
                    )
        # Launch times: only of groups a resource needs them for, only those not known.
        groups = {n: g for n, g in found.items() if not isinstance(g, BaseException)}
        timed = {n for n, w in asks if n in groups and _needs_launch_times(w, groups[n])}
        wanted = {
            i
            for name in timed
            for i in _in_service(groups[name])
            if (region, role, i) not in self._launched
        }
        failed = await self._launch_times(region, role, sorted(wanted))
        results: list[GroupView | BaseException] = []
        for name, _ in asks:
            group = found[name]
            if isinstance(group, BaseException):
                results.append(group if isinstance(group, TargetNotFound) else _own(group, name))
                continue
            ids = _in_service(group) if name in timed else []
            error = next((failed[i] for i in ids if i in failed), None)
            if error is not None:
                results.append(_own(error, name))
                continue
            launched = {i: t for i in ids if (t := self._launched.get((region, role, i)))}
            results.append(GroupView(group, launched))
        return results

    async def _launch_times(
        self, region: str, role: RoleRef | None, ids: list[str]
    ) -> dict[str, BaseException]:
        """Ask EC2 for the launch times of ``ids``; keep them; return the ids that failed."""
        chunks = [ids[i : i + INSTANCES_BATCH] for i in range(0, len(ids), INSTANCES_BATCH)]
        outcomes = await asyncio.gather(
            *(self._describe_instances(region, role, chunk) for chunk in chunks),
            return_exceptions=True,
        )
        failed: dict[str, BaseException] = {}
        for chunk, outcome in zip(chunks, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failed.update(dict.fromkeys(chunk, outcome))
                continue
            for instance_id, launched in outcome.items():
                self._launched.put((region, role, instance_id), launched)
        return failed

    async def _describe_instances(
        self, region: str, role: RoleRef | None, ids: list[str]
    ) -> dict[str, datetime]:
        launched: dict[str, datetime] = {}
        token: str | None = None
        where = f"a batch of {len(ids)} EC2 instance(s)"  # not the ids: they may be others'
        while True:
            params: dict[str, Any] = {
                "Filters": [{"Name": "instance-id", "Values": ids}],
                "MaxResults": 1000,
            }
            if token:
                params["NextToken"] = token
            out = await self._caller.call(
                "ec2", "DescribeInstances", region=region, role=role, resource=where, **params
            )
            for reservation in out.get("Reservations", ()):
                for instance in reservation.get("Instances", ()):
                    when = instance.get("LaunchTime")
                    if instance.get("InstanceId") and isinstance(when, datetime):
                        launched[str(instance["InstanceId"])] = when
            token = out.get("NextToken")
            if not token:
                return launched

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
                resource=_batch(names),
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
