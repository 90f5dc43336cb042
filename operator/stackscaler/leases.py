"""Replicas coordinated through Leases (coordination.k8s.io): one owner per shard.

Every replica renews a *member* lease (``<group>-member-<identity>``) and,
for each shard it owns, a *shard* lease (``<group>-shard-<i>``), every
``retry_period`` seconds. From the live members it computes the same
balanced plan as every other replica (sharding.assign), releases the shards
the plan gives to someone else, and takes the ones it gives to itself once
they are free. With one shard and several replicas this is leader election:
one replica acts, the others stand by with no ticking task.

Why two replicas never act on one shard:

* A shard lease is written with optimistic concurrency (its resourceVersion):
  of two replicas taking it, one gets 409 Conflict.
* A holder counts a shard as its own only for ``renew_deadline`` after it
  *sent* its last successful renewal; a taker waits until the lease has not
  changed for ``lease_duration`` on its own clock since it first saw that
  version. ``renew_deadline`` < ``lease_duration`` (10 s < 15 s, client-go's
  defaults), so the old holder has stopped before anyone else may start, even
  after a pause (SIGSTOP, a long GC, a network partition): a resumed replica
  finds its renewals stale and skips every tick until it has renewed again.
* The operator asks :meth:`Leases.owns` before each tick and again right
  before each AWS write (``fence``).
* While live members disagree on the number of shards (a rollout changing
  it), nobody takes a shard; holders keep what they hold until they stop.

How fast ownership moves: every replica *watches* the leases of its group, so
it sees each renewal within a watch event's latency, and it looks again not
only every ``retry_period`` but also the moment the next lease it watches would
expire, and at once when a lease changes hands or a member comes or goes. A
dead holder's shards are therefore taken one ``lease_duration`` after its last
renewal (plus the watch's and one round's latency), not up to two rounds
later; a released shard is taken as soon as its release is seen.

On shutdown a replica stops its tasks first, then releases its leases and
deletes its member lease, so a rolling restart hands over as soon as the
others see it. Lease calls run on their own thread, never behind status
writes; the watch has a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from stackscaler.sharding import Expiry, assign, shard_of

log = logging.getLogger("stackscaler.leases")

GROUP_LABEL = "stackscaler.dev/lease-group"
SHARDS_ANNOTATION = "stackscaler.dev/shards"
SERVICEACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
REQUEST_TIMEOUT = (3.0, 5.0)
"""(connect, read) seconds for each lease call: a slow API server never stalls a round."""
WATCH_SECONDS = 60
"""Each lease watch ends on the server after this long and is opened again."""
MEMBER_GONE_DURATIONS = 4
"""Lease durations without a renewal after which a member lease is deleted."""
EXPIRY_MARGIN = 0.01
"""Seconds past a lease's expiry to look again (expired means strictly past it)."""


def default_namespace() -> str:
    """Where the leases live: $POD_NAMESPACE, the pod's own namespace, or 'default'."""
    env = os.environ.get("POD_NAMESPACE", "").strip()
    if env:
        return env
    with contextlib.suppress(OSError):
        text = SERVICEACCOUNT_NAMESPACE.read_text().strip()
        if text:
            return text
    return "default"


def default_identity() -> str:
    """$POD_NAME (or the host name) plus a random suffix: unique per process."""
    base = os.environ.get("POD_NAME", "").strip() or socket.gethostname()
    base = re.sub(r"[^a-z0-9.-]+", "-", base.lower()).strip("-.")[:40] or "stackscaler"
    return f"{base}-{uuid.uuid4().hex[:6]}"


RENEW_DEADLINE_SHARE = 2 / 3
"""``--lease-duration`` times this: how long a holder keeps acting after its last renewal."""
RETRY_PERIOD_SHARE = 2 / 15
"""``--lease-duration`` times this: how often a replica renews and looks (client-go's ratios)."""


@dataclass(frozen=True)
class LeaseSettings:
    namespace: str
    identity: str
    group: str = "stackscaler"
    shards: int = 1
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError(f"--shards must be >= 1, got {self.shards}")
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "need 0 < retry period < renew deadline < lease duration, got "
                f"{self.retry_period}, {self.renew_deadline}, {self.lease_duration}"
            )
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?", self.identity):
            raise ValueError(
                f"lease identity {self.identity!r} must be a DNS label (lower case, digits, '-')"
            )

    def shard_lease(self, shard: int) -> str:
        return f"{self.group}-shard-{shard}"

    def member_lease(self, identity: str | None = None) -> str:
        return f"{self.group}-member-{self.identity if identity is None else identity}"


def _micro(ts: float) -> str:
    """A MicroTime as the API server parses it (always six fraction digits)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Lease:
    name: str
    version: str
    holder: str
    duration: float
    annotations: dict[str, str] = field(default_factory=dict)


class Leases:
    """This replica's view of the shard leases, renewed in the background."""

    def __init__(
        self,
        settings: LeaseSettings,
        api: client.ApiClient,
        *,
        on_change: Callable[[frozenset[int]], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._api = client.CoordinationV1Api(api)
        self._on_change = on_change
        self._clock, self._wall = clock, wall
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stackscaler-lease")
        self._expiry = Expiry()
        self._held: dict[int, float] = {}
        """shard -> local time the last successful renewal of it was sent."""
        self._announced: frozenset[int] = frozenset()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._wake = asyncio.Event()
        """Set when a watched lease changes hands or a member comes or goes."""
        self._halt = threading.Event()
        """Tells the watch thread to end."""
        self._watcher: threading.Thread | None = None
        self._looked = -math.inf
        """When the last round judged which leases were free (this replica's clock)."""

    # --- what the operator asks -------------------------------------------------

    def owns_shard(self, shard: int) -> bool:
        sent = self._held.get(shard)
        return sent is not None and self._clock() - sent < self.settings.renew_deadline

    def owns(self, uid: str) -> bool:
        """May this replica act on the resource with ``uid`` right now?"""
        return self.owns_shard(shard_of(uid, self.settings.shards))

    def shard(self, uid: str) -> int:
        return shard_of(uid, self.settings.shards)

    def held(self) -> frozenset[int]:
        return frozenset(s for s in self._held if self.owns_shard(s))

    # --- the loop -----------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="stackscaler:leases")
        self._watcher = threading.Thread(
            target=self._watch, args=(loop,), name="stackscaler-lease-watch", daemon=True
        )
        self._watcher.start()

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # what changes from here on wakes the next round
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:  # one failed round never ends coordination
                log.warning("lease round failed", exc_info=True)
            self._announce()
            # asyncio.timeout, not wait_for: 3.11's wait_for swallows a cancellation that
            # comes as the wake does, and a stopping replica would go on renewing its leases
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.next_round_in(self._clock())):
                    await self._wake.wait()

    def next_round_in(self, now: float) -> float:
        """Seconds to the next round: one retry period, or sooner when a lease held by
        another replica would expire before that (to take it the moment it may). Due is
        counted from when the last round looked, so a lease that expired while that round
        went on makes the next one start at once."""
        due = self._expiry.next_expiry(self._looked, ignore=self.settings.identity)
        wait = self.settings.retry_period
        if due is not None:
            wait = min(wait, due - now + EXPIRY_MARGIN)
        return max(0.0, wait)

    async def stop(self) -> None:
        """Stop acting, then hand every lease over at once (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._halt.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        held = sorted(self._held)
        self._held.clear()
        self._announce()
        for shard in held:
            with contextlib.suppress(Exception):
                await self._release(shard)
        with contextlib.suppress(Exception):
            await self._call(
                self._api.delete_namespaced_lease,
                self.settings.member_lease(),
                self.settings.namespace,
            )
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def round(self) -> None:
        """Look, release what the plan gives away, take what it gives us and renew what
        it leaves us, then renew the member lease.

        The member lease is renewed last: a replica that dies mid-round leaves a member
        lease no younger than its shard leases, so the others, who give shards only to
        live members, can take its shards as soon as those expire (renewed first, a member
        lease could outlive them by a round)."""
        s = self.settings
        leases = await self._list()
        now = self._looked = self._clock()
        for seen in leases.values():
            self._expiry.observe(seen.name, seen.version, seen.holder, seen.duration, now)
        self._expiry.forget_except(leases)
        members, agreed = self._members(leases, now)
        plan = assign(s.shards, members) if agreed else {}
        for shard in range(s.shards):
            name = s.shard_lease(shard)
            lease = leases.get(name)
            mine = lease is not None and lease.holder == s.identity
            if mine and plan and plan.get(shard) != s.identity:
                await self._give_away(shard)
            elif mine or (plan.get(shard) == s.identity and self._expiry.free(name, now)):
                await self._take(shard, lease)  # renew ours, or take a free one
            else:
                self._held.pop(shard, None)
        self._announce()  # the operator starts the taken shards' tasks now, not after the rest
        await self._renew_member(leases.get(s.member_lease()))
        await self._sweep(leases, now)

    def _members(self, leases: dict[str, _Lease], now: float) -> tuple[list[str], bool]:
        """Live members, and whether they all run with this replica's shard count."""
        prefix = self.settings.member_lease("")
        members, agreed = [self.settings.identity], True
        for lease in leases.values():
            if not lease.name.startswith(prefix) or lease.holder == self.settings.identity:
                continue
            if self._expiry.holder(lease.name, now):
                members.append(lease.holder)
                if lease.annotations.get(SHARDS_ANNOTATION) != str(self.settings.shards):
                    agreed = False
        if not agreed:
            log.warning(
                "replicas run with different --shards: nobody takes a shard until they agree"
            )
        return members, agreed

    async def _sweep(self, leases: dict[str, _Lease], now: float) -> None:
        """Delete the member leases of replicas gone for MEMBER_GONE_DURATIONS lease
        durations (SIGKILLed, their node lost): otherwise every crash leaves one behind
        for good, and every replica that starts waits a lease duration for each. The
        delete is conditional on the version seen, so a replica that comes back and
        renews in the meantime keeps its lease (and a deleted one is recreated by its
        owner's next round)."""
        prefix = self.settings.member_lease("")
        for lease in leases.values():
            if (
                lease.name.startswith(prefix)
                and lease.holder != self.settings.identity
                and self._expiry.gone_for(lease.name, now, MEMBER_GONE_DURATIONS)
            ):
                with contextlib.suppress(ApiException):  # 404/409: already gone or renewed
                    await self._call(
                        self._api.delete_namespaced_lease,
                        lease.name,
                        self.settings.namespace,
                        body=client.V1DeleteOptions(
                            preconditions=client.V1Preconditions(resource_version=lease.version)
                        ),
                    )
                    log.info("deleted the member lease of %s, gone for a while", lease.holder)
                self._expiry.forget(lease.name)

    async def _give_away(self, shard: int) -> None:
        """Stop acting on the shard first, then release its lease."""
        self._held.pop(shard, None)
        self._announce()
        await self._release(shard)
        log.info("shard %d handed over to the replica the plan gives it to", shard)

    def _announce(self) -> None:
        held = self.held()
        if held != self._announced:
            self._announced = held
            log.info(
                "this replica (%s) owns shards %s of %d",
                self.settings.identity,
                sorted(held) or "none",
                self.settings.shards,
            )
            self._on_change(held)

    # --- API calls ------------------------------------------------------------------

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        call = partial(fn, *args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _body(
        self, name: str, holder: str, duration: float, version: str | None, sent: float
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name,
            "namespace": self.settings.namespace,
            "labels": {
                GROUP_LABEL: self.settings.group,
                "app.kubernetes.io/managed-by": "stackscaler",
            },
            "annotations": {SHARDS_ANNOTATION: str(self.settings.shards)},
        }
        if version is not None:
            meta["resourceVersion"] = version
        spec: dict[str, Any] = {"leaseDurationSeconds": max(1, round(duration))}
        if holder:
            spec.update(holderIdentity=holder, renewTime=_micro(sent))
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": spec,
        }

    async def _list(self) -> dict[str, _Lease]:
        found = await self._call(
            self._api.list_namespaced_lease,
            self.settings.namespace,
            label_selector=f"{GROUP_LABEL}={self.settings.group}",
        )
        return {lease.name: lease for lease in map(self._lease, found.items)}

    def _lease(self, item: Any) -> _Lease:
        spec = item.spec
        return _Lease(
            item.metadata.name,
            str(item.metadata.resource_version),
            str(spec.holder_identity or ""),
            float(spec.lease_duration_seconds or self.settings.lease_duration),
            dict(item.metadata.annotations or {}),
        )

    # --- the watch ------------------------------------------------------------------

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """The watch thread: each lease event goes to the loop with the time it came."""
        forbidden = False
        while not self._halt.is_set():
            try:
                stream = watch.Watch().stream(
                    self._api.list_namespaced_lease,
                    self.settings.namespace,
                    label_selector=f"{GROUP_LABEL}={self.settings.group}",
                    timeout_seconds=WATCH_SECONDS,
                    _request_timeout=(REQUEST_TIMEOUT[0], WATCH_SECONDS + REQUEST_TIMEOUT[1]),
                )
                for event in stream:
                    if self._halt.is_set():
                        return
                    seen = self._lease(event["object"])
                    loop.call_soon_threadsafe(self.on_watch, event["type"], seen, self._clock())
            except RuntimeError:  # the loop is closed: the replica is gone
                return
            except ApiException as exc:
                if exc.status == 403 and not forbidden:
                    forbidden = True
                    log.warning(
                        "cannot watch Leases in %s (403 Forbidden): shards move at the next "
                        "round instead of at once; grant 'watch' on leases.coordination.k8s.io",
                        self.settings.namespace,
                    )
                self._halt.wait(self.settings.retry_period)
            except Exception:  # the API server away: the rounds go on; watch again soon
                log.debug("lease watch ended", exc_info=True)
                self._halt.wait(self.settings.retry_period)

    def on_watch(self, kind: str, lease: _Lease, now: float) -> None:
        """Note when each version was first seen; wake a round when a lease changed hands
        (to anyone but this replica) or a member came or went."""
        before = self._expiry.seen(lease.name)
        if kind == "DELETED":
            self._expiry.forget(lease.name)
            moved = before is not None
        else:
            self._expiry.observe(lease.name, lease.version, lease.holder, lease.duration, now)
            moved = (before is None or before.holder != lease.holder) and (
                lease.holder != self.settings.identity
            )
        if moved and not self._stopped:
            self._wake.set()

    async def _write(self, name: str, holder: str, version: str | None) -> bool:
        """Create (no version) or replace (at ``version``) a lease; False on a conflict."""
        sent = self._wall()
        body = self._body(name, holder, self.settings.lease_duration, version, sent)
        try:
            if version is None:
                await self._call(self._api.create_namespaced_lease, self.settings.namespace, body)
            else:
                await self._call(
                    self._api.replace_namespaced_lease, name, self.settings.namespace, body
                )
        except ApiException as exc:
            if exc.status in (404, 409):  # someone else wrote it first, or it went away
                return False
            raise
        return True

    async def _renew_member(self, listed: _Lease | None) -> None:
        """Renew (or create) this replica's member lease at the version the round listed;
        only this replica writes it, so a conflict is rare and the next round mends it."""
        name = self.settings.member_lease()
        await self._write(name, self.settings.identity, None if listed is None else listed.version)

    async def _take(self, shard: int, lease: _Lease | None) -> None:
        """Acquire or renew; the hold counts from when the request was sent."""
        sent = self._clock()
        name = self.settings.shard_lease(shard)
        ok = await self._write(
            name, self.settings.identity, None if lease is None else lease.version
        )
        if ok:
            if shard not in self._held:
                log.info("took shard %d (lease %s)", shard, name)
            self._held[shard] = sent
        else:
            self._held.pop(shard, None)

    async def _release(self, shard: int) -> None:
        name = self.settings.shard_lease(shard)
        current = await self._call(self._api.read_namespaced_lease, name, self.settings.namespace)
        if current.spec.holder_identity != self.settings.identity:
            return
        await self._write(name, "", str(current.metadata.resource_version))
