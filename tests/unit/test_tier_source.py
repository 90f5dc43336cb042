"""Tier sources: parsing, the graph and its cycles, validate across documents, the
operator's source on its index (hostile statuses included), and the reconciler's side
(what it writes for followers, and that a followed resource is written every tick)."""

from __future__ import annotations

import copy
import itertools
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from stackscaler.errors import MetricStale, MetricUnavailable, StackscalerError, TierCycle
from stackscaler.handlers.operator import Operator, RunSettings
from stackscaler.leases import LeaseSettings
from stackscaler.metrics.base import MetricQuery
from stackscaler.metrics.registry import MetricSources
from stackscaler.metrics.tier import TierIndex, TierMetricSource, TierStatus
from stackscaler.model.spec import MetricSpec, TierSource, TierValue, parse_resource
from stackscaler.model.tiers import (
    TierEdge,
    TierRef,
    cycle_through,
    document_errors,
    find_cycles,
    tier_edges,
)
from stackscaler.reconcile import Ref, material
from tests.conftest import EXAMPLES, load_docs
from tests.unit.test_cli import run
from tests.unit.test_reconcile import T0, body
from tests.unit.test_reconcile_writes import World

FOLLOWS_WEB = EXAMPLES / "readreplicapool-follows-web.yaml"


def pool(me: str = "db", ns: str = "shop", **tier: Any) -> dict[str, Any]:
    """ReadReplicaPool ``ns/me`` whose one metric follows ``tier`` (default: web's rpm;
    a field given as None is left out)."""
    doc = copy.deepcopy(load_docs(FOLLOWS_WEB)[0])
    doc["metadata"] = {"name": me, "namespace": ns}
    source = {"kind": "WebTier", "name": "web", "value": "Metric", "metric": "rpm", **tier}
    source = {k: v for k, v in source.items() if v is not None}
    doc["spec"]["metrics"] = [
        {"name": "follow", "tier": source, "target": {"type": "AverageValue", "value": 1000}}
    ]
    return doc


def web(
    name: str = "web", ns: str = "shop", status: dict[str, Any] | None = None
) -> dict[str, Any]:
    doc = body()
    doc["metadata"] = {"name": name, "namespace": ns, "uid": f"uid-{name}"}
    doc["spec"]["metrics"][0]["name"] = "rpm"
    if status is not None:
        doc["status"] = status
    return doc


def written(*, at: datetime = T0, rpm: float = 4200.0, **fields: Any) -> dict[str, Any]:
    """A status as the reconciler writes it (see test_reconciler_writes_what_followers_read)."""
    status = {
        "currentCapacity": 6,
        "desiredCapacity": 8,
        "startingCapacity": 2,
        "lastDecision": {
            "time": at.isoformat().replace("+00:00", "Z"),
            "direction": "Out",
            "recommendation": 9,
            "metrics": [
                {
                    "name": "rpm",
                    "state": "Known",
                    "value": rpm,
                    "target": 1000.0,
                    "time": (at - timedelta(seconds=60)).isoformat().replace("+00:00", "Z"),
                }
            ],
        },
    }
    status.update(fields)
    return status


def query(doc: dict[str, Any]) -> MetricQuery:
    resource = parse_resource(doc)
    return MetricQuery(resource.key, resource.scaling.metrics[0], resource.kind)


async def read(index: TierIndex, doc: dict[str, Any], now: datetime = T0) -> float:
    return (await TierMetricSource(index).read(query(doc), now)).value


def indexed(*docs: dict[str, Any]) -> TierIndex:
    index = TierIndex()
    for d in docs:
        index.update(d)
    return index


# --- the model ------------------------------------------------------------------


def test_the_example_parses_to_a_tier_source() -> None:
    resource = parse_resource(load_docs(FOLLOWS_WEB)[0])
    follow = resource.scaling.metric("web-requests")
    assert follow.source == TierSource("WebTier", "web", TierValue.METRIC, "requests-per-minute")
    assert str(follow.source) == "WebTier web metric requests-per-minute"
    assert tier_edges(resource) == (TierEdge(0, "web-requests", TierRef("WebTier", "web")),)


def pool_without_metric(value: str) -> dict[str, Any]:
    return pool(value=value, metric=None)


@pytest.mark.parametrize("value", ["Demand", "DesiredCapacity", "ReadyCapacity"])
def test_values_without_a_metric(value: str) -> None:
    source = parse_resource(pool_without_metric(value)).scaling.metrics[0].source
    assert source == TierSource("WebTier", "web", TierValue(value), None)


def test_worker_pool_edges_count_the_spec_list_only() -> None:
    doc = next(d for d in load_docs(EXAMPLES / "stack.yaml") if d["kind"] == "WorkerPool")
    doc["spec"]["metrics"] = [
        {
            "name": "web",
            "tier": {"kind": "WebTier", "name": "web", "value": "DesiredCapacity"},
            "target": {"type": "AverageValue", "value": 4},
        }
    ]
    (edge,) = tier_edges(parse_resource(doc))
    assert edge.index == 0  # spec.metrics[0], not the implicit backlog metric before it


# --- the graph ------------------------------------------------------------------

REFS = [TierRef(k, n) for k in ("WebTier", "CachePool") for n in ("a", "b", "c")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(REFS), st.sampled_from(REFS)), max_size=12))
def test_a_cycle_is_found_exactly_when_a_node_reaches_itself(
    pairs: list[tuple[TierRef, TierRef]],
) -> None:
    graph: dict[TierRef, set[TierRef]] = {}
    for a, b in pairs:
        graph.setdefault(a, set()).add(b)

    def reach(start: TierRef) -> set[TierRef]:  # the naive closure
        seen: set[TierRef] = set()
        todo = list(graph.get(start, ()))
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(graph.get(n, ()))
        return seen

    for ref in REFS:
        path = cycle_through(ref, lambda r: graph.get(r, ()))
        assert (path is not None) == (ref in reach(ref))
        if path is None:
            continue
        assert path[0] == path[-1] == ref
        assert all(b in graph.get(a, ()) for a, b in itertools.pairwise(path))
        assert len(set(path[:-1])) == len(path) - 1  # elementary: nothing twice
        # shortest: no node of it reaches ref in fewer steps than the path takes
        assert len(path) - 1 <= 1 + min(
            (_distance(graph, n, ref) for n in graph.get(ref, ())), default=math.inf
        )


def _distance(graph: dict[TierRef, set[TierRef]], a: TierRef, b: TierRef) -> float:
    frontier, seen, d = {a}, {a}, 0
    while frontier:
        if b in frontier:
            return d
        frontier = {n for f in frontier for n in graph.get(f, ())} - seen
        seen |= frontier
        d += 1
    return math.inf


def test_find_cycles_names_each_member_with_its_edge() -> None:
    a, b, c, d = (TierRef("WebTier", x) for x in "abcd")
    edges = {
        a: (TierEdge(0, "m", b),),
        b: (TierEdge(1, "n", d), TierEdge(2, "o", c)),
        c: (TierEdge(0, "p", a),),
        d: (),
    }
    found = {f.resource: f for f in find_cycles(edges)}
    assert set(found) == {a, b, c}
    assert found[b].edge == TierEdge(2, "o", c)
    assert found[b].path == (b, c, a, b)
    assert "WebTier b -> WebTier c -> WebTier a -> WebTier b" in found[b].message
    assert "remove the tier source of one of them" in found[b].message


# --- stackscaler validate -----------------------------------------------------


def test_document_errors_name_the_cycle_across_documents() -> None:
    db = pool("db", metric="cpu")
    front = web()
    front["spec"]["metrics"].append(
        {
            "name": "db",
            "tier": {"kind": "ReadReplicaPool", "name": "db", "value": "ReadyCapacity"},
            "target": {"type": "AverageValue", "value": 2},
        }
    )
    other_ns = pool("db", ns="elsewhere", metric="nope")  # not followed by shop/web
    errors = document_errors([front, None, db, other_ns])
    assert [str(e) for e in errors[0]] == [
        "spec.metrics[1].tier: tier sources form a cycle: WebTier web -> ReadReplicaPool db "
        "-> WebTier web; each would follow the others' decisions and never settle: remove the "
        "tier source of one of them"
    ]
    assert [e.path for e in errors[2]] == ["spec.metrics[0].tier", "spec.metrics[0].tier.metric"]
    assert "WebTier web has no metric 'cpu'; its metrics are: db, rpm" in str(errors[2][1])
    assert 3 not in errors  # another namespace: web is not among its documents
    assert document_errors([web(), pool("db", metric="rpm")]) == {}  # no cycle, a real metric


def test_validate_reports_a_cycle_across_files(tmp_path: Path) -> None:
    loop = web()
    loop["metadata"] = {"name": "web", "namespace": "shop"}
    loop["spec"]["metrics"] = [
        {
            "name": "readers",
            "tier": {"kind": "ReadReplicaPool", "name": "catalog-readers", "value": "Demand"},
            "target": {"type": "AverageValue", "value": 1},
        }
    ]
    (tmp_path / "web.yaml").write_text(yaml.safe_dump(loop))
    r = run("validate", "-f", str(tmp_path / "web.yaml"), "-f", str(FOLLOWS_WEB))
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert len(lines) == 3, r.stdout
    assert (
        "(WebTier shop/web): spec.metrics[0].tier: tier sources form a cycle: WebTier web "
        in (lines[0])
    )
    assert "ReadReplicaPool catalog-readers -> WebTier web" in lines[0]
    assert "(ReadReplicaPool shop/catalog-readers): spec.metrics[0].tier: " in lines[1]
    assert lines[2].endswith(  # and the metric it follows is not web's (any more)
        "spec.metrics[0].tier.metric: WebTier web has no metric 'requests-per-minute'; its "
        "metrics are: readers"
    )
    assert "3 problem(s) in 2 of 2 resource(s)" in r.stderr


# --- the source on the operator's index -----------------------------------------


async def test_each_value_from_the_status_as_written() -> None:
    index = indexed(web(status=written()))
    assert await read(index, pool()) == 4200.0
    assert await read(index, pool_without_metric("Demand")) == 9
    assert await read(index, pool_without_metric("DesiredCapacity")) == 8
    assert await read(index, pool_without_metric("ReadyCapacity")) == 4


async def test_the_sample_time_decides_staleness() -> None:
    index = indexed(web(status=written()))
    doc = pool()
    doc["spec"]["metrics"][0]["staleAfterSeconds"] = 100
    sample = await TierMetricSource(index).read(query(doc), T0 + timedelta(seconds=40))
    assert sample.timestamp == T0 - timedelta(seconds=60)  # the rpm sample, not the decision
    with pytest.raises(MetricStale, match=r"101s old \(staleAfterSeconds 100\)"):
        await read(index, doc, T0 + timedelta(seconds=41))
    demand = pool_without_metric("Demand")
    demand["spec"]["metrics"][0]["staleAfterSeconds"] = 100
    assert await read(index, demand, T0 + timedelta(seconds=100)) == 9  # the decision's time


@pytest.mark.parametrize(
    ("doc", "status", "message"),
    [
        (pool(ns="other"), written(), "no WebTier web in namespace other"),
        (pool(metric="cpu"), written(), "it has no metric of that name"),
        (pool(), {"desiredCapacity": 3}, "it has not recorded a decision yet"),
        (pool(), written(lastDecision={"time": "2026-11-26T12:00:00Z"}), "not in its last dec"),
        (
            pool(),
            written(lastDecision={"time": "2026-11-26T12:00:00Z", "metrics": [{"name": "rpm"}]}),
            "not known at its last decision",
        ),
        (
            pool_without_metric("Demand"),
            written(lastDecision={"time": "2026-11-26T12:00:00Z"}),
            "unknown at its last decision",
        ),
        (
            pool_without_metric("ReadyCapacity"),
            written(startingCapacity=None),
            "no currentCapacity and startingCapacity",
        ),
        (pool_without_metric("DesiredCapacity"), written(desiredCapacity=-1), "no desiredCapacity"),
    ],
)
async def test_missing_is_unknown_not_zero(
    doc: dict[str, Any], status: dict[str, Any], message: str
) -> None:
    index = indexed(web(status={k: v for k, v in status.items() if v is not None}))
    with pytest.raises(MetricUnavailable, match=message) as info:
        await read(index, doc)
    assert info.value.temporary and not isinstance(info.value, MetricStale)


HOSTILE_METRICS: list[Any] = [
    {"name": "rpm", "state": "Known", "value": True, "time": "2026-11-26T12:00:00Z"},
    {"name": "rpm", "state": "Known", "value": "4200", "time": "2026-11-26T12:00:00Z"},
    {"name": "rpm", "state": "Known", "value": float("nan"), "time": "2026-11-26T12:00:00Z"},
    {"name": "rpm", "state": "Known", "value": float("inf"), "time": "2026-11-26T12:00:00Z"},
    {"name": "rpm", "state": "Known", "value": 1.0, "time": "yesterday"},
    {"name": "rpm", "state": "Known", "value": 1.0, "time": 1764158400},
    {"name": "rpm", "state": "Stale", "value": 1.0, "time": "2026-11-26T12:00:00Z"},
    {"name": "rpm", "state": "Known\n2026 ERROR forged", "value": 1.0, "time": "2026-11-26T12Z"},
]


@pytest.mark.parametrize("entry", HOSTILE_METRICS)
async def test_a_hostile_status_is_unknown_and_never_quoted(entry: dict[str, Any]) -> None:
    status = written()
    status["lastDecision"]["metrics"] = [entry]
    with pytest.raises(MetricUnavailable) as info:
        await read(indexed(web(status=status)), pool())
    assert "\n" not in str(info.value) and "forged" not in str(info.value)


@pytest.mark.parametrize(
    "status",
    [
        None,
        "garbage",
        {"lastDecision": "x", "desiredCapacity": "8"},
        {"lastDecision": {"time": True, "metrics": {"rpm": 1}}, "currentCapacity": False},
        {"lastDecision": {"time": "2026-11-26T12:00:00Z", "recommendation": -3}},
    ],
)
def test_tier_status_of_garbage_holds_nothing(status: Any) -> None:
    doc = web()
    doc["status"] = status
    parsed = TierStatus.of(doc)
    assert (parsed.desired, parsed.current, parsed.demand, dict(parsed.metrics)) == (
        None,
        None,
        None,
        {},
    )
    assert parsed.declared == {"rpm"}


async def test_a_cycle_is_refused_for_its_members_only() -> None:
    db = pool("db")  # db follows web ...
    front = web(status=written())
    front["spec"]["metrics"].append(  # ... and web follows db
        {
            "name": "db",
            "tier": {"kind": "ReadReplicaPool", "name": "db", "value": "DesiredCapacity"},
            "target": {"type": "AverageValue", "value": 2},
        }
    )
    cache = pool("sessions", value="DesiredCapacity", metric=None)
    index = indexed(front, db, cache)
    with pytest.raises(TierCycle) as info:
        await read(index, db)
    assert not info.value.temporary
    assert str(info.value) == (
        "shop/db metric follow: WebTier web metric rpm: tier sources form a cycle: "
        "ReadReplicaPool db -> WebTier web -> ReadReplicaPool db; each would follow the "
        "others' decisions and never settle: remove the tier source of one of them"
    )
    assert await read(index, cache) == 8  # follows web too, not in the cycle: served
    front["spec"]["metrics"].pop()  # the fix: web no longer follows db
    index.update(front)
    assert await read(index, db) == 4200.0


async def test_a_resource_naming_itself_is_a_cycle_in_the_operator_too() -> None:
    """The API server refuses it (CEL at the root); a resource stored before that rule
    existed still reaches the operator."""
    me = web(status=written())
    me["spec"]["metrics"] = [
        {
            "name": "me",
            "tier": {"kind": "WebTier", "name": "web", "value": "DesiredCapacity"},
            "target": {"type": "AverageValue", "value": 1},
        }
    ]
    q = MetricQuery("shop/web", _metric(me), "WebTier")
    with pytest.raises(TierCycle, match=r"WebTier web -> WebTier web \(it follows itself\)"):
        await TierMetricSource(indexed(me)).read(q, T0)


def _metric(doc: dict[str, Any]) -> MetricSpec:
    m = doc["spec"]["metrics"][0]
    t = m["tier"]
    return MetricSpec(m["name"], TierSource(t["kind"], t["name"], TierValue(t["value"])))


def test_the_index_follows_specs_and_deletions() -> None:
    index = indexed(web(status=written()), pool("db"), pool("db", ns="other"))
    assert index.followed("shop", "WebTier", "web")
    assert index.followed("other", "WebTier", "web")  # its own web, which is not there
    assert not index.followed("shop", "ReadReplicaPool", "db")
    index.update(pool(kind="CachePool", name="sessions", value="Demand", metric=None))
    assert not index.followed("shop", "WebTier", "web")
    assert index.followed("shop", "CachePool", "sessions")
    index.remove(pool("db"))
    assert not index.followed("shop", "CachePool", "sessions")
    assert index.status("shop", "ReadReplicaPool", "db") is None
    assert len(index) == 2


async def test_the_registry_reads_tier_sources_from_the_index_it_is_given() -> None:
    index = indexed(web(status=written()))
    sources = MetricSources(caller=None, tiers=index)  # type: ignore[arg-type]
    try:
        readings = await sources.observe_all(parse_resource(pool()), T0)
    finally:
        await sources.close()
    obs, err = readings["follow"]
    assert (obs.value, err) == (4200.0, None)


# --- the reconciler's side ------------------------------------------------------


async def test_reconciler_writes_what_followers_read() -> None:
    """A tick's status, as the reconciler writes it, read back through the index."""
    w = World(web())
    w.sources.values = {"rpm": 100.0}
    await w.tick()
    status = w.body["status"]
    decision = status["lastDecision"]
    assert decision["recommendation"] == 6
    assert decision["metrics"][0]["time"] == "2026-11-26T12:00:00Z"  # FakeSources: now
    index = indexed(w.body)
    assert await read(index, pool()) == 100.0
    assert await read(index, pool_without_metric("Demand")) == 6
    w.sources.values = {"rpm": None}  # unknown: no demand (a floor held is not demand)
    await w.tick(after=30)
    assert "recommendation" not in w.body["status"]["lastDecision"]
    with pytest.raises(MetricUnavailable):
        await read(indexed(w.body), pool_without_metric("Demand"))


async def test_a_followed_resource_is_written_every_tick() -> None:
    w = World(web())
    w.sources.values = {"rpm": 50.0}  # on target: every tick decides the same
    await w.tick()
    for _ in range(3):
        await w.tick(after=30)  # only volatile parts change: held back
    before = w.writes()
    assert before <= 2  # the first write, and at most the resource's one early refresh
    w.reconciler.followed = lambda ref: (
        (ref.namespace, ref.kind, ref.name)
        == (
            "shop",
            "WebTier",
            "web",
        )
    )
    for n in range(1, 4):
        await w.tick(after=30)
        assert w.writes() == before + n
    decided = w.body["status"]["lastDecision"]["time"]
    assert decided == (T0 + timedelta(seconds=180)).isoformat().replace("+00:00", "Z")


def test_recommendation_and_metric_times_are_volatile() -> None:
    a = written()
    b = copy.deepcopy(a)
    b["lastDecision"]["recommendation"] = 12
    b["lastDecision"]["metrics"][0]["time"] = "2026-11-26T12:30:00Z"
    assert material(a) == material(b)


def test_errors_are_in_the_tree() -> None:
    assert issubclass(TierCycle, StackscalerError) and not TierCycle.temporary


# --- the operator's wiring ------------------------------------------------------


async def test_the_operator_indexes_every_resource_whatever_its_shard_or_selector(
    tmp_path: Path,
) -> None:
    """The watch of the four kinds feeds the index before the selector and the shards
    decide what this replica acts on: a tier served elsewhere is read all the same."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    op = Operator(
        RunSettings(
            kubeconfig=str(kubeconfig),
            selector=(("team", "db"),),  # web is not selected by this operator
            leases=LeaseSettings(namespace="ops", identity="r1", shards=4),  # none held
        )
    )
    try:
        front, db = web(status=written()), pool()
        db["metadata"]["labels"] = {"team": "db"}
        op.on_event({"type": None}, front)
        op.on_event({"type": "ADDED"}, db)
        assert len(op.scheduler) == 0  # acts on nothing: no shard held
        assert op.reconciler.followed(Ref("WebTier", "shop", "web", "uid-web"))
        readings = await op.sources.observe_all(parse_resource(db), T0)
        assert readings["follow"][0].value == 4200.0
        op.on_event({"type": "DELETED"}, front)
        obs, err = (await op.sources.observe_all(parse_resource(db), T0))["follow"]
        assert obs.value is None and isinstance(err, MetricUnavailable)
        assert "no WebTier web in namespace shop" in str(err)
    finally:
        await op.close()
