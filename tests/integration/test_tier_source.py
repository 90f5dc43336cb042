"""Tier sources against the real control plane.

A WebTier's tick is written by the reconciler through the /status subresource of the
real kube-apiserver (so the CRD schema must keep every field a follower reads); a
TierIndex is fed from a real list and watch of the API server, as the operator's
watch feeds it; a ReadReplicaPool that follows the web tier reads it through the
registry, decides from it, and reports a cycle with a condition and an Event.

The web tier's metric readings and the targets' capacities are the reconciler
harness's fakes (tests/unit/test_reconcile.py): what is under test is the status
round trip and the watch, not AWS (tests/e2e covers the whole path on moto).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from kubernetes import client, watch

from stackscaler.errors import MetricStale
from stackscaler.kube import KubeEvents, KubeStatus
from stackscaler.metrics.registry import MetricSources
from stackscaler.metrics.tier import TierIndex
from stackscaler.model.spec import parse_resource
from stackscaler.reconcile import Reconciler
from tests.conftest import EXAMPLES, example, load_docs
from tests.unit.test_reconcile import T0, FakeActuator, FakeActuators, FakeSources

GROUP, VERSION = "stackscaler.dev", "v1alpha1"
PLURALS = {"WebTier": "webtiers", "ReadReplicaPool": "readreplicapools"}


class Cluster:
    """The namespace's two resources in the API server, and the operator's view of them."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.objects = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.index = TierIndex()
        self.versions: dict[str, str] = {}
        """plural -> the resourceVersion the index has seen up to."""

    def create(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        doc["metadata"]["namespace"] = self.namespace
        return self.objects.create_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, PLURALS[doc["kind"]], doc
        )

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self.objects.get_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, PLURALS[kind], name
        )

    def sync(self) -> None:
        """List each kind into the index (the watch's initial listing)."""
        for plural in PLURALS.values():
            listed = self.objects.list_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural
            )
            for item in listed["items"]:
                self.index.update(item)
            self.versions[plural] = listed["metadata"]["resourceVersion"]

    def watch_until(self, kind: str, done: Callable[[], bool]) -> None:
        """Feed the index from the watch of ``kind`` until ``done()`` (bounded)."""
        plural = PLURALS[kind]
        w = watch.Watch()
        for event in w.stream(
            self.objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            plural,
            resource_version=self.versions[plural],
            timeout_seconds=20,
        ):
            obj = event["object"]
            self.versions[plural] = obj["metadata"]["resourceVersion"]
            if event["type"] == "DELETED":
                self.index.remove(obj)
            else:
                self.index.update(obj)
            if done():
                w.stop()
                return
        raise AssertionError(f"the watch of {plural} ended before the index was as expected")


def web_tier() -> dict[str, Any]:
    """The example web tier (its cpu and requests-per-minute), no schedules."""
    web = example("WebTier")
    del web["spec"]["schedules"]
    return web


def follower() -> dict[str, Any]:
    """The example pool, on its tier source alone (12,000 requests a minute a replica)."""
    doc = load_docs(EXAMPLES / "readreplicapool-follows-web.yaml")[0]
    doc["spec"]["metrics"] = doc["spec"]["metrics"][:1]
    return doc


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def reconciler(
    api: client.ApiClient,
    executor: ThreadPoolExecutor,
    sources: Any,
    actuator: FakeActuator,
    index: TierIndex,
) -> Reconciler:
    return Reconciler(
        sources,
        FakeActuators(actuator),  # type: ignore[arg-type]
        KubeStatus(api, executor),
        KubeEvents(api, executor),
        clock=lambda: T0,
        followed=lambda ref: index.followed(ref.namespace, ref.kind, ref.name),
    )


async def test_a_pool_follows_the_status_the_web_tier_wrote(
    api_client: client.ApiClient, namespace: str, executor: ThreadPoolExecutor
) -> None:
    cluster = Cluster(api_client, namespace)
    web = cluster.create(web_tier())
    readers = cluster.create(follower())
    cluster.sync()
    assert cluster.index.followed(namespace, "WebTier", "web")

    # the web tier's tick, written through the real /status subresource
    web_sources = FakeSources({"cpu": 80.0, "requests-per-minute": 30_000.0})
    web_tick = reconciler(
        api_client, executor, web_sources, FakeActuator(current=10), cluster.index
    )
    await web_tick.tick(cluster.get("WebTier", "web"))
    cluster.watch_until(
        "WebTier", lambda: cluster.index.status(namespace, "WebTier", "web").decided is not None
    )
    stored = cluster.get("WebTier", "web")["status"]["lastDecision"]
    rpm = next(m for m in stored["metrics"] if m["name"] == "requests-per-minute")
    assert rpm["time"] == "2026-11-26T12:00:00Z"  # kept by the CRD schema, not pruned
    assert stored["recommendation"] == 25  # max(cpu 80/50 x 10 = 16, 30,000 / 1,200 = 25)

    # the pool's tick reads it through the registry's tier source: 30,000 / 12,000 -> 3
    sources = MetricSources(None, tiers=cluster.index)  # type: ignore[arg-type]
    pool_actuator = FakeActuator(current=1)
    pool_tick = reconciler(api_client, executor, sources, pool_actuator, cluster.index)
    result = await pool_tick.tick(cluster.get("ReadReplicaPool", "catalog-readers"))
    assert result.decision is not None
    assert result.decision.metrics[0].value == 30_000.0
    assert pool_actuator.applied == [3]
    status = cluster.get("ReadReplicaPool", "catalog-readers")["status"]
    assert status["desiredCapacity"] == 3
    assert status["lastDecision"]["metrics"][0]["time"] == rpm["time"]  # the web's sample

    # every value of the written status, read back the way the operator reads it
    tier = cluster.index.status(namespace, "WebTier", "web")
    assert tier is not None
    # desired: 25 wanted, 20 by the scale-out rate limit (4 units or 100% a minute)
    assert (tier.demand, tier.desired, tier.current, tier.starting) == (25, 20, 10, 0)

    # a web tier that stopped deciding: its values age until they are unknown, never 0
    stale = await sources.observe_all(parse_resource(readers), T0 + timedelta(minutes=10))
    obs, err = stale["web-requests"]
    assert obs.value is None and isinstance(err, MetricStale)
    assert web["metadata"]["uid"] != readers["metadata"]["uid"]


async def test_a_cycle_gets_a_condition_and_an_event_and_the_others_keep_serving(
    api_client: client.ApiClient, namespace: str, executor: ThreadPoolExecutor
) -> None:
    cluster = Cluster(api_client, namespace)
    web = web_tier()
    web["spec"]["metrics"].append(
        {
            "name": "readers",
            "tier": {"kind": "ReadReplicaPool", "name": "catalog-readers", "value": "Demand"},
            "target": {"type": "AverageValue", "value": 1},
        }
    )
    cluster.create(web)  # the API server cannot see the cycle: it spans two resources
    cluster.create(follower())
    outside = follower()  # follows web too, and nothing follows it
    outside["metadata"]["name"] = "reports"
    outside["spec"]["target"]["name"] = "shop-reports"
    outside["spec"]["metrics"][0]["tier"] = {
        "kind": "WebTier",
        "name": "web",
        "value": "DesiredCapacity",
    }
    outside["spec"]["metrics"][0]["target"]["value"] = 5
    cluster.create(outside)
    cluster.sync()
    web_sources = FakeSources({"cpu": 80.0, "requests-per-minute": 30_000.0, "readers": None})
    web_tick = reconciler(
        api_client, executor, web_sources, FakeActuator(current=10), cluster.index
    )
    await web_tick.tick(cluster.get("WebTier", "web"))
    cluster.watch_until(
        "WebTier", lambda: cluster.index.status(namespace, "WebTier", "web").decided is not None
    )
    sources = MetricSources(None, tiers=cluster.index)  # type: ignore[arg-type]
    actuator = FakeActuator(current=2)
    tick = reconciler(api_client, executor, sources, actuator, cluster.index)
    await tick.tick(cluster.get("ReadReplicaPool", "catalog-readers"))
    status = cluster.get("ReadReplicaPool", "catalog-readers")["status"]
    available = next(c for c in status["conditions"] if c["type"] == "MetricsAvailable")
    assert available["status"] == "False"
    assert (
        "tier sources form a cycle: ReadReplicaPool catalog-readers -> WebTier web -> "
        "ReadReplicaPool catalog-readers" in available["message"]
    )
    assert "remove the tier source of one of them" in available["message"]
    assert actuator.applied == [] and status["desiredCapacity"] == 2  # held
    events = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    assert [e.reason for e in events if e.involved_object.name == "catalog-readers"] == [
        "TierCycle"
    ]
    # outside the cycle: served (web decided 20, 20 / 5 -> 4)
    served = FakeActuator(current=1)
    other = reconciler(api_client, executor, sources, served, cluster.index)
    await other.tick(cluster.get("ReadReplicaPool", "reports"))
    assert served.applied == [4]
