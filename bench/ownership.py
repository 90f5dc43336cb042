"""Who decided each tier, and when: the evidence `bench.scale --replicas` reports.

Every replica exports ``stackscaler_last_decision_timestamp_seconds`` for the
resources it ticks. Sampled often enough (every ``--sample-every`` s, well
under one poll), the distinct values a replica's gauge shows for a tier are
that replica's decisions of it. From them, per tier:

* the owners in time order. Exactly one replica acts on a resource at any
  moment, so each owner's decisions form one run: a tier decided by A, then
  B, then A again was acted on by A after B took it (a *split* run); and two
  replicas deciding it less than ``close`` seconds apart acted on it at about
  the same time (a *close* handover);
* after a replica is killed, how long its tiers waited for another replica's
  first decision (the handover), and after one joins, how long until it
  decided the tiers it took;
* from each replica's log ("took shard", "handed over"), which shards it
  held and when another replica took them over.

Pure: no I/O, no clock; the benchmark feeds it samples.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class OwnerLog:
    """Every distinct decision time seen per (tier, replica)."""

    decisions: dict[str, dict[str, set[float]]] = field(default_factory=dict)
    """tier -> replica -> decision times (epoch s)."""
    last: dict[str, float] = field(default_factory=dict)
    """tier -> its latest decision seen, by any replica (a killed one's too)."""

    def add(self, replica: str, gauges: Mapping[str, float]) -> None:
        """One scrape of ``replica``: tier -> its last decision time."""
        for tier, moment in gauges.items():
            if moment > 0:
                self.decisions.setdefault(tier, {}).setdefault(replica, set()).add(moment)
                self.last[tier] = max(moment, self.last.get(tier, 0.0))

    def sequence(self, tier: str) -> list[tuple[float, str]]:
        """(time, replica) of every decision of ``tier`` seen, in time order."""
        by = self.decisions.get(tier, {})
        return sorted((t, r) for r, times in by.items() for t in times)

    def owners_between(self, start: float, end: float) -> dict[str, set[str]]:
        """tier -> the replicas that decided it in [start, end)."""
        out: dict[str, set[str]] = {}
        for tier, by in self.decisions.items():
            acted = {r for r, times in by.items() if any(start <= t < end for t in times)}
            if acted:
                out[tier] = acted
        return out


@dataclass(frozen=True)
class Ownership:
    tiers: int
    """Tiers with at least one decision seen."""
    handovers: int
    """Changes of owner, all tiers."""
    split: tuple[str, ...]
    """Tiers an owner decided again after another replica had decided them."""
    close: tuple[tuple[str, float], ...]
    """(tier, seconds) of handovers closer than ``close`` seconds."""
    shortest_handover: float | None
    """The shortest gap between two owners' decisions of one tier (s)."""


def ownership(log: OwnerLog, tiers: Iterable[str], *, close: float) -> Ownership:
    """Check every tier's owners: one run each, and handovers no closer than ``close``."""
    seen = handovers = 0
    split: list[str] = []
    near: list[tuple[str, float]] = []
    shortest: float | None = None
    for tier in tiers:
        seq = log.sequence(tier)
        if not seq:
            continue
        seen += 1
        done: set[str] = set()
        for (t0, r0), (t1, r1) in itertools.pairwise(seq):
            if r0 == r1:
                continue
            handovers += 1
            done.add(r0)
            gap = t1 - t0
            shortest = gap if shortest is None else min(shortest, gap)
            if gap < close:
                near.append((tier, round(gap, 3)))
            if r1 in done:
                split.append(tier)
                break
    return Ownership(seen, handovers, tuple(split), tuple(near), shortest)


def taken_over(
    log: OwnerLog, lost: str, tiers: Iterable[str], since: float
) -> tuple[dict[str, float], list[str]]:
    """After replica ``lost`` stopped at ``since``: for each of ``tiers`` (the ones it
    owned), the seconds until another replica's first decision of it; and the tiers
    no other replica has decided since."""
    waited: dict[str, float] = {}
    orphans: list[str] = []
    for tier in tiers:
        after = [t for t, r in log.sequence(tier) if r != lost and t >= since]
        if after:
            waited[tier] = min(after) - since
        else:
            orphans.append(tier)
    return waited, orphans


def joined(log: OwnerLog, replica: str, since: float) -> dict[str, float]:
    """After ``replica`` started at ``since``: tier -> seconds until its first decision."""
    out: dict[str, float] = {}
    for tier, by in log.decisions.items():
        mine = [t for t in by.get(replica, ()) if t >= since]
        if mine:
            out[tier] = min(mine) - since
    return out


def owned_at(log: OwnerLog, replica: str, start: float, end: float) -> list[str]:
    """The tiers ``replica`` decided in [start, end)."""
    return sorted(t for t, acted in log.owners_between(start, end).items() if replica in acted)


_TOOK = re.compile(r"^took shard (\d+) ")
_GAVE = re.compile(r"^shard (\d+) handed over ")


def shard_moves(records: Iterable[Mapping[str, object]]) -> list[tuple[float, str, int]]:
    """(time, "took" or "gave", shard) from one replica's JSON log records, in order."""
    out: list[tuple[float, str, int]] = []
    for rec in records:
        if rec.get("logger") != "stackscaler.leases":
            continue
        message, stamp = rec.get("message"), rec.get("time")
        if not isinstance(message, str) or not isinstance(stamp, str):
            continue
        for what, pattern in (("took", _TOOK), ("gave", _GAVE)):
            m = pattern.match(message)
            if m:
                moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                out.append((moment, what, int(m.group(1))))
    return sorted(out)


def held_at(moves: Iterable[tuple[float, str, int]], moment: float) -> set[int]:
    """The shards a replica held at ``moment``, by its own log."""
    held: set[int] = set()
    for t, what, shard in sorted(moves):
        if t > moment:
            break
        if what == "took":
            held.add(shard)
        else:
            held.discard(shard)
    return held


def first_take(
    moves: Mapping[str, Iterable[tuple[float, str, int]]], shard: int, since: float
) -> tuple[str, float] | None:
    """The first replica to take ``shard`` at or after ``since``, and when."""
    found = [
        (t, name)
        for name, own in moves.items()
        for t, what, s in own
        if what == "took" and s == shard and t >= since
    ]
    if not found:
        return None
    t, name = min(found)
    return name, t
