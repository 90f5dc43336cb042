"""ElastiCache (Redis OSS / Valkey) replication groups: replicas per shard.

The capacity is the number of replicas in a node group (shard): its members
minus the primary. With ``nodeGroupId`` only that shard is scaled; otherwise
every shard is, and ``current`` is the fewest replicas of any shard (the
detail lists each). A group that is not ``available``, has a shard that is
not, or has modifications pending is busy: ``apply`` changes nothing until
it settles ("waiting while a modification is pending").

``apply`` sends IncreaseReplicaCount or DecreaseReplicaCount with
ApplyImmediately=True: NewReplicaCount for a cluster-mode-disabled group,
a ReplicaConfiguration entry per shard to change for cluster mode. Both take
absolute counts, so ``apply`` acts on the observation it is given (the one
``observe`` just made) rather than reading the group again; a group that
changed in between makes AWS reject the request, which is retried.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stackscaler.actuators.base import ApplyResult, Capacity
from stackscaler.aws.clients import AwsCaller, RoleRef
from stackscaler.errors import PermanentError, TargetNotFound
from stackscaler.model.crds import ELASTICACHE_MAX_REPLICAS
from stackscaler.model.spec import ReplicationGroupTarget, Resource

WAITING = "waiting while a modification is pending"
_REMEMBERED = 4096
"""Observations kept for apply (one per resource; the oldest are dropped)."""


@dataclass(frozen=True)
class Shard:
    node_group_id: str
    replicas: int
    status: str


@dataclass(frozen=True)
class GroupState:
    """One replication group as DescribeReplicationGroups reports it."""

    group_id: str
    status: str
    cluster_mode: bool
    shards: tuple[Shard, ...]
    pending: tuple[str, ...]
    """Names of pending modified values."""
    multi_az: bool
    automatic_failover: bool

    @classmethod
    def from_api(cls, doc: Mapping[str, Any]) -> GroupState:
        shards = tuple(
            Shard(
                node_group_id=str(ng["NodeGroupId"]),
                replicas=max(0, len(ng.get("NodeGroupMembers", ())) - 1),
                status=str(ng.get("Status", "available")),
            )
            for ng in doc.get("NodeGroups", ())
        )
        pending = tuple(sorted(k for k, v in (doc.get("PendingModifiedValues") or {}).items() if v))
        cluster = doc.get("ClusterEnabled")
        return cls(
            group_id=str(doc["ReplicationGroupId"]),
            status=str(doc.get("Status", "")),
            cluster_mode=bool(cluster) if cluster is not None else len(shards) > 1,
            shards=shards,
            pending=pending,
            multi_az=doc.get("MultiAZ") == "enabled",
            automatic_failover=doc.get("AutomaticFailover") in ("enabled", "enabling"),
        )

    @property
    def busy(self) -> str | None:
        why: list[str] = []
        if self.status != "available":
            why.append(f"replication group {self.group_id} is {self.status}")
        why.extend(
            f"shard {s.node_group_id} is {s.status}" for s in self.shards if s.status != "available"
        )
        if self.pending:
            why.append("pending: " + ", ".join(self.pending))
        return f"{WAITING} ({'; '.join(why)})" if why else None

    @property
    def minimum(self) -> int:
        """Multi-AZ, and automatic failover without cluster mode, need a replica."""
        return 1 if self.multi_az or (self.automatic_failover and not self.cluster_mode) else 0

    def scaled(self, node_group_id: str | None) -> tuple[Shard, ...]:
        """The shards the resource scales."""
        if node_group_id is None:
            return self.shards
        chosen = tuple(s for s in self.shards if s.node_group_id == node_group_id)
        if not chosen:
            have = ", ".join(s.node_group_id for s in self.shards) or "none"
            raise TargetNotFound(
                f"replication group {self.group_id} has no node group {node_group_id} "
                f"(it has {have})"
            )
        return chosen

    def capacity(self, node_group_id: str | None) -> Capacity:
        shards = self.scaled(node_group_id)
        if not shards:
            raise PermanentError(f"replication group {self.group_id} reports no node groups")
        current = min(s.replicas for s in shards)
        detail = (
            f"{current} replicas in shard {shards[0].node_group_id}"
            if len(shards) == 1
            else f"{len(shards)} shards, replicas "
            + ", ".join(f"{s.node_group_id}: {s.replicas}" for s in shards)
            + f" (the fewest, {current}, is the current capacity)"
        )
        return Capacity(
            current=current,
            ready=current,
            minimum=self.minimum,
            maximum=ELASTICACHE_MAX_REPLICAS,
            busy=self.busy,
            detail=detail,
        )


def _target(resource: Resource) -> ReplicationGroupTarget:
    if not isinstance(resource.target, ReplicationGroupTarget):
        raise PermanentError(
            f"{resource.key}: the ElastiCache actuator cannot scale a {resource.target.kind} target"
        )
    return resource.target


class ElastiCacheActuator:
    """Actuator for ``ReplicationGroup`` targets."""

    def __init__(self, caller: AwsCaller) -> None:
        self._caller = caller
        self._observed: OrderedDict[str, tuple[Capacity, GroupState]] = OrderedDict()

    async def _read(self, resource: Resource) -> GroupState:
        target = _target(resource)
        out = await self._caller.call(
            "elasticache",
            "DescribeReplicationGroups",
            region=target.region,
            role=RoleRef.of(target.role_arn, resource.namespace),
            resource=f"replication group {target.name}",
            ReplicationGroupId=target.name,
        )
        groups = out.get("ReplicationGroups", ())
        if not groups:
            raise TargetNotFound(f"replication group {target.name} does not exist")
        return GroupState.from_api(groups[0])

    async def observe(self, resource: Resource) -> Capacity:
        target = _target(resource)
        state = await self._read(resource)
        capacity = state.capacity(target.node_group_id)
        self._observed[resource.key] = (capacity, state)
        self._observed.move_to_end(resource.key)
        while len(self._observed) > _REMEMBERED:
            self._observed.popitem(last=False)
        return capacity

    async def apply(self, resource: Resource, desired: int, observed: Capacity) -> ApplyResult:
        target = _target(resource)
        if observed.busy:
            return ApplyResult(observed.current, False, detail=observed.busy)
        remembered = self._observed.pop(resource.key, None)
        if remembered is not None and remembered[0] == observed:
            state = remembered[1]
        else:  # not the observation observe() made: read the group now
            state = await self._read(resource)
            if state.busy:
                return ApplyResult(observed.current, False, detail=state.busy)
        lo, hi = state.minimum, ELASTICACHE_MAX_REPLICAS
        requested = min(max(desired, lo), hi)
        clamped = None
        if desired > hi:
            clamped = f"desired {desired} clamped to ElastiCache's {hi} replicas per shard"
        elif desired < lo:
            why = "Multi-AZ" if state.multi_az else "automatic failover"
            clamped = f"desired {desired} clamped to {lo}: {why} needs a replica per shard"
        shards = state.scaled(target.node_group_id)
        grow = [s for s in shards if s.replicas < requested]
        shrink = [s for s in shards if s.replicas > requested]
        # One operation at a time: the group is busy until it finishes. Growing first
        # keeps every shard at least where it was.
        change, operation = (
            (grow, "IncreaseReplicaCount") if grow else (shrink, "DecreaseReplicaCount")
        )
        if not change:
            return ApplyResult(requested, False, clamped, detail=f"already {requested} replicas")
        params: dict[str, Any] = {"ReplicationGroupId": state.group_id, "ApplyImmediately": True}
        if state.cluster_mode:
            params["ReplicaConfiguration"] = [
                {"NodeGroupId": s.node_group_id, "NewReplicaCount": requested} for s in change
            ]
        else:
            params["NewReplicaCount"] = requested
        await self._caller.call(
            "elasticache",
            operation,
            region=target.region,
            role=RoleRef.of(target.role_arn, resource.namespace),
            resource=f"replication group {target.name}",
            **params,
        )
        moved = ", ".join(f"{s.node_group_id}: {s.replicas} -> {requested}" for s in change)
        return ApplyResult(requested, True, clamped, detail=f"{operation} ({moved})")

    async def close(self) -> None:
        """Nothing to release: the AwsCaller belongs to whoever made it."""
