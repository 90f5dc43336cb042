"""Which replica owns which resource (pure: no I/O, time is an argument).

Resources are split into ``shards`` by a stable hash of their uid; each shard
is owned through one Lease (coordination.k8s.io) by exactly one live replica
(see leases.py). This module holds the decisions that need no API server:

* :func:`shard_of`: a resource's shard, the same on every replica and across
  restarts (BLAKE2b of the uid, not Python's salted ``hash``);
* :func:`assign`: the shard -> replica plan every replica computes from the
  same set of live members: balanced (each member gets the floor or the ceiling
  of shards/members) and stable (rendezvous ranking, so a member joining or
  leaving moves few shards);
* :class:`Expiry`: when a lease counts as expired. As in client-go's leader
  election, expiry is judged on the observer's own clock: a lease is expired
  when its resourceVersion has not changed for ``leaseDurationSeconds`` since
  this replica first saw that version, so clock skew between replicas never
  makes a live holder look dead. Replicas watch the leases, so "first saw" is
  within a watch event's latency of the write, and :meth:`Expiry.next_expiry`
  says when to look again to take a dead holder's lease as it expires.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def fraction_of(uid: str) -> float:
    """A stable fraction in [0, 1) from a uid (not the salted ``hash``): the same on
    every replica and in every process (the phase of a resource's tick and refresh)."""
    return (_digest(uid) >> 32) / 2**32


def shard_of(uid: str, shards: int) -> int:
    """The shard of the resource with this uid, in ``range(shards)``."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    return _digest(uid) % shards


def assign(shards: int, members: Iterable[str]) -> dict[int, str]:
    """Each shard's owner among ``members`` (empty when there are none).

    Shards are taken in order; each goes to the member that ranks it highest
    (rendezvous hashing) among those that may take one more: every member ends
    with the floor or the ceiling of shards/members, and exactly
    ``shards % members`` of them with the ceiling. The plan depends only on
    the set.
    """
    people = sorted(set(members))
    if not people:
        return {}
    base, extra = divmod(shards, len(people))
    load = dict.fromkeys(people, 0)
    at_ceiling = 0
    plan: dict[int, str] = {}
    for shard in range(shards):
        ranked = sorted(people, key=lambda m: (_digest(f"{shard}/{m}"), m), reverse=True)
        owner = next(
            m for m in ranked if load[m] < base or (load[m] == base and at_ceiling < extra)
        )
        if load[owner] == base:
            at_ceiling += 1
        plan[shard] = owner
        load[owner] += 1
    return plan


@dataclass(frozen=True)
class Seen:
    """One version of a lease as this replica first saw it."""

    version: str
    holder: str
    duration: float
    first_seen: float
    """This replica's monotonic clock when it first saw ``version``."""


class Expiry:
    """Tracks lease versions as observed, to tell live holders from dead ones."""

    def __init__(self) -> None:
        self._seen: dict[str, Seen] = {}

    def observe(self, name: str, version: str, holder: str, duration: float, now: float) -> Seen:
        old = self._seen.get(name)
        if old is None or old.version != version:
            old = self._seen[name] = Seen(version, holder, duration, now)
        return old

    def seen(self, name: str) -> Seen | None:
        return self._seen.get(name)

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)

    def forget_except(self, names: Iterable[str]) -> None:
        keep = set(names)
        for name in [n for n in self._seen if n not in keep]:
            del self._seen[name]

    def free(self, name: str, now: float) -> bool:
        """Nobody holds it: no holder, or the holder stopped renewing it."""
        seen = self._seen.get(name)
        if seen is None or not seen.holder:
            return True
        return now - seen.first_seen > seen.duration

    def gone_for(self, name: str, now: float, durations: float) -> bool:
        """Held, and not renewed for ``durations`` lease durations on our clock: its
        holder is long gone (a member lease a crashed replica left behind)."""
        seen = self._seen.get(name)
        return (
            seen is not None
            and bool(seen.holder)
            and (now - seen.first_seen > durations * seen.duration)
        )

    def holder(self, name: str, now: float) -> str:
        """The live holder ('' when free)."""
        seen = self._seen.get(name)
        return "" if seen is None or self.free(name, now) else seen.holder

    def next_expiry(self, now: float, *, ignore: str = "") -> float | None:
        """When the next held lease expires unless it is renewed first (None: none held
        but by ``ignore``). A lease seen already expired does not count: it is free now."""
        due = [
            s.first_seen + s.duration
            for s in self._seen.values()
            if s.holder and s.holder != ignore and s.first_seen + s.duration >= now
        ]
        return min(due, default=None)
