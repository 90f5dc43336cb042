"""Which resource owns which target: the older one keeps it (pure, in memory).

Two resources that name the same target (the same Auto Scaling group, the
same source database, the same replication group, the same workload) would
each take the other's changes for out-of-band edits and undo them. The
operator registers every resource it sees, before its first tick, under the
key of its target; the oldest (creation time, then UID) owns the key, every
other claimant reports a ``Conflict`` condition and does nothing until the
owner is deleted or moves to another target.

Each operator process knows only the resources it watches: two shards whose
selectors split the claimants of one target cannot see each other (say so in
docs/security.md; give one target one resource).
"""

from __future__ import annotations

from dataclasses import dataclass

from stackscaler.model.spec import Resource, TableTarget, WorkloadTarget
from stackscaler.tenancy import role_account

TargetKey = tuple[str, ...]


@dataclass(frozen=True, order=True)
class Claimant:
    created: str
    """metadata.creationTimestamp (RFC 3339, UTC: sorts as text)."""
    uid: str
    name: str
    """``Kind namespace/name``, for messages."""


def target_key(resource: Resource, default_region: str | None = None) -> TargetKey:
    """What makes two targets the same: kind, account, region and name."""
    target = resource.target
    if isinstance(target, WorkloadTarget):
        return ("Workload", resource.namespace or "default", target.kind, target.name)
    account = (role_account(target.role_arn) if target.role_arn else None) or "(own)"
    region = target.region or default_region or "(default)"
    kind = "Database" if target.kind in ("DBInstance", "DBCluster") else target.kind
    if isinstance(target, TableTarget):  # one table: a read, a write and each index's
        where = target.name + (f" index {target.index}" if target.index else "")
        return (kind, account, region, f"{where} {target.dimension.value.lower()} capacity")
    return (kind, account, region, target.name)


def describe(key: TargetKey) -> str:
    if key[0] == "Workload":
        return f"{key[2]} {key[1]}/{key[3]}"
    return f"{key[0]} {key[3]} (account {key[1]}, region {key[2]})"


class Claims:
    def __init__(self) -> None:
        self._by_uid: dict[str, tuple[TargetKey, Claimant]] = {}
        self._by_key: dict[TargetKey, set[Claimant]] = {}

    def __len__(self) -> int:
        return len(self._by_uid)

    def claim(self, key: TargetKey, claimant: Claimant) -> None:
        """Register (or move) ``claimant``'s claim on ``key``."""
        old = self._by_uid.get(claimant.uid)
        if old is not None and old == (key, claimant):
            return
        self.release(claimant.uid)
        self._by_uid[claimant.uid] = (key, claimant)
        self._by_key.setdefault(key, set()).add(claimant)

    def release(self, uid: str) -> None:
        old = self._by_uid.pop(uid, None)
        if old is None:
            return
        key, claimant = old
        holders = self._by_key.get(key)
        if holders is not None:
            holders.discard(claimant)
            if not holders:
                del self._by_key[key]

    def owner(self, key: TargetKey) -> Claimant | None:
        holders = self._by_key.get(key)
        return min(holders) if holders else None
