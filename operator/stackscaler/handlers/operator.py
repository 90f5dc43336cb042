"""``stackscaler run``: the kopf operator."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import zlib
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
from kubernetes.config import kube_config

from stackscaler import API_GROUP, API_VERSION, __version__, fence
from stackscaler.actuators.registry import Actuators
from stackscaler.aws import AwsCaller, AwsSettings, RateLimiters, RoleRef
from stackscaler.errors import StackscalerError
from stackscaler.kube import KubeEvents, KubeStatus, api_client
from stackscaler.leases import Leases, LeaseSettings
from stackscaler.metrics.prometheus import PrometheusSettings, normalize_address
from stackscaler.metrics.registry import MetricSources
from stackscaler.metrics.tier import TierIndex
from stackscaler.model.crds import KINDS
from stackscaler.observability.logs import LogFormat, configure_logging
from stackscaler.observability.metrics import OperatorMetrics
from stackscaler.observability.server import HealthServer
from stackscaler.observability.ticks import TickWatch
from stackscaler.predictive import Forecasts
from stackscaler.reconcile import Reconciler, Ref
from stackscaler.scheduler import Scheduler
from stackscaler.tenancy import Tenancy, TenancySettings

log = logging.getLogger("stackscaler.operator")

FAILPOINT_EXIT = 137
"""Exit status at a failpoint (as if SIGKILLed)."""
LEASE_WAIT = 2.0
"""Seconds before a resource whose shard lease lapsed looks again."""
WORKER_IDLE_SECONDS = 1.0
"""kopf's ``queueing.idle_timeout``: how long a resource's event worker outlives its
last event."""


class NoDiffBase(kopf.DiffBaseStorage):
    """The operator has only event handlers, no change handlers: nothing is diffed.

    kopf's default diff base deep-copies every body it sees (to compare it with
    the last handled one), on every watch event, our own status writes
    included: thousands a wave at scale, for a diff nothing reads.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return kopf.BodyEssence()

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        """Nothing to keep: no change handler ever asks."""


@dataclass(frozen=True)
class RunSettings:
    namespaces: tuple[str, ...] = ()
    """Empty: every namespace."""
    selector: tuple[tuple[str, str | None], ...] = ()
    """Label selector: (key, value) pairs; value None means the label must exist."""
    leases: LeaseSettings | None = None
    """Coordinate replicas and shards through Leases (leases.py); None: this process
    acts on every resource it sees (one replica only)."""
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8080
    log_format: LogFormat = "text"
    log_level: str = "INFO"
    prometheus_settings: Path | None = None
    kubeconfig: str | None = None
    jitter_seconds: float = 0.2
    tenancy: Path | None = None
    """The platform team's grants (docs/security.md); None: single-tenant."""
    failpoints: frozenset[str] = frozenset()
    """Test-only crash points (STACKSCALER_FAILPOINTS): the process exits there."""


def parse_selector(text: str) -> tuple[tuple[str, str | None], ...]:
    """``app=web,tier`` -> (("app", "web"), ("tier", None)); only = and presence."""
    out: list[tuple[str, str | None]] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if "!=" in part or part.startswith("!"):
            raise ValueError(f"--selector {text!r}: only key=value and key (exists) are supported")
        key, sep, value = part.partition("=")
        out.append((key.strip(), value.strip() if sep else None))
    return tuple(out)


def selected(selector: tuple[tuple[str, str | None], ...], body: Mapping[str, Any]) -> bool:
    """Does the resource carry the labels of ``--selector``? (checked on every event, so
    a resource relabelled out of this operator's selection is released at once)"""
    labels = (body.get("metadata") or {}).get("labels") or {}
    return all(k in labels and (v is None or labels[k] == v) for k, v in selector)


UNUSED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def _slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """A watched body without what the operator never reads: the managedFields (often
    larger than the spec, and one more entry per writer) and kubectl's copy of the last
    applied spec. At thousands of resources they are most of the memory. Shallow: it
    shares everything else with ``body``."""
    raw = dict(body)
    meta = dict(raw.get("metadata") or {})
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k not in UNUSED_ANNOTATIONS}
    raw["metadata"] = meta
    return raw


def _kept(body: Mapping[str, Any]) -> dict[str, Any]:
    """Our own copy of a watched body (:func:`_slim`), for the resources this replica
    ticks."""
    return copy.deepcopy(_slim(body))


@dataclass(frozen=True)
class Packed:
    """A resource this replica does not tick, kept as compressed JSON until its shard
    comes here: about 1 KB where the body as Python objects takes 11 KB, and every
    other replica's resources are most of what a replica sees."""

    data: bytes

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Packed:
        text = json.dumps(_slim(body), separators=(",", ":"), default=str)
        return cls(zlib.compress(text.encode(), 1))

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(zlib.decompress(self.data))
        return out


class Operator:
    """Everything one operator process runs, built once at start-up."""

    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings
        self.metrics = OperatorMetrics()
        self.api = api_client(settings.kubeconfig)
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="stackscaler-kube")
        self.tenancy = Tenancy(
            TenancySettings.from_file(settings.tenancy) if settings.tenancy else TenancySettings(),
            normalize_address=normalize_address,
        )
        if settings.tenancy is None:
            log.warning(
                "no tenancy settings: every namespace may use every target of the operator's "
                "account (cross-account roles are denied); see docs/security.md"
            )
        self.caller = AwsCaller(
            AwsSettings.from_env(),
            limiters=RateLimiters(on_wait=self.metrics.limiter_wait_hook()),
            hook=self.metrics.aws_call_hook(),
            assume_role_params=self._assume_role_params,
        )
        prometheus = (
            PrometheusSettings.from_file(settings.prometheus_settings)
            if settings.prometheus_settings
            else None
        )
        self.tiers = TierIndex()
        """Every resource of the watched namespaces, whoever serves it (tier sources)."""
        self.sources = MetricSources(self.caller, prometheus, tiers=self.tiers)
        self.actuators = Actuators(self.caller, self.api)
        self.forecasts = Forecasts.build(
            self.caller, prometheus, on_refresh=self.metrics.record_forecast_refresh
        )
        self.reconciler = Reconciler(
            self.sources,
            self.actuators,
            KubeStatus(self.api, self.executor),
            KubeEvents(self.api, self.executor),
            metrics=self.metrics,
            tenancy=self.tenancy,
            forecasts=self.forecasts,
            default_region=self.caller.settings.default_region,
            failpoint=self._failpoint,
            slot_offset=self._slot_offset,
            followed=lambda ref: self.tiers.followed(ref.namespace, ref.kind, ref.name),
        )
        self.ticks = TickWatch()
        self.scheduler = Scheduler(
            self._tick, jitter=settings.jitter_seconds, on_forget=self._forget
        )
        self.kinds: Counter[str] = Counter()
        self.known: dict[str, Packed | None] = {}
        """Every selected resource seen, owned by this replica or not, as last seen (with
        leases; None without: every resource is this replica's)."""
        self.leases = (
            None
            if settings.leases is None
            else Leases(settings.leases, self.api, on_change=self.on_shards)
        )
        self.watching = False
        self.logged_in = False
        self.health = HealthServer(
            self.metrics.registry, host=settings.metrics_host, port=settings.metrics_port
        )
        self.health.add_check("started", lambda: self.watching or "operator not started yet")
        self.health.add_check(
            "kubernetes", lambda: self.logged_in or "not logged in to the Kubernetes API yet"
        )
        self.health.add_check("ticking", lambda: self.ticks.ready(len(self.scheduler)))
        self.health.add_liveness_check("ticking", self.ticks.alive)

    def _assume_role_params(self, role: RoleRef) -> dict[str, Any]:
        """The tenant's ExternalId on every AssumeRole for its namespaces."""
        external_id = self.tenancy.external_id(role.namespace)
        return {} if external_id is None else {"ExternalId": external_id}

    def _failpoint(self, name: str) -> None:
        if name in self.settings.failpoints:
            log.error("failpoint %s: exiting now (STACKSCALER_FAILPOINTS, tests only)", name)
            os._exit(FAILPOINT_EXIT)

    async def discover_account(self) -> None:
        """The operator's own AWS account, so that cross-account roles can be told apart."""
        if self.tenancy.account_id is not None:
            return
        try:
            identity = await self.caller.call(
                "sts", "GetCallerIdentity", region=None, resource="the operator"
            )
        except StackscalerError as exc:
            log.warning(
                "cannot tell the operator's AWS account (%s): every roleArn is denied until "
                "accountId is set in the tenancy settings",
                exc,
            )
            return
        self.tenancy.account_id = str(identity.get("Account") or "") or None
        log.info("acting in AWS account %s", self.tenancy.account_id)

    def owns(self, uid: str) -> bool:
        """May this replica act on the resource now (always, without leases)?"""
        return self.leases is None or self.leases.owns(uid)

    def _slot_offset(self, uid: str, poll: float) -> float:
        """The resource's sub-slot (the scheduler is made after the reconciler)."""
        return self.scheduler.offset(uid, poll)

    async def _tick(self, body: Mapping[str, Any]) -> float:
        ref = Ref.of(body)
        if not self.owns(ref.uid):  # a lease lapsed: act no more until it is renewed
            return LEASE_WAIT
        token = None
        if self.leases is not None:  # and every write of the tick asks again (fence.py)
            token = fence.OWNER.set((str(ref), lambda: self.owns(ref.uid)))
        try:
            with self.metrics.observe_reconcile(ref.kind), self.ticks.running(ref.uid):
                result = await self.reconciler.tick(body)
        finally:
            if token is not None:
                fence.OWNER.reset(token)
        return result.delay

    def _forget(self, uid: str, body: Mapping[str, Any]) -> None:
        ref = Ref.of(body)
        self.reconciler.forget(uid)
        self.metrics.forget(ref.kind, ref.namespace, ref.name)

    def on_event(self, event: Mapping[str, Any], body: Mapping[str, Any]) -> None:
        uid = str((body.get("metadata") or {}).get("uid", ""))
        kind = str(body.get("kind", ""))
        # every resource, selected or not, served here or not: tier sources read them all
        if event.get("type") == "DELETED":
            self.tiers.remove(body)
        else:
            self.tiers.update(body)
        if event.get("type") == "DELETED" or not selected(self.settings.selector, body):
            if self.known.pop(uid, None) is not None:
                self.kinds[kind] -= 1 if self.kinds[kind] > 0 else 0
            self.scheduler.remove(uid)
            self.reconciler.forget(uid)
        else:
            if uid not in self.known:
                self.kinds[kind] += 1
            mine = self.leases is None or self.leases.shard(uid) in self.leases.held()
            # with leases, kept for the day its shard comes (or goes) here
            self.known[uid] = None if self.leases is None else Packed.of(body)
            raw = _kept(body) if mine else _slim(body)
            self.reconciler.register(raw, keep=mine)  # claims its target before its tick
            if mine:
                self.scheduler.upsert(raw)
        self.metrics.set_resources(kind, self.kinds[kind])

    def on_shards(self, held: frozenset[int]) -> None:
        """The shards this replica owns changed: start and stop resources' tasks."""
        assert self.leases is not None
        for uid, packed in self.known.items():
            assert packed is not None  # kept whenever there are leases
            mine = self.leases.shard(uid) in held
            if mine and uid not in self.scheduler:
                body = packed.body()
                self.reconciler.register(body, keep=True)
                self.scheduler.upsert(body)
            elif not mine and uid in self.scheduler:
                self.scheduler.remove(uid)  # forgets its memory and metrics...
                self.reconciler.register(packed.body(), keep=False)  # ...but not its claim

    def registry(self) -> kopf.OperatorRegistry:
        registry = kopf.OperatorRegistry()

        @kopf.on.login(registry=registry)
        def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
            info = kopf.login_via_client(**kwargs)
            self.logged_in = info is not None  # ready only once the API accepts us
            return info

        @kopf.on.startup(registry=registry)
        async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
            settings.posting.enabled = False  # our own Events, one per fact
            settings.persistence.diffbase_storage = NoDiffBase()
            settings.watching.server_timeout = 300
            # an idle per-resource worker holds the resource's last raw event (33 KB with
            # its managedFields) until it exits: 1 s, not kopf's 5 s, after its last event
            settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
            await self.discover_account()
            if self.leases is not None:
                self.leases.start()
            self.watching = True

        @kopf.on.cleanup(registry=registry)
        async def stop_ticking(**_: Any) -> None:
            # no tick once stopping; kopf would also wait 5 s for these tasks to end
            await self.scheduler.close()
            if self.leases is not None:  # then hand the shards over at once
                await self.leases.stop()

        # no label filter in kopf: it would stop telling us about a resource relabelled
        # out of the selection, which this replica would then keep scaling
        for info in KINDS.values():

            @kopf.on.event(API_GROUP, API_VERSION, info.plural, registry=registry)
            async def on_event(event: Mapping[str, Any], body: Mapping[str, Any], **_: Any) -> None:
                self.on_event(event, body)

        return registry

    async def close(self) -> None:
        await self.scheduler.close()
        if self.leases is not None:
            await self.leases.stop()
        await self.sources.close()
        await self.forecasts.close()
        await self.actuators.close()
        self.caller.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
        await self.health.stop()
        self.api.close()


async def run_operator(settings: RunSettings, stop: asyncio.Event | None = None) -> None:
    configure_logging(settings.log_format, settings.log_level)
    # kopf logs every handled watch event at INFO with its whole settings object
    for name in ("kopf.objects", "kopf.activities", "kopf._core"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    if settings.kubeconfig:
        os.environ["KUBECONFIG"] = settings.kubeconfig  # for kopf's login too
        # kubernetes read KUBECONFIG once, at import (before this line); kopf's
        # login_via_client loads that default, so point it at the file as well
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = settings.kubeconfig
    # kopf stops on SIGINT/SIGTERM itself (its handlers replace any set here). Pass a
    # stop flag only when the caller has one: at exit kopf waits up to 5 s for its task
    # that waits on the flag, and nothing would ever set one made here.
    operator = Operator(settings)
    port = await operator.health.start()
    log.info(
        "stackscaler %s: metrics and health on port %s; namespaces: %s",
        __version__,
        port,
        ", ".join(settings.namespaces) or "all",
    )
    try:
        await kopf.operator(
            registry=operator.registry(),
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            standalone=True,  # replicas coordinate through Leases, not kopf's peering
            stop_flag=stop,
        )
    finally:
        await operator.close()
