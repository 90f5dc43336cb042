"""Leases on the real API server: one owner per shard at every moment, failover, shards.

Several ``Leases`` in one process (one per would-be replica, each with its own
identity) against the control plane, with short durations (3 s lease, 2 s
renew deadline, 0.4 s rounds) so the failovers fit in a test. Ownership is
sampled every 50 ms: no sample may show a shard owned twice. Process-level
failures (SIGKILL, SIGSTOP, rolling restarts of `stackscaler run`) are in
tests/faults/test_replicas.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest
from kubernetes import client

from stackscaler.leases import Leases, LeaseSettings

DURATION, RENEW, ROUND = 3.0, 2.0, 0.4


class Fleet:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.replicas: dict[str, Leases] = {}
        self.doubles: list[tuple[int, list[str]]] = []
        self.changes: list[tuple[str, frozenset[int]]] = []

    def add(
        self,
        identity: str,
        shards: int,
        timing: tuple[float, float, float] = (DURATION, RENEW, ROUND),
    ) -> Leases:
        settings = LeaseSettings(
            namespace=self.namespace,
            identity=identity,
            group="t",
            shards=shards,
            lease_duration=timing[0],
            renew_deadline=timing[1],
            retry_period=timing[2],
        )
        leases = Leases(
            settings, self.api, on_change=lambda held: self.changes.append((identity, held))
        )
        leases.start()
        self.replicas[identity] = leases
        return leases

    def owners(self, shard: int) -> list[str]:
        return [i for i, r in self.replicas.items() if r.owns_shard(shard)]

    async def sample(self, shards: int) -> None:
        while True:
            for shard in range(shards):
                owners = self.owners(shard)
                if len(owners) > 1:
                    self.doubles.append((shard, owners))
            await asyncio.sleep(0.05)

    async def until(self, check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.05)
        assert check(), what

    def pause(self, identity: str) -> None:
        """As SIGSTOP would: no more rounds, nothing released."""
        task = self.replicas[identity]._task
        assert task is not None
        task.cancel()

    async def close(self) -> None:
        for r in self.replicas.values():
            with contextlib.suppress(Exception):
                await r.stop()


@pytest.fixture
async def fleet(api_client: client.ApiClient, namespace: str) -> AsyncIterator[Fleet]:
    f = Fleet(api_client, namespace)
    try:
        yield f
    finally:
        await f.close()


def _held(fleet: Fleet, shards: int) -> Counter[str]:
    return Counter(o for s in range(shards) for o in fleet.owners(s))


async def test_three_replicas_one_shard_exactly_one_acts_through_pauses_and_stops(
    fleet: Fleet,
) -> None:
    sampler = asyncio.ensure_future(fleet.sample(1))
    try:
        for name in ("a", "b", "c"):
            fleet.add(name, shards=1)
        await fleet.until(lambda: len(fleet.owners(0)) == 1, "one leader")
        first = fleet.owners(0)[0]

        # a pause longer than the lease: the paused one stops acting on its own clock,
        # and another takes over only after the lease has gone stale on its clock
        fleet.pause(first)
        await fleet.until(lambda: not fleet.replicas[first].owns_shard(0), "the paused stops")
        await fleet.until(
            lambda: fleet.owners(0) not in ([], [first]), "a standby takes over", timeout=15
        )
        second = fleet.owners(0)[0]
        assert second != first

        # a graceful stop hands over at once (no lease to wait out)
        await fleet.replicas[second].stop()
        third = ({"a", "b", "c"} - {first, second}).pop()
        await fleet.until(lambda: fleet.owners(0) == [third], "the last one takes over")
    finally:
        sampler.cancel()
    assert fleet.doubles == []


async def test_shards_spread_over_replicas_and_move_when_one_joins_or_leaves(
    fleet: Fleet,
) -> None:
    shards = 6
    sampler = asyncio.ensure_future(fleet.sample(shards))
    try:
        fleet.add("a", shards)
        await fleet.until(lambda: _held(fleet, shards) == Counter(a=6), "a alone owns all")
        fleet.add("b", shards)
        fleet.add("c", shards)
        await fleet.until(lambda: _held(fleet, shards) == Counter(a=2, b=2, c=2), "two shards each")
        fleet.pause("c")  # c dies without a word: its shards move after the lease
        await fleet.until(
            lambda: _held(fleet, shards) == Counter(a=3, b=3), "c's shards taken", timeout=15
        )
    finally:
        sampler.cancel()
    assert fleet.doubles == []
    # every replica was told about its shards (the operator starts and stops tasks then)
    assert any(i == "c" and len(h) == 2 for i, h in fleet.changes)


async def test_replicas_with_different_shard_counts_take_nothing_new(fleet: Fleet) -> None:
    fleet.add("old", shards=1)
    await fleet.until(lambda: fleet.owners(0) == ["old"], "old leads")
    new = fleet.add("new", shards=2)
    await asyncio.sleep(DURATION)  # several rounds
    assert new.held() == frozenset()
    assert fleet.owners(0) == ["old"]  # the holder keeps what it holds
    await fleet.replicas["old"].stop()  # once the old one is gone, the new one takes over
    await fleet.until(lambda: new.held() == frozenset({0, 1}), "new owns both shards")


async def test_a_released_shard_is_taken_when_the_watch_shows_it_not_at_the_next_round(
    fleet: Fleet,
) -> None:
    # rounds every 20 s: a standby that only looked at its rounds would take the shard
    # up to 20 s after the holder left; the watch wakes it as soon as the lease is released
    slow = (60.0, 40.0, 20.0)
    fleet.add("a", shards=1, timing=slow)
    await fleet.until(lambda: fleet.owners(0) == ["a"], "a leads")
    fleet.add("b", shards=1, timing=slow)
    await asyncio.sleep(2.0)  # b's first round (at its start) is behind it: the next is 18 s on
    await fleet.replicas["a"].stop()
    await fleet.until(lambda: fleet.owners(0) == ["b"], "b takes over", timeout=10)


async def test_a_member_gone_for_four_lease_durations_is_swept_and_comes_back_if_it_returns(
    fleet: Fleet,
) -> None:
    coordination = client.CoordinationV1Api(fleet.api)

    def members() -> set[str]:
        found = coordination.list_namespaced_lease(fleet.namespace)
        return {i.metadata.name for i in found.items if "-member-" in i.metadata.name}

    fleet.add("a", shards=2)
    paused = fleet.add("b", shards=2)
    await fleet.until(lambda: _held(fleet, 2) == Counter(a=1, b=1), "one shard each")
    fleet.pause("b")  # as a SIGKILL would leave it: its member lease stays behind
    await fleet.until(lambda: _held(fleet, 2) == Counter(a=2), "a takes both", timeout=15)
    assert members() == {"t-member-a", "t-member-b"}  # not swept after one duration
    await fleet.until(lambda: members() == {"t-member-a"}, "b's lease swept", timeout=20)
    paused.start()  # b comes back: its next round makes its member lease again
    await fleet.until(lambda: members() == {"t-member-a", "t-member-b"}, "b is back")
    await fleet.until(lambda: _held(fleet, 2) == Counter(a=1, b=1), "one shard each again")
