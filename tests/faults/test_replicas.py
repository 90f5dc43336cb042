"""Replicas: two and three `stackscaler run` processes against one control plane and moto.

Every replica runs with ``--shards`` and coordinates through Leases
(operator/stackscaler/leases.py) in the test's namespace, under a lease group
of its own. Each replica's AWS calls go through its own counting proxy in
front of moto (:class:`~tests.faults.support.CountingProxy`), so every
SetDesiredCapacity that reaches moto is attributed to the replica that sent
it. The load is an SQS backlog (100 messages per worker): sending messages
changes it at once, with no CloudWatch period to wait for.

What every scenario checks from moto's side: the SetDesiredCapacity requests
for the group, in order, are exactly one per scale action (the ScaledOut
Events and ``status.appliedCapacity`` tell the actions): none sent twice, none
lost, each by a replica that owned the resource.

* three replicas, one shard: one acts, the standbys make no call about the
  resource and no decision; SIGKILL the active one: the replica the plan names
  among the survivors takes over and scales the next load;
* SIGSTOP the active replica for 2.5 lease durations while the load changes:
  the standby takes over and scales; after SIGCONT the paused one sends
  nothing about the resource until it has taken the lease again;
* a rolling restart (SIGTERM the active one, start a replacement, SIGTERM the
  other): each stopped replica hands its lease over at once, decisions carry
  on, one write per action;
* four shards, two replicas, eight pools: every pool decided by exactly one
  replica, the one holding its shard's lease; SIGKILL one: the survivor takes
  every shard and scales every pool once.

No test asserts on elapsed time; waits are bounded polls.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from stackscaler.sharding import assign, shard_of
from tests.e2e.conftest import (
    Aws,
    Kube,
    OperatorProcess,
    decisions,
    eventually,
    parse_time,
    suffix,
)
from tests.faults.support import IMMEDIATE, CountingProxy, Write, worker_pool

pytestmark = pytest.mark.controlplane

KIND = "WorkerPool"
PER_WORKER = 100
POLL = 5
LEASE = 6.0
"""``--lease-duration`` of every replica. With the default 15 s a failover takes about
17 s (a standby waits one lease duration on its own clock, then a round); 6 s keeps
each failover near 7 s so the scenarios fit, while a holder still renews every 0.8 s
and stops acting 4 s after its last renewal: five rounds of a few API calls each, which
a loaded 2-core machine makes easily."""
TAKEOVER = 4 * LEASE + 4 * POLL
"""Upper bound of a wait for a failover and the first tick after it (about one lease
duration plus one tick; the rest is slack for a loaded machine, not a claim)."""
STOP_FOR = 2.5 * LEASE
"""How long the paused replica stays stopped: well past its lease."""


# --- replicas, each behind its own counting proxy -------------------------------------


@dataclass
class Replica:
    identity: str
    proxy: CountingProxy
    op: OperatorProcess

    def decisions(self, ns: str, name: str) -> int:
        return decisions(self.op, KIND, ns, name)

    def set_desired_calls(self) -> int:
        """SetDesiredCapacity calls as the replica counts them itself (its /metrics)."""
        return int(
            sum(self.op.samples("stackscaler_aws_calls_total", {"operation": "SetDesiredCapacity"}))
        )

    def logged(self, needle: str, *, since: float = 0.0) -> list[float]:
        """Times (epoch seconds) of the replica's log records containing ``needle``."""
        return [
            parse_time(r["time"])
            for r in self.op.records()
            if needle in str(r.get("message", "")) and "time" in r
            if parse_time(r["time"]) >= since
        ]


class Fleet:
    """Replicas sharing one lease group in the test's namespace."""

    def __init__(
        self,
        *,
        operator: Callable[..., OperatorProcess],
        proxies: Callable[[str], CountingProxy],
        api_client: client.ApiClient,
        namespace: str,
        shards: int,
    ) -> None:
        self.operator, self.proxies = operator, proxies
        self.leases = client.CoordinationV1Api(api_client)
        self.namespace, self.shards = namespace, shards
        self.group = f"replicas-{suffix()}"
        self.replicas: dict[str, Replica] = {}

    def start(self, identity: str) -> Replica:
        proxy = self.proxies(identity)
        op = self.operator(
            self.namespace,
            env={"STACKSCALER_AWS_ENDPOINT_URL": proxy.endpoint},
            args=(
                "--shards",
                str(self.shards),
                "--lease-namespace",
                self.namespace,
                "--lease-group",
                self.group,
                "--identity",
                identity,
                "--lease-duration",
                str(LEASE),
            ),
        )
        replica = self.replicas[identity] = Replica(identity, proxy, op)
        return replica

    def holders(self) -> dict[int, str]:
        """Each shard lease's holder ('' when released or not created yet)."""
        out: dict[int, str] = {}
        for shard in range(self.shards):
            try:
                lease = self.leases.read_namespaced_lease(
                    f"{self.group}-shard-{shard}", self.namespace
                )
                out[shard] = str(lease.spec.holder_identity or "")
            except ApiException as exc:
                if exc.status != 404:
                    raise
                out[shard] = ""
        return out

    def member(self, identity: str) -> bool:
        """Does the replica's member lease exist?"""
        try:
            self.leases.read_namespaced_lease(f"{self.group}-member-{identity}", self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def settled(self, live: list[Replica], *, what: str) -> dict[int, Replica]:
        """Wait until every shard lease is held as the plan for ``live`` says; the owners."""
        plan = assign(self.shards, [r.identity for r in live])

        def check() -> dict[int, str]:
            holders = self.holders()
            assert holders == plan, f"leases held {holders}, the plan for the live set {plan}"
            return holders

        holders = eventually(check, what=what, timeout=TAKEOVER)
        return {shard: self.replicas[who] for shard, who in holders.items()}


@pytest.fixture
def fleet(
    operator: Callable[..., OperatorProcess],
    counting_proxies: Callable[[str], CountingProxy],
    api_client: client.ApiClient,
    namespace: str,
) -> Callable[[int], Fleet]:
    def make(shards: int) -> Fleet:
        return Fleet(
            operator=operator,
            proxies=counting_proxies,
            api_client=api_client,
            namespace=namespace,
            shards=shards,
        )

    return make


# --- the resource and its ledger -----------------------------------------------------


@dataclass
class Pool:
    """One WorkerPool on its own group and queue; its backlog is its load."""

    aws: Aws
    kube: Kube
    namespace: str
    name: str
    group: str
    queue: str
    url: str
    fleet: Fleet
    backlog: int = 0

    @classmethod
    def make(cls, fleet: Fleet, aws: Aws, kube: Kube, name: str, *, desired: int) -> Pool:
        s = suffix()
        group, queue = f"{name}-{s}", f"{name}-jobs-{s}"
        aws.group_with_template(group, desired=desired, max_size=20)
        pool = cls(aws, kube, fleet.namespace, name, group, queue, aws.queue(queue), fleet)
        pool.load(desired)
        return pool

    def apply(self, *, poll: int = POLL) -> str:
        self.kube.apply(
            worker_pool(
                self.namespace,
                self.name,
                self.group,
                self.queue,
                per_worker=PER_WORKER,
                min_capacity=1,
                max_capacity=20,
                behavior=IMMEDIATE,
                poll=poll,
            )
        )
        return str(self.kube.get(KIND, self.namespace, self.name)["metadata"]["uid"])

    def load(self, workers: int) -> None:
        """Grow the backlog to ``workers`` workers' worth (it only grows: nothing consumes)."""
        target = workers * PER_WORKER
        assert target >= self.backlog
        # SQS takes 10 messages a call: the replicas' backlog reads wait in their proxies
        # meanwhile, so that no tick reads a backlog half sent (and scales to it)
        gates = [r.proxy for r in self.fleet.replicas.values()]
        for proxy in gates:
            proxy.hold("GetQueueAttributes")
        try:
            self.aws.send(self.url, target - self.backlog)
        finally:
            for proxy in gates:
                proxy.release("GetQueueAttributes")
        self.backlog = target

    def needs(self) -> int:
        return math.ceil(self.backlog / PER_WORKER)

    def wait_desired(self, value: int, *, what: str, timeout: float = TAKEOVER) -> None:
        def check() -> None:
            assert self.aws.desired(self.group) == value, self.aws.desired(self.group)
            status = self.kube.status(KIND, self.namespace, self.name)
            assert status.get("appliedCapacity") == value, status.get("lastDecision")
            assert "pendingAction" not in status, status["pendingAction"]

        eventually(check, what=what, timeout=timeout)

    def actions(self) -> list[int]:
        """The target capacity of every ScaledOut/ScaledIn Event, in order."""
        found = [
            e.message
            for e in self.kube.events(KIND, self.namespace, self.name)
            if e.reason in ("ScaledOut", "ScaledIn")
        ]
        return [int(m.split(":")[0].split("->")[1]) for m in found]

    def mentioned(self, replica: Replica, *, since: float = 0.0) -> list[tuple[float, str]]:
        """Requests of ``replica`` about this pool's group or queue since ``since``."""
        return replica.proxy.naming(self.group, self.queue, since=since)


def settle(replica: Replica, pool: Pool, ticks: int = 2, *, timeout: float = TAKEOVER) -> None:
    """Wait for ``ticks`` more decisions of the owner: a late second write would show."""
    seen = replica.decisions(pool.namespace, pool.name)

    def check() -> None:
        now = replica.decisions(pool.namespace, pool.name)
        assert now >= seen + ticks, f"{now - seen} decision(s) so far"

    eventually(check, what=f"{ticks} more decisions of {replica.identity}", timeout=timeout)


def writes(pool: Pool, replicas: list[Replica]) -> list[Write]:
    """Every SetDesiredCapacity for the pool's group that reached moto, in order."""
    found = [w for r in replicas for w in r.proxy.writes_to(pool.group)]
    return sorted(found, key=lambda w: w.at)


def assert_one_write_per_action(
    pool: Pool, replicas: list[Replica], expected: list[tuple[str, int]]
) -> None:
    """Moto saw exactly the expected writes (replica, value), one per scale action."""
    sent = writes(pool, replicas)
    assert [(w.proxy, w.desired) for w in sent] == expected, sent
    assert all(w.status == 200 for w in sent), sent
    assert pool.actions() == [value for _, value in expected], (
        "the scale actions (Events) and the writes moto saw differ",
        pool.actions(),
        sent,
    )
    last = expected[-1][1]
    assert pool.aws.desired(pool.group) == last
    status = pool.kube.status(KIND, pool.namespace, pool.name)
    assert status["appliedCapacity"] == last and "pendingAction" not in status
    others = [w for r in replicas for w in r.proxy.writes if w.operation != "SetDesiredCapacity"]
    assert not others, others


def assert_standby(replica: Replica, pools: list[Pool]) -> None:
    """No ticking task: no decision, no AWS call about the pools, no write."""
    for pool in pools:
        assert replica.decisions(pool.namespace, pool.name) == 0
        assert not pool.mentioned(replica), pool.mentioned(replica)
    assert replica.set_desired_calls() == 0
    assert not replica.proxy.writes


def first_decision(replica: Replica, pool: Pool) -> None:
    def check() -> None:
        assert replica.decisions(pool.namespace, pool.name) >= 1

    eventually(check, what=f"{replica.identity}'s first decision of {pool.name}")


def no_problems(*replicas: Replica) -> None:
    for r in replicas:
        assert not r.op.problems(), (r.identity, r.op.problems())


# --- the scenarios -------------------------------------------------------------------


def test_three_replicas_one_acts_and_a_standby_takes_over_after_sigkill(
    aws: Aws, kube: Kube, fleet: Callable[[int], Fleet], namespace: str
) -> None:
    f = fleet(1)
    pool = Pool.make(f, aws, kube, "workers", desired=2)
    replicas = [f.start(name) for name in ("r1", "r2", "r3")]
    active = f.settled(replicas, what="one replica holding the shard")[0]
    standbys = [r for r in replicas if r is not active]

    pool.apply()
    first_decision(active, pool)
    pool.load(4)
    pool.wait_desired(4, what="the active replica scaling 2 -> 4")
    settle(active, pool)
    for r in standbys:
        assert_standby(r, [pool])
    assert active.set_desired_calls() == 1

    active.op.kill()  # SIGKILL: its leases stay until they expire
    pool.load(7)
    heir = f.settled(standbys, what="a standby taking the shard over")[0]
    pool.wait_desired(7, what=f"{heir.identity} scaling 4 -> 7 after the failover")
    settle(heir, pool)

    assert_one_write_per_action(pool, replicas, [(active.identity, 4), (heir.identity, 7)])
    assert heir.set_desired_calls() == 1
    idle = [r for r in standbys if r is not heir]
    for r in idle:
        assert_standby(r, [pool])
    assert heir.logged("took shard 0")
    no_problems(*standbys)


def test_a_replica_paused_past_its_lease_sends_nothing_until_it_holds_it_again(
    aws: Aws, kube: Kube, fleet: Callable[[int], Fleet], namespace: str
) -> None:
    f = fleet(1)
    pool = Pool.make(f, aws, kube, "workers", desired=2)
    replicas = [f.start(name) for name in ("r1", "r2")]
    paused = f.settled(replicas, what="one replica holding the shard")[0]
    (other,) = (r for r in replicas if r is not paused)
    pool.apply()
    first_decision(paused, pool)
    pool.load(4)
    pool.wait_desired(4, what="the active replica scaling 2 -> 4")
    settle(paused, pool)
    assert paused.proxy.writes_to(pool.group)

    assert paused.op.proc is not None
    stopped = time.time()
    paused.op.proc.send_signal(signal.SIGSTOP)  # a pause: no renewal, no tick, no exit
    try:
        pool.load(7)
        f.settled([other], what="the other replica taking the shard while one is paused")
        pool.wait_desired(7, what=f"{other.identity} scaling 4 -> 7 during the pause")
        time.sleep(max(0.0, stopped + STOP_FOR - time.time()))  # keep it stopped past its lease
        pool.load(9)  # due at the next tick: whoever acts then must be the only one
    finally:
        paused.op.proc.send_signal(signal.SIGCONT)
    resumed = time.time()

    # the live set is the one before the pause: the plan gives the shard back to it
    assert f.settled(replicas, what="the shard back with the resumed replica")[0] is paused
    retaken = paused.logged("took shard 0", since=resumed)
    assert retaken, "the resumed replica never logged taking the shard again"
    # from SIGSTOP until it held the lease again it made no call about the pool
    early = [(t, op) for t, op in pool.mentioned(paused, since=stopped) if t < retaken[0]]
    assert not early, f"the resumed replica called AWS before it held the lease again: {early}"

    pool.wait_desired(9, what="7 -> 9 by exactly one replica")
    settle(paused, pool)
    sent = writes(pool, replicas)
    expected = [(paused.identity, 4), (other.identity, 7), (sent[-1].proxy, 9)]
    assert_one_write_per_action(pool, replicas, expected)
    if sent[-1].proxy == paused.identity:
        assert sent[-1].at > retaken[0]
    # each replica's own count agrees with what its proxy carried to moto
    for r in replicas:
        assert r.set_desired_calls() == len(r.proxy.writes_to(pool.group))
    no_problems(*replicas)


def test_a_rolling_restart_hands_over_and_neither_doubles_nor_loses_a_write(
    aws: Aws, kube: Kube, fleet: Callable[[int], Fleet], namespace: str
) -> None:
    f = fleet(1)
    pool = Pool.make(f, aws, kube, "workers", desired=2)
    first, second = f.start("r1"), f.start("r2")
    owner = f.settled([first, second], what="one replica holding the shard")[0]
    pool.apply()
    first_decision(owner, pool)
    pool.load(4)
    pool.wait_desired(4, what="2 -> 4 before the rollout")
    settle(owner, pool)
    expected = [(owner.identity, 4)]

    live = [first, second]
    other = second if owner is first else first
    # the active replica first, then the other original one, each replaced by a new one
    for step, (leaving, new, workers) in enumerate(((owner, "r3", 7), (other, "r4", 9))):
        live.remove(leaving)
        assert leaving.op.stop() == 0  # SIGTERM: a clean exit
        # it handed over at once: its shard lease released (or already taken), no member lease
        held = f.holders()[0]
        assert held != leaving.identity, f"step {step}: {leaving.identity} still holds the shard"
        assert not f.member(leaving.identity)
        live.append(f.start(new))
        owner = f.settled(live, what=f"step {step}: the shard with the plan's replica")[0]
        pool.load(workers)
        pool.wait_desired(workers, what=f"step {step}: {owner.identity} scaling to {workers}")
        settle(owner, pool)
        expected.append((owner.identity, workers))

    assert_one_write_per_action(pool, list(f.replicas.values()), expected)
    no_problems(*f.replicas.values())


def test_four_shards_two_replicas_each_pool_decided_by_one_and_all_by_the_survivor(
    aws: Aws, kube: Kube, fleet: Callable[[int], Fleet], namespace: str
) -> None:
    f = fleet(4)
    a, b = f.start("r1"), f.start("r2")
    owners = f.settled([a, b], what="four shards split between two replicas")
    assert sorted(sum(1 for o in owners.values() if o is r) for r in (a, b)) == [2, 2]

    # pools until each replica has at least two (the shard is a hash of the uid)
    pools: dict[str, Pool] = {}
    owner_of: dict[str, Replica] = {}
    while len(pools) < 8 or min(sum(o is r for o in owner_of.values()) for r in (a, b)) < 2:
        assert len(pools) < 24, "the uid hash put almost every pool on one replica"
        pool = Pool.make(f, aws, kube, f"pool-{len(pools)}", desired=2)
        uid = pool.apply()
        pools[pool.name] = pool
        owner_of[pool.name] = owners[shard_of(uid, 4)]

    def decided() -> dict[str, set[str]]:
        seen = {
            r.identity: {name for name, p in pools.items() if r.decisions(namespace, p.name)}
            for r in (a, b)
        }
        for r in (a, b):
            mine = {name for name, o in owner_of.items() if o is r}
            assert seen[r.identity] == mine, (r.identity, seen[r.identity], mine)
        return seen

    seen = eventually(decided, what="every pool decided by its shard's owner")
    assert not seen[a.identity] & seen[b.identity]
    assert seen[a.identity] | seen[b.identity] == set(pools)
    for r in (a, b):  # and the other replica's pools never even reached its proxy
        for name, pool in pools.items():
            if owner_of[name] is not r:
                assert not pool.mentioned(r), (r.identity, name)

    victim, survivor = (a, b) if owner_of["pool-0"] is a else (b, a)
    victim.op.kill()
    for pool in pools.values():
        pool.load(4)
    f.settled([survivor], what="every shard with the survivor")

    def all_on_the_survivor() -> None:
        for pool in pools.values():
            assert pool.aws.desired(pool.group) == 4, pool.name
        left = {name for name, p in pools.items() if not survivor.decisions(namespace, p.name)}
        assert not left, f"not decided by the survivor yet: {sorted(left)}"

    eventually(all_on_the_survivor, what="every pool scaled by the survivor", timeout=TAKEOVER)
    for pool in pools.values():
        pool.wait_desired(4, what=f"{pool.name} recorded at 4")
    settle(survivor, pools["pool-0"])  # ticks are aligned: every pool ticked twice more
    for pool in pools.values():  # the victim wrote nothing, before or after its death
        assert_one_write_per_action(pool, [a, b], [(survivor.identity, 4)])
    assert survivor.set_desired_calls() == len(pools)
    no_problems(survivor)


SLOW_POLL = 30
"""The poll interval of the paused-mid-tick scenario: a tick may take 0.8 of it (24 s)
to observe, so the paused tick is still alive when it resumes after the failover."""


def test_a_tick_paused_in_flight_past_the_lease_writes_nothing_after_it_resumes(
    aws: Aws, kube: Kube, fleet: Callable[[int], Fleet], namespace: str
) -> None:
    """The fence: the active replica's tick has read the backlog (4 workers' worth) and
    waits for the group's capacity (its proxy holds the call: a slow network) when the
    replica is SIGSTOPped past its lease. The other replica takes over and scales
    4 -> 7 for the new backlog. Then the held answer (7) is delivered and the paused
    replica resumes: its tick, started while it owned the pool, must not act on its
    stale reading (7 -> 4) now that it no longer does (leases.py: "again right before
    each AWS write")."""
    f = fleet(1)
    pool = Pool.make(f, aws, kube, "workers", desired=4)
    replicas = [f.start(name) for name in ("r1", "r2")]
    paused = f.settled(replicas, what="one replica holding the shard")[0]
    (other,) = (r for r in replicas if r is not paused)
    pool.apply(poll=SLOW_POLL)
    first_decision(paused, pool)

    describe = "DescribeAutoScalingGroups"
    paused.proxy.hold(describe)
    try:

        def tick_waiting() -> float:
            assert paused.proxy.held[describe] >= 1, "no tick has asked for the capacity yet"
            arrived = max(t for t, op in pool.mentioned(paused) if op == describe)
            read = [t for t, op in list(paused.proxy.done) if op == "GetQueueAttributes"]
            # this tick's read: back within a few seconds of its capacity request, before or
            # after it (both are batched reads; ticks are SLOW_POLL apart)
            assert read and max(read) > arrived - 5, "the backlog read has not come back yet"
            return arrived

        eventually(
            tick_waiting,
            what="a tick with its backlog read, waiting for the capacity",
            timeout=2 * SLOW_POLL + 10,
        )
        assert paused.op.proc is not None
        stopped = time.time()
        paused.op.proc.send_signal(signal.SIGSTOP)
        try:
            pool.load(7)
            f.settled([other], what="the other replica taking the shard during the pause")
            pool.wait_desired(7, what=f"{other.identity} scaling 4 -> 7 during the pause")
            time.sleep(max(0.0, stopped + STOP_FOR - time.time()))  # still stopped, lease long gone
            paused.proxy.release(describe)  # moto answers 7; it waits in the paused one's socket

            def answered() -> None:
                assert [t for t, op in list(paused.proxy.done) if op == describe and t > stopped]

            eventually(answered, what="the held capacity read answered")
        finally:
            paused.op.proc.send_signal(signal.SIGCONT)
    finally:
        paused.proxy.release(describe)

    assert f.settled(replicas, what="the shard back with the resumed replica")[0] is paused
    settle(paused, pool, ticks=1, timeout=2 * SLOW_POLL + 10)
    assert_one_write_per_action(pool, replicas, [(other.identity, 7)])
    assert not paused.proxy.writes_to(pool.group)
    no_problems(other)
    # the paused replica may say it refused to write (its lease lapsed); nothing else
    refused = "lease on its shard lapsed"
    assert not [p for p in paused.op.problems() if refused not in p], paused.op.problems()
