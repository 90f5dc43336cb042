"""RDS read replicas of a source instance, and Aurora readers of a cluster.

The capacity is the number of replicas (readers): available ones serve,
ones being created or changed are pending, and ``current`` counts both, so a
replica that is still being created is never ordered twice. ``ready`` counts
the available ones created (InstanceCreateTime) at least the resource's
warm-up ago (``spec.warmupSeconds``, else 600 s): a replica in its warm-up is
warming (its buffer pool is cold), starting like the pending ones. Replicas
being deleted are removing, not capacity. Replicas in other states (stopped,
failed, storage-full) serve nothing and count in none, but still count
against the engine's replica limit.

Scale-out creates up to ``desired - current`` replicas from the resource's
replica template, each tagged ``stackscaler.dev/owner-uid`` (the resource's
uid) and ``stackscaler.dev/owner`` (namespace/name), spread over the
template's zones where the fewest replicas are. Scale-in deletes only
replicas carrying this resource's uid, only available ones, newest first,
and one at a time: never while one of its replicas is being deleted or still
being created, never a replica someone else made, never the source or the
writer. ``apply`` reads the replicas again before it acts, as creating and
deleting instances cannot be undone.
"""

from __future__ import annotations

import re
import secrets
import string
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stackscaler.actuators.base import ApplyResult, Capacity
from stackscaler.actuators.warmup import Clock, past_warmup, utcnow
from stackscaler.aws.clients import AwsCaller, RoleRef
from stackscaler.errors import PermanentError
from stackscaler.model.crds import RDS_MAX_REPLICAS, RDS_MAX_REPLICAS_COMMERCIAL
from stackscaler.model.spec import (
    DBClusterTarget,
    DBInstanceTarget,
    ReplicaTemplate,
    Resource,
    Warmup,
    warmup,
)

OWNER_UID_TAG = "stackscaler.dev/owner-uid"
OWNER_TAG = "stackscaler.dev/owner"

ENGINE_REPLICA_LIMITS: dict[str, int] = {
    "mysql": RDS_MAX_REPLICAS,
    "mariadb": RDS_MAX_REPLICAS,
    "postgres": RDS_MAX_REPLICAS,
    "oracle": RDS_MAX_REPLICAS_COMMERCIAL,
    "sqlserver": RDS_MAX_REPLICAS_COMMERCIAL,
}
"""Read replicas per source instance, by engine family."""

AURORA_MAX_READERS = 15
"""Aurora replicas (readers) per cluster."""

SERVING_STATES = frozenset({"available", "storage-optimization"})
"""Serving reads (storage optimization keeps the instance fully operational)."""

PENDING_STATES = frozenset(
    {
        "creating",
        "backing-up",
        "modifying",
        "configuring-enhanced-monitoring",
        "configuring-iam-database-auth",
        "configuring-log-exports",
        "converting-to-vpc",
        "moving-to-vpc",
        "maintenance",
        "rebooting",
        "renaming",
        "resetting-master-credentials",
        "starting",
        "upgrading",
    }
)
"""Being added, or coming back: capacity already ordered."""

REMOVING_STATES = frozenset({"deleting"})

IDENTIFIER_MAX = 63
SUFFIX_LENGTH = 5
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


def engine_family(engine: str) -> str | None:
    """The spec's engine family of an RDS ``Engine`` value (oracle-ee -> oracle)."""
    e = engine.lower()
    if e in ("mysql", "mariadb", "postgres"):
        return e
    if e.startswith("oracle-"):
        return "oracle"
    if e.startswith("sqlserver-"):
        return "sqlserver"
    return None


def replica_identifier(prefix: str, taken: Collection[str]) -> str:
    """A new valid DB instance identifier: ``prefix`` plus a short random suffix.

    Lower case letters, digits and single hyphens, starting with a letter, at
    most 63 characters, not ending with a hyphen; not one of ``taken``.
    """
    base = re.sub(r"[^a-z0-9-]", "", prefix.lower())
    base = re.sub(r"-{2,}", "-", base).lstrip("-0123456789")
    base = base[: IDENTIFIER_MAX - SUFFIX_LENGTH] or "replica-"
    while True:
        suffix = "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(SUFFIX_LENGTH))
        candidate = base + suffix
        if candidate not in taken:
            return candidate


@dataclass(frozen=True)
class Member:
    """One replica (or Aurora reader) as DescribeDBInstances reports it."""

    identifier: str
    status: str
    availability_zone: str | None = None
    created: datetime | None = None
    owner_uid: str | None = None
    instance_class: str | None = None

    @property
    def available(self) -> bool:
        """Serving reads (it may still be in its warm-up)."""
        return self.status in SERVING_STATES

    def warm(self, now: datetime, seconds: int) -> bool:
        """Available, and created at least ``seconds`` before ``now``."""
        return self.available and past_warmup(self.created, now, seconds)

    @property
    def pending(self) -> bool:
        return self.status in PENDING_STATES

    @property
    def removing(self) -> bool:
        return self.status in REMOVING_STATES

    @classmethod
    def from_api(cls, doc: Mapping[str, Any]) -> Member:
        tags = {t.get("Key"): t.get("Value") for t in doc.get("TagList", ())}
        created = doc.get("InstanceCreateTime")
        return cls(
            identifier=str(doc["DBInstanceIdentifier"]),
            status=str(doc.get("DBInstanceStatus", "")),
            availability_zone=doc.get("AvailabilityZone"),
            created=created if isinstance(created, datetime) else None,
            owner_uid=tags.get(OWNER_UID_TAG),
            instance_class=doc.get("DBInstanceClass"),
        )


@dataclass(frozen=True)
class Fleet:
    """The replicas of one source (or readers of one cluster), read now."""

    source: str
    """The source instance, or the cluster: never deleted."""
    members: tuple[Member, ...]
    limit: int
    """Replicas the engine allows per source (readers per cluster)."""
    instance_class: str | None
    """The class of the source (the writer): the default for new replicas."""
    engine: str
    elsewhere: int = 0
    """Replicas in other regions: they count against the limit too."""
    busy: str | None = None
    protected: frozenset[str] = frozenset()
    """Identifiers that are never deleted (the source, the writers)."""

    def capacity(
        self,
        uid: str | None,
        noun: str,
        warmup: Warmup | None = None,
        now: datetime | None = None,
    ) -> Capacity:
        """ready: available and past the warm-up; warming: available, in it (none without one)."""
        seconds = warmup.seconds if warmup is not None else 0
        at = now or utcnow()
        available = sum(1 for m in self.members if m.available)
        ready = sum(1 for m in self.members if m.warm(at, seconds))
        pending = sum(1 for m in self.members if m.pending)
        removing = sum(1 for m in self.members if m.removing)
        other = len(self.members) - available - pending - removing
        own = sum(1 for m in self.members if uid is not None and m.owner_uid == uid)
        serving = f"{available} {noun}s available"
        if warmup is not None and seconds:
            serving += (
                f" ({ready} warm, {available - ready} in warm-up ({seconds} s, {warmup.source}))"
            )
        detail = (
            f"{serving}, {pending} being created or changed, {removing} being deleted"
            + (f", {other} in other states" if other else "")
            + f"; {own} created by this resource; {self.engine} allows {self.limit}"
        )
        return Capacity(
            current=available + pending,
            ready=ready,
            pending=pending,
            removing=removing,
            warming=available - ready,
            warmup_seconds=None if warmup is None else seconds,
            minimum=0,
            maximum=self.limit,
            busy=self.busy,
            detail=detail,
        )

    @property
    def counted(self) -> int:
        """Replicas that count against the limit (every state, every region)."""
        return len(self.members) + self.elsewhere


def newest_first(members: Iterable[Member]) -> list[Member]:
    """Newest first; an instance without a creation time (still creating) is newest."""
    latest = datetime.max.replace(tzinfo=UTC)

    def key(m: Member) -> tuple[datetime, str]:
        created = m.created or latest
        return (created if created.tzinfo else created.replace(tzinfo=UTC), m.identifier)

    return sorted(members, key=key, reverse=True)


class _ZonePicker:
    """Round-robin over the template's zones, by fewest replicas in each."""

    def __init__(self, zones: Sequence[str], members: Iterable[Member]) -> None:
        self._zones = list(zones)
        self._counts = Counter(m.availability_zone for m in members if not m.removing)

    def pick(self) -> str | None:
        if not self._zones:
            return None
        zone = min(self._zones, key=lambda z: (self._counts[z], self._zones.index(z)))
        self._counts[zone] += 1
        return zone


def owner_tags(resource: Resource, template: ReplicaTemplate) -> list[dict[str, str]]:
    if not resource.uid:
        raise PermanentError(
            f"{resource.key}: the resource has no metadata.uid, so replicas it creates could "
            "not be told apart from anyone else's; it must come from the Kubernetes API"
        )
    ours = {OWNER_UID_TAG: resource.uid, OWNER_TAG: resource.key}
    extra = [{"Key": k, "Value": v} for k, v in template.tags if k not in ours]
    return [{"Key": k, "Value": v} for k, v in ours.items()] + extra


class _ReplicaActuator:
    """What RDS replicas and Aurora readers share: counting, creating, deleting."""

    noun = "replica"

    def __init__(self, caller: AwsCaller, *, clock: Clock = utcnow) -> None:
        self._caller = caller
        self._clock = clock

    # --- per kind ---------------------------------------------------------------

    def _target(self, resource: Resource) -> DBInstanceTarget | DBClusterTarget:
        raise NotImplementedError

    async def _read(self, resource: Resource) -> Fleet:
        raise NotImplementedError

    async def _create(
        self,
        resource: Resource,
        fleet: Fleet,
        identifier: str,
        zone: str | None,
        tags: list[dict[str, str]],
    ) -> None:
        raise NotImplementedError

    async def _delete(self, resource: Resource, member: Member) -> None:
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------

    async def _instances(
        self, resource: Resource, where: str, filters: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        target = self._target(resource)
        found: list[dict[str, Any]] = []
        marker: str | None = None
        while True:
            params: dict[str, Any] = {"Filters": filters}
            if marker:
                params["Marker"] = marker
            out = await self._caller.call(
                "rds",
                "DescribeDBInstances",
                region=target.region,
                role=RoleRef.of(target.role_arn, resource.namespace),
                resource=where,
                **params,
            )
            found.extend(out.get("DBInstances", ()))
            marker = out.get("Marker")
            if not marker:
                return found

    async def observe(self, resource: Resource) -> Capacity:
        fleet = await self._read(resource)
        return fleet.capacity(resource.uid, self.noun, warmup(resource), self._clock())

    async def apply(self, resource: Resource, desired: int, observed: Capacity) -> ApplyResult:
        target = self._target(resource)
        if observed.busy:
            return ApplyResult(observed.current, False, detail=f"not changed: {observed.busy}")
        limit = observed.maximum if observed.maximum is not None else desired
        if min(desired, limit) == observed.current:
            return ApplyResult(
                min(desired, limit),
                False,
                clamped=self._clamp_note(desired, limit, target),
                detail=f"already {observed.current} {self.noun}s",
            )
        fleet = await self._read(resource)  # act on what is there now, not on a snapshot
        now = fleet.capacity(resource.uid, self.noun, warmup(resource), self._clock())
        requested = min(desired, fleet.limit)
        clamped = self._clamp_note(desired, fleet.limit, target)
        if fleet.busy:
            return ApplyResult(now.current, False, clamped, detail=f"not changed: {fleet.busy}")
        if requested > now.current:
            return await self._scale_out(resource, fleet, requested, now, clamped)
        if requested < now.current:
            return await self._scale_in(resource, fleet, requested, clamped)
        return ApplyResult(requested, False, clamped, detail=f"already {now.current} {self.noun}s")

    def _clamp_note(
        self, desired: int, limit: int, target: DBInstanceTarget | DBClusterTarget
    ) -> str | None:
        if desired <= limit:
            return None
        what = (
            f"the {target.engine} limit of {limit} read replicas per source"
            if isinstance(target, DBInstanceTarget)
            else f"the Aurora limit of {limit} readers per cluster"
        )
        return f"desired {desired} clamped to {what}"

    async def _scale_out(
        self,
        resource: Resource,
        fleet: Fleet,
        requested: int,
        now: Capacity,
        clamped: str | None,
    ) -> ApplyResult:
        target = self._target(resource)
        room = fleet.limit - fleet.counted
        count = min(requested - now.current, room)
        if count <= 0:
            return ApplyResult(
                now.current,
                False,
                clamped,
                detail=(
                    f"{fleet.counted} {self.noun}s exist (counting ones being deleted or in "
                    f"other states) and {fleet.limit} are allowed: none created"
                ),
            )
        tags = owner_tags(resource, target.template)
        prefix = target.template.identifier_prefix or f"{fleet.source}-ro-"
        taken = {m.identifier for m in fleet.members} | fleet.protected
        zones = _ZonePicker(target.template.availability_zones, fleet.members)
        created: list[str] = []
        for _ in range(count):
            identifier = replica_identifier(prefix, taken)
            zone = zones.pick()
            await self._create(resource, fleet, identifier, zone, tags)
            taken.add(identifier)
            created.append(identifier + (f" in {zone}" if zone else ""))
        return ApplyResult(
            now.current + count,
            True,
            clamped,
            detail=f"creating {count} {self.noun}(s): " + ", ".join(created),
        )

    async def _scale_in(
        self, resource: Resource, fleet: Fleet, requested: int, clamped: str | None
    ) -> ApplyResult:
        uid = resource.uid
        own = [m for m in fleet.members if uid and m.owner_uid == uid]
        current = sum(1 for m in fleet.members if m.available or m.pending)

        def wait(why: str) -> ApplyResult:
            return ApplyResult(requested, False, clamped, detail=why)

        deleting = [m.identifier for m in own if m.removing]
        if deleting:
            return wait(f"waiting for {', '.join(deleting)} to be deleted before removing another")
        adding = [m.identifier for m in own if m.pending]
        if adding:
            return wait(
                f"waiting for {', '.join(adding)} to become available before removing a {self.noun}"
            )
        candidates = [
            m for m in newest_first(own) if m.available and m.identifier not in fleet.protected
        ]
        if not candidates:
            return wait(
                f"no available {self.noun} created by this resource to remove; "
                f"{self.noun}s it did not create are never deleted"
            )
        victim = candidates[0]
        if victim.identifier == fleet.source:  # defence in depth: never the source
            raise PermanentError(f"refusing to delete {victim.identifier}: it is the source")
        await self._delete(resource, victim)
        return ApplyResult(
            requested,
            True,
            clamped,
            detail=(
                f"deleting {self.noun} {victim.identifier}: one at a time, "
                f"{current - 1} left of the {current}"
            ),
        )

    async def close(self) -> None:
        """Nothing to release: the AwsCaller belongs to whoever made it."""


class RdsReplicaActuator(_ReplicaActuator):
    """Actuator for ``DBInstance`` targets: read replicas of a source instance."""

    noun = "replica"

    def _target(self, resource: Resource) -> DBInstanceTarget:
        if not isinstance(resource.target, DBInstanceTarget):
            raise PermanentError(
                f"{resource.key}: the RDS read replica actuator cannot scale a "
                f"{resource.target.kind} target"
            )
        return resource.target

    async def _read(self, resource: Resource) -> Fleet:
        target = self._target(resource)
        where = f"DB instance {target.name}"
        out = await self._caller.call(
            "rds",
            "DescribeDBInstances",
            region=target.region,
            role=RoleRef.of(target.role_arn, resource.namespace),
            resource=where,
            DBInstanceIdentifier=target.name,
        )
        source = out["DBInstances"][0]
        engine = str(source.get("Engine", ""))
        family = engine_family(engine)
        if family != target.engine:
            hint = (
                f"set target.engine to {family}"
                if family
                else "it cannot be a DBInstance target"
                + (
                    " (for an Aurora cluster use target kind DBCluster)"
                    if engine.startswith("aurora") or source.get("DBClusterIdentifier")
                    else ""
                )
            )
            raise PermanentError(
                f"{resource.key}: {where} runs engine {engine}, but target.engine is "
                f"{target.engine}; {hint} (the engine decides the replica limit)"
            )
        replicas = [str(r) for r in source.get("ReadReplicaDBInstanceIdentifiers", ())]
        here = [r for r in replicas if not r.startswith("arn:")]  # other regions: ARNs
        members = (
            [
                Member.from_api(d)
                for d in await self._instances(
                    resource,
                    f"read replicas of {where}",
                    [{"Name": "db-instance-id", "Values": here}],
                )
            ]
            if here
            else []
        )
        return Fleet(
            source=target.name,
            members=tuple(m for m in members if m.identifier != target.name),
            limit=ENGINE_REPLICA_LIMITS[family],
            instance_class=source.get("DBInstanceClass"),
            engine=engine,
            elsewhere=len(replicas) - len(here),
            protected=frozenset({target.name}),
        )

    async def _create(
        self,
        resource: Resource,
        fleet: Fleet,
        identifier: str,
        zone: str | None,
        tags: list[dict[str, str]],
    ) -> None:
        target = self._target(resource)
        params: dict[str, Any] = {
            "DBInstanceIdentifier": identifier,
            "SourceDBInstanceIdentifier": fleet.source,
            "Tags": tags,
        }
        instance_class = target.template.instance_class or fleet.instance_class
        if instance_class:
            params["DBInstanceClass"] = instance_class
        if zone:
            params["AvailabilityZone"] = zone
        if target.template.parameter_group_name:
            params["DBParameterGroupName"] = target.template.parameter_group_name
        await self._caller.call(
            "rds",
            "CreateDBInstanceReadReplica",
            region=target.region,
            role=RoleRef.of(target.role_arn, resource.namespace),
            resource=f"read replica {identifier} of DB instance {fleet.source}",
            **params,
        )

    async def _delete(self, resource: Resource, member: Member) -> None:
        target = self._target(resource)
        await self._caller.call(
            "rds",
            "DeleteDBInstance",
            region=target.region,
            role=RoleRef.of(target.role_arn, resource.namespace),
            resource=f"read replica {member.identifier} of DB instance {target.name}",
            DBInstanceIdentifier=member.identifier,
            SkipFinalSnapshot=True,  # required for read replicas
            DeleteAutomatedBackups=True,
        )


class AuroraReaderActuator(_ReplicaActuator):
    """Actuator for ``DBCluster`` targets: the readers of an Aurora cluster."""

    noun = "reader"

    def _target(self, resource: Resource) -> DBClusterTarget:
        if not isinstance(resource.target, DBClusterTarget):
            raise PermanentError(
                f"{resource.key}: the Aurora reader actuator cannot scale a "
                f"{resource.target.kind} target"
            )
        return resource.target

    async def _read(self, resource: Resource) -> Fleet:
        target = self._target(resource)
        where = f"DB cluster {target.name}"
        out = await self._caller.call(
            "rds",
            "DescribeDBClusters",
            region=target.region,
            role=RoleRef.of(target.role_arn, resource.namespace),
            resource=where,
            DBClusterIdentifier=target.name,
        )
        cluster = out["DBClusters"][0]
        writers = frozenset(
            str(m["DBInstanceIdentifier"])
            for m in cluster.get("DBClusterMembers", ())
            if m.get("IsClusterWriter")
        )
        instances = await self._instances(
            resource, f"instances of {where}", [{"Name": "db-cluster-id", "Values": [target.name]}]
        )
        writer_class = next(
            (i.get("DBInstanceClass") for i in instances if i["DBInstanceIdentifier"] in writers),
            None,
        )
        status = str(cluster.get("Status", ""))
        busy = None
        if status != "available":
            busy = f"{where} is {status}"
        elif not writers:
            busy = f"{where} has no writer instance; readers are only added next to a writer"
        return Fleet(
            source=target.name,
            members=tuple(
                Member.from_api(i) for i in instances if i["DBInstanceIdentifier"] not in writers
            ),
            limit=AURORA_MAX_READERS,
            instance_class=writer_class,
            engine=str(cluster.get("Engine", "aurora")),
            busy=busy,
            protected=writers | {target.name},
        )

    async def _create(
        self,
        resource: Resource,
        fleet: Fleet,
        identifier: str,
        zone: str | None,
        tags: list[dict[str, str]],
    ) -> None:
        target = self._target(resource)
        instance_class = target.template.instance_class or fleet.instance_class
        if not instance_class:
            raise PermanentError(
                f"{resource.key}: no instance class for new readers of DB cluster {fleet.source}; "
                "set target.replicaTemplate.instanceClass"
            )
        params: dict[str, Any] = {
            "DBInstanceIdentifier": identifier,
            "DBClusterIdentifier": fleet.source,
            "Engine": fleet.engine,
            "DBInstanceClass": instance_class,
            "Tags": tags,
        }
        if target.template.promotion_tier is not None:
            params["PromotionTier"] = target.template.promotion_tier
        if zone:
            params["AvailabilityZone"] = zone
        if target.template.parameter_group_name:
            params["DBParameterGroupName"] = target.template.parameter_group_name
        await self._caller.call(
            "rds",
            "CreateDBInstance",
            region=target.region,
            role=RoleRef.of(target.role_arn, resource.namespace),
            resource=f"reader {identifier} of DB cluster {fleet.source}",
            **params,
        )

    async def _delete(self, resource: Resource, member: Member) -> None:
        target = self._target(resource)
        # Aurora instances have no final snapshot of their own (the cluster has).
        await self._caller.call(
            "rds",
            "DeleteDBInstance",
            region=target.region,
            role=RoleRef.of(target.role_arn, resource.namespace),
            resource=f"reader {member.identifier} of DB cluster {target.name}",
            DBInstanceIdentifier=member.identifier,
        )
