"""ElastiCache (Redis OSS / Valkey) replication groups: replicas per shard.

The capacity is the number of replicas in a node group (shard): its members
minus the primary. With ``nodeGroupId`` only that shard is scaled; otherwise
every shard is, and ``current`` is the fewest replicas of any shard (the
detail lists each). A group that is not ``available``, has a shard that is
not, or has modifications pending is busy: ``apply`` changes nothing until
it settles ("waiting while a modification is pending").

DescribeReplicationGroups gives no node status, so each member cluster is
read with DescribeCacheClusters (its CacheClusterStatus and
CacheClusterCreateTime), one call per member, in order, until the member has
been seen available; from then on its creation time is kept (bounded) and it
is not read again, so a steady group costs no extra call. A replica is ready
when it is ``available`` (or ``snapshotting``, which serves) and was created
at least the resource's warm-up ago (``spec.warmupSeconds``, else 600 s);
``creating``, ``modifying``, ``rebooting cluster nodes`` and every other
status are starting; ``deleting`` replicas are removing, not capacity. A
member that DescribeCacheClusters does not know (a race with its creation)
is starting. The primary is not capacity and not read when the group names
it (CurrentRole, cluster mode disabled); in cluster mode, where it does not,
every member is read and one ready member per shard is taken as the primary.
Across shards, ``ready`` is the fewest ready replicas of any shard.

``apply`` sends IncreaseReplicaCount or DecreaseReplicaCount with
ApplyImmediately=True: NewReplicaCount for a cluster-mode-disabled group,
a ReplicaConfiguration entry per shard to change for cluster mode. Both take
absolute counts, so ``apply`` acts on the observation it is given (the one
``observe`` just made) rather than reading the group again; a group that
changed in between makes AWS reject the request, which is retried.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stackscaler.actuators.base import ApplyResult, Capacity
from stackscaler.actuators.warmup import Clock, LaunchTimes, past_warmup, utcnow
from stackscaler.aws.clients import AwsCaller, RoleRef
from stackscaler.errors import PermanentError, TargetNotFound
from stackscaler.model.crds import ELASTICACHE_MAX_REPLICAS
from stackscaler.model.spec import ReplicationGroupTarget, Resource, Warmup, warmup

WAITING = "waiting while a modification is pending"
_REMEMBERED = 4096
"""Observations kept for apply (one per resource; the oldest are dropped)."""

SERVING_STATES = frozenset({"available", "snapshotting"})
"""A node serves while available, and while a snapshot of it is taken."""
REMOVING_STATES = frozenset({"deleting", "deleted"})
NOT_FOUND = "not found"
"""The status of a member DescribeCacheClusters does not know."""


@dataclass(frozen=True)
class Node:
    """One member cluster as DescribeCacheClusters reports it."""

    status: str
    created: datetime | None = None


@dataclass(frozen=True)
class ShardNodes:
    """The replicas of one shard by state, at one moment."""

    node_group_id: str
    current: int
    """Replicas serving or starting (the ones being deleted are not)."""
    ready: int
    warming: int
    pending: int
    removing: int
    states: tuple[tuple[str, int], ...]
    """Statuses of the replicas that are not serving (creating, modifying, deleting, ...)."""

    def describe(self, warmup: Warmup | None) -> str:
        parts = [f"{self.ready} ready"]
        if self.warming and warmup is not None:
            parts.append(f"{self.warming} in warm-up ({warmup.seconds} s, {warmup.source})")
        parts.extend(f"{n} {state}" for state, n in self.states)
        return f"{self.current} replicas, " + ", ".join(parts)


@dataclass(frozen=True)
class Shard:
    node_group_id: str
    replicas: int
    status: str
    members: tuple[str, ...] = ()
    primary: str | None = None
    """The primary's member id, where the group names it (cluster mode disabled)."""

    @property
    def replica_members(self) -> tuple[str, ...]:
        """The members that may be replicas: all but a named primary."""
        return tuple(m for m in self.members if m != self.primary)

    def nodes(self, known: Mapping[str, Node], seconds: int, now: datetime) -> ShardNodes:
        """Count the replicas of this shard by state (a member not in ``known``: not found)."""
        nodes = [known.get(m, Node(NOT_FOUND)) for m in self.replica_members]
        serving = [n for n in nodes if n.status in SERVING_STATES]
        warm = sum(1 for n in serving if past_warmup(n.created, now, seconds))
        removing = sum(1 for n in nodes if n.status in REMOVING_STATES)
        others = Counter(n.status for n in nodes if n.status not in SERVING_STATES)
        pending = sum(others.values()) - removing
        if self.primary is None:  # every member read: one serving member is the primary
            warm, serving = max(0, warm - 1), serving[1:]
        current = max(0, self.replicas - removing)
        ready = min(warm, current)
        warming = min(max(0, len(serving) - ready), current - ready)
        return ShardNodes(
            node_group_id=self.node_group_id,
            current=current,
            ready=ready,
            warming=warming,
            pending=min(pending, current - ready - warming),
            removing=removing,
            states=tuple(sorted(others.items())),
        )


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
                members=tuple(
                    str(m["CacheClusterId"])
                    for m in ng.get("NodeGroupMembers", ())
                    if m.get("CacheClusterId")
                ),
                primary=next(
                    (
                        str(m["CacheClusterId"])
                        for m in ng.get("NodeGroupMembers", ())
                        if m.get("CurrentRole") == "primary" and m.get("CacheClusterId")
                    ),
                    None,
                ),
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

    def capacity(
        self,
        node_group_id: str | None,
        known: Mapping[str, Node],
        warmup: Warmup | None = None,
        now: datetime | None = None,
    ) -> Capacity:
        """The scaled shards' replicas; ``known``: the member clusters' states, by id."""
        shards = self.scaled(node_group_id)
        if not shards:
            raise PermanentError(f"replication group {self.group_id} reports no node groups")
        seconds = warmup.seconds if warmup is not None else 0
        counted = [s.nodes(known, seconds, now or utcnow()) for s in shards]
        current = min(c.current for c in counted)
        least = min(counted, key=lambda c: (c.ready, c.current))  # the shard that limits
        if len(counted) == 1:
            detail = f"shard {least.node_group_id}: {least.describe(warmup)}"
        else:
            detail = (
                f"{len(counted)} shards, replicas "
                + "; ".join(f"{c.node_group_id}: {c.describe(warmup)}" for c in counted)
                + f" (the fewest, {current}, is the current capacity; the fewest ready, "
                f"{least.ready}, are ready)"
            )
        ready = min(least.ready, current)
        return Capacity(
            current=current,
            ready=ready,
            pending=least.pending,
            removing=max(c.removing for c in counted),
            warming=least.warming,
            warmup_seconds=None if warmup is None else seconds,
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

    def __init__(self, caller: AwsCaller, *, clock: Clock = utcnow) -> None:
        self._caller = caller
        self._clock = clock
        self._observed: OrderedDict[str, tuple[Capacity, GroupState]] = OrderedDict()
        self._created: LaunchTimes[tuple[str, RoleRef | None, str]] = LaunchTimes()
        """Creation times of member clusters seen serving, by (region, role, id)."""

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

    async def _nodes(self, resource: Resource, shards: tuple[Shard, ...]) -> dict[str, Node]:
        """The states of the shards' replica members: known ones kept, the others read."""
        target = _target(resource)
        region = self._caller.clients.region(target.region)
        role = RoleRef.of(target.role_arn, resource.namespace)
        nodes: dict[str, Node] = {}
        for member in (m for s in shards for m in s.replica_members):
            created = self._created.get((region, role, member))
            if created is not None:
                nodes[member] = Node("available", created)
                continue
            try:
                out = await self._caller.call(
                    "elasticache",
                    "DescribeCacheClusters",
                    region=region,
                    role=role,
                    resource=f"cache cluster {member} of replication group {target.name}",
                    CacheClusterId=member,
                )
            except TargetNotFound:
                nodes[member] = Node(NOT_FOUND)
                continue
            found = out.get("CacheClusters") or [{}]
            status = str(found[0].get("CacheClusterStatus", NOT_FOUND))
            when = found[0].get("CacheClusterCreateTime")
            node = Node(status, when if isinstance(when, datetime) else None)
            if node.status in SERVING_STATES and node.created is not None:
                self._created.put((region, role, member), node.created)
            nodes[member] = node
        return nodes

    async def observe(self, resource: Resource) -> Capacity:
        target = _target(resource)
        state = await self._read(resource)
        shards = state.scaled(target.node_group_id)
        nodes = await self._nodes(resource, shards)
        capacity = state.capacity(target.node_group_id, nodes, warmup(resource), self._clock())
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
