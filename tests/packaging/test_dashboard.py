"""The Grafana dashboard in the chart (charts/stackscaler/dashboards/stackscaler.json).

* The chart renders it into a ConfigMap for Grafana's dashboard sidecar only when
  ``dashboard.enabled``; labels, annotations, folder and namespace as the values say.
* Every PromQL expression of the dashboard (panel targets and variable queries) names
  only metrics the operator exports, read by a small PromQL lexer (tests/packaging/
  promql.py) and checked against what the operator's own /metrics serves: an
  ``Operator`` built as ``stackscaler run`` builds it, its HealthServer started on
  loopback, one sample of every family recorded through the operator's metric calls,
  then scraped over HTTP. The other way round, every family it exports is on the
  dashboard.
* The real Prometheus (Debian's package) scrapes that server; every expression, with
  Grafana's variables substituted (all values, then a selection), runs through
  /api/v1/query and returns series, and every vector selector of every expression
  (label matchers included) matches series through /api/v1/series.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from stackscaler.errors import MetricUnavailable, Throttled
from stackscaler.handlers.operator import Operator, RunSettings
from stackscaler.observability import OperatorMetrics
from stackscaler.policy import History, MetricObservation, Observations, decide
from stackscaler.policy.types import Direction
from tests.integration.netutil import free_port
from tests.integration.prometheus_fixtures import _prometheus_binary, _stop, start_prometheus
from tests.packaging.promql import PromQLError, family_of, metric_names, selectors
from tests.packaging.test_chart import CHART, RELEASE, RELEASE_NS, Helm, find, helm, one
from tests.unit.policy_helpers import NOW, metric, scaling

__all__ = ["helm"]  # the fixture, found by pytest as a module attribute

DASHBOARD = CHART / "dashboards" / "stackscaler.json"
SIDECAR_LABEL = {"grafana_dashboard": "1"}
ROWS = [
    "Overview",
    "Capacity",
    "Decisions and their limits",
    "Scaling metrics",
    "AWS calls",
    "Reconcile latency",
    "Status writes and Events",
]
NOT_ON_DASHBOARD: dict[str, str] = {
    "stackscaler_forecast_floor": "spec.predictive is new: no panel yet (status shows it)",
    "stackscaler_forecast_refreshes": "spec.predictive is new: no panel yet (its Events say it)",
}
"""Families the operator exports that the dashboard leaves out, each with the reason."""

GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "30s", "__range": "5m"}
"""Grafana's own variables, as a short range on a 1 s scrape."""
ALL = {"kind": ".*", "namespace": ".*", "name": ".*"}
"""Every variable at "All" (its allValue)."""
SELECTION = {"kind": "(WebTier|CachePool)", "namespace": "(shop)", "name": "(web|cache)"}
"""A multi-value selection, as Grafana formats one for a regex matcher."""
WAIT = 60.0
"""Upper bound of the wait for Prometheus to have scraped what every query needs."""

UNUSED_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: unused, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: unused, user: {token: unused}}]
contexts: [{name: unused, context: {cluster: unused, user: unused}}]
current-context: unused
"""
"""The operator is built but never started: no Kubernetes API is contacted."""


# --- the dashboard file ------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def all_panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in doc["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every expression anywhere in the dashboard, variable queries
    excepted (``label_values`` is Grafana's, see :func:`variable_queries`)."""
    found: list[tuple[str, str]] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append((where, node["expr"]))
            for key, value in node.items():
                if key != "templating":
                    walk(value, f"{where}/{node.get('title', key)}")
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk(doc, "")
    return found


LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.+),\s*(?P<label>[A-Za-z_]\w*)\s*\)\s*$")


def variable_queries(doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Query variables: name -> (selector, label) of their ``label_values(...)``."""
    out: dict[str, tuple[str, str]] = {}
    for var in doc["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"] if isinstance(var["query"], str) else var["query"]["query"]
        m = LABEL_VALUES.match(query)
        assert m, f"variable {var['name']}: not a label_values query: {query!r}"
        out[var["name"]] = (m["selector"], m["label"])
    return out


VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr: str, values: dict[str, str]) -> str:
    """``expr`` with Grafana's variables replaced; an unknown variable fails the test."""

    def value(m: re.Match[str]) -> str:
        name = m[1] or m[2] or m[3]
        known = {**GRAFANA_BUILTINS, **values}
        assert name in known, f"unknown variable ${name} in {expr!r}"
        return known[name]

    return VARIABLE.sub(value, expr)


def dashboard_families(types: dict[str, str]) -> dict[str, set[str]]:
    """Family -> where on the dashboard (panel titles) it is read."""
    doc = dashboard()
    out: dict[str, set[str]] = {}
    for where, expr in expressions(doc):
        for name in metric_names(substitute(expr, ALL)):
            family = family_of(name, types)
            assert family is not None, f"{where}: {name} is not a series the operator exports"
            out.setdefault(family, set()).add(where)
    for var, (selector, _) in variable_queries(doc).items():
        for name in metric_names(substitute(selector, ALL)):
            family = family_of(name, types)
            assert family is not None, f"variable {var}: {name} is not exported"
            out.setdefault(family, set()).add(f"variable {var}")
    return out


def test_the_dashboard_has_the_variables_rows_and_panels_it_documents() -> None:
    doc = dashboard()
    assert doc["uid"] == "stackscaler" and doc["title"] == "stackscaler"
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert list(variables) == ["datasource", "kind", "namespace", "name"]
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource",
        "prometheus",
    )
    for name in ("kind", "namespace", "name"):
        var = variables[name]
        assert (var["type"], var["multi"], var["includeAll"], var["allValue"]) == (
            "query",
            True,
            True,
            ".*",
        )
        assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    # each variable narrows the next: namespaces of the kinds chosen, names of both
    assert variable_queries(doc) == {
        "kind": ("stackscaler_capacity_desired", "kind"),
        "namespace": ('stackscaler_capacity_desired{kind=~"$kind"}', "namespace"),
        "name": (
            'stackscaler_capacity_desired{kind=~"$kind", namespace=~"$namespace"}',
            "name",
        ),
    }

    panels = list(all_panels(doc))
    assert [p["title"] for p in panels if p["type"] == "row"] == ROWS
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in panels:
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24, p["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["description"], p["title"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"] == p["datasource"], p["title"]
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), p["title"]
    # the per-resource panels follow all three variables
    per_resource = [e for _, e in expressions(doc) if "stackscaler_capacity_current" in e]
    assert per_resource
    for expr in per_resource:
        for var in ("$kind", "$namespace", "$name"):
            assert var in expr, expr


# --- the PromQL reader -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('up{job="a", instance=~"b.*"}', {"up"}),
        ("rate(http_requests_total[5m])", {"http_requests_total"}),
        (
            'histogram_quantile(0.99, sum by (le, kind) (rate(x_bucket{le="5.0"}[1m])))',
            {"x_bucket"},
        ),
        ("sum(rate(a[5m])) by (le, job) / ignoring(job) group_left(le) b", {"a", "b"}),
        ("a / on (x) group_right b", {"a", "b"}),
        ("count(a == 0) or vector(0)", {"a"}),
        ("time() - last_seen_seconds", {"last_seen_seconds"}),
        ("a > bool 1e3 and Inf < b unless c", {"a", "b", "c"}),
        ('topk(3, a) + quantile(0.9, b) + count_values("v", c)', {"a", "b", "c"}),
        ('label_replace(a, "dst", "$1", "src", "(.*)")', {"a"}),
        ('a{b=~"[[:alpha:]]+$"}', {"a"}),
        ("a offset 5m + b @ start() + c[10m:1m]", {"a", "b", "c"}),
        ('a{x="rate(b[5m]) by (c)", y=~"}\\"{"}', {"a"}),
        ('{__name__="a", job="x"}', {"a"}),
        ('{"a.b", job="x"} + {"q"="r", __name__="c"}', {"a.b", "c"}),
        ("# a comment naming not_a_metric\nreal_one", {"real_one"}),
        ("SUM BY (x) (a) OR b", {"a", "b"}),
        ("recording:rule:rate5m", {"recording:rule:rate5m"}),
        ("-a * 2 ^ .5", {"a"}),
    ],
)
def test_promql_reader_finds_exactly_the_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_promql_reader_keeps_each_selector_with_its_matchers() -> None:
    expr = 'sum by (x) (rate(a{b="c", d!~"e"}[5m])) / ignoring(x) f'
    assert selectors(expr) == [("a", 'a{b="c", d!~"e"}'), ("f", "f")]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ('rate(a{kind=~"$kind"}[5m])', "template variable"),
        ("rate(a[$__rate_interval])", "template variable"),
        ('a{b="${c}"}', "template variable"),
        ("rate(a[[[interval]]])", "template variable"),
        ('{__name__=~"stackscaler_.*"}', "cannot be checked"),
        ('a{b="c"', "unbalanced"),
        ('a{b="c}', "unterminated string"),
        ("a{b}", "without a matcher"),
        ("a{b=c}", "without a string"),
    ],
)
def test_promql_reader_refuses_what_it_cannot_check(expr: str, message: str) -> None:
    with pytest.raises(PromQLError, match=message):
        metric_names(expr)


def test_family_of_maps_series_names_to_their_family() -> None:
    types = {"h": "histogram", "c": "counter", "g": "gauge", "s": "summary"}
    assert [family_of(n, types) for n in ("h_bucket", "h_sum", "h_count", "h")] == [
        "h",
        "h",
        "h",
        None,  # a histogram has no series of its own name
    ]
    assert [family_of(n, types) for n in ("c_total", "c_created", "c")] == ["c", "c", None]
    assert [family_of(n, types) for n in ("g", "g_total", "s", "s_count")] == ["g", None, "s", "s"]
    assert family_of("nope", types) is None


def test_substitute_knows_every_variable_form_and_refuses_unknown_ones() -> None:
    expr = 'rate(a{kind=~"$kind", namespace=~"${namespace}", name=~"[[name]]"}[$__rate_interval])'
    assert substitute(expr, {"kind": "K", "namespace": "N", "name": "X"}) == (
        'rate(a{kind=~"K", namespace=~"N", name=~"X"}[1m])'
    )
    with pytest.raises(AssertionError, match="unknown variable"):
        substitute("a[$nope]", {})


# --- the chart ---------------------------------------------------------------------------


def dashboard_maps(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in find(docs, "ConfigMap") if "stackscaler.json" in (d.get("data") or {})]


def test_the_dashboard_is_off_by_default(helm: Helm) -> None:
    docs = helm.template()
    assert dashboard_maps(docs) == []
    assert not [d for d in docs if "grafana_dashboard" in d["metadata"].get("labels", {})]


def test_enabled_it_is_a_configmap_for_the_grafana_sidecar(helm: Helm) -> None:
    docs = helm.template({"dashboard": {"enabled": True}})
    cm = one(docs, "ConfigMap", "rel-stackscaler-dashboard")
    assert dashboard_maps(docs) == [cm]
    meta = cm["metadata"]
    assert meta["namespace"] == RELEASE_NS
    assert (
        meta["labels"].items() >= {**SIDECAR_LABEL, "app.kubernetes.io/instance": RELEASE}.items()
    )
    assert "annotations" not in meta  # no folder unless asked
    assert list(cm["data"]) == ["stackscaler.json"]
    assert json.loads(cm["data"]["stackscaler.json"]) == dashboard()  # the file, unchanged


def test_folder_annotations_namespace_and_labels_follow_the_values(helm: Helm) -> None:
    values = {
        "dashboard": {
            "enabled": True,
            "namespace": "monitoring",
            "folder": "Platform/Autoscaling",
            "annotations": {"example.com/owner": "platform"},
            "labels": {"team": "platform"},
        }
    }
    cm = one(helm.template(values), "ConfigMap", "rel-stackscaler-dashboard")
    meta = cm["metadata"]
    assert meta["namespace"] == "monitoring"
    assert meta["annotations"] == {
        "example.com/owner": "platform",
        "k8s-sidecar-target-directory": "Platform/Autoscaling",
    }
    assert meta["labels"].items() >= {**SIDECAR_LABEL, "team": "platform"}.items()

    # a sidecar set up with another label and folder annotation (Helm merges maps: null
    # drops the default label)
    other = copy.deepcopy(values)
    other["dashboard"].update(
        labels={"grafana_dashboard": None, "dashboards": "grafana"},
        folderAnnotation="grafana_folder",
        annotations={},
    )
    meta = one(helm.template(other), "ConfigMap", "rel-stackscaler-dashboard")["metadata"]
    assert "grafana_dashboard" not in meta["labels"]
    assert meta["labels"]["dashboards"] == "grafana"
    assert meta["annotations"] == {"grafana_folder": "Platform/Autoscaling"}


@pytest.mark.parametrize("folder", ["", "Platform"])
def test_lint_passes_with_the_dashboard(helm: Helm, folder: str) -> None:
    values = {"dashboard": {"enabled": True, "folder": folder}}
    out = helm("lint", "--strict", str(CHART), "--namespace", RELEASE_NS, values=values)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("dashboard.enable=true", "additional properties 'enable' not allowed"),
        ("dashboard.folderAnnotation=", "folderAnnotation"),
        ("dashboard.namespace=Not_A_Namespace", "namespace"),
    ],
)
def test_a_typo_in_dashboard_values_fails_with_the_schema_error(
    helm: Helm, setting: str, message: str
) -> None:
    out = helm("template", RELEASE, str(CHART), "--set", setting)
    assert out.returncode != 0, out.stdout
    assert message in out.stderr, out.stderr


def test_values_yaml_defaults_match_the_sidecar_conventions() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["dashboard"]
    assert values == {
        "enabled": False,
        "namespace": "",
        "labels": SIDECAR_LABEL,
        "annotations": {},
        "folder": "",
        "folderAnnotation": "k8s-sidecar-target-directory",
    }


# --- what the operator exports -----------------------------------------------------------


@dataclass(frozen=True)
class Exposition:
    url: str
    """The operator's /metrics server, http://127.0.0.1:PORT."""
    text: str
    types: dict[str, str]
    """Family -> type, as prometheus_client's parser names them (counters without _total)."""
    series: dict[str, str]
    """Every series name scraped -> its family."""
    sampled: set[str]
    """Families with at least one sample."""


def record_one_of_each(m: OperatorMetrics) -> None:
    """At least one sample of every family, through the calls the operator makes."""
    spec = scaling([metric("cpu", 50), metric("rps", 100)], max_capacity=7)
    # 6 units, 2 starting, 1 leaving; cpu at 90 on the 4 ready asks 8, capped at 7; rps unknown
    seen = Observations(
        6,
        {"cpu": MetricObservation(90.0), "rps": MetricObservation.unknown("no datapoints")},
        starting=2,
        leaving=1,
    )
    limited = decide(spec, seen, History(), NOW)
    assert limited.limited_by is not None and limited.direction is Direction.OUT
    at = NOW.timestamp()
    m.record_decision("WebTier", "shop", "web", limited, at=at, took=0.4, late=0.0)
    m.record_decision("WebTier", "shop", "web", limited, at=at + 30, took=0.3, late=6.0)
    settled = decide(spec, Observations(3, {"cpu": MetricObservation(50.0)}), History(), NOW)
    m.record_decision("CachePool", "shop", "cache", settled, at=at, took=0.2)
    m.record_scale("WebTier", "shop", "web", Direction.OUT)
    m.record_error("WebTier", "shop", "web", MetricUnavailable("rps: no datapoints"))
    m.record_error("CachePool", "shop", "cache", Throttled("slow down", delay=1))
    m.set_mode("WebTier", "shop", "web", paused=False, dry_run=False)
    m.set_mode("CachePool", "shop", "cache", paused=True, dry_run=True)
    for kind in ("WebTier", "CachePool"):
        with m.observe_reconcile(kind):
            pass
        m.set_resources(kind, 1)
    calls = m.aws_call_hook()
    calls("autoscaling", "DescribeAutoScalingGroups", "ok")
    calls("autoscaling", "SetDesiredCapacity", "ok")
    calls("cloudwatch", "GetMetricData", "throttled")
    calls("elasticache", "DescribeReplicationGroups", "denied")
    m.limiter_wait_hook()("autoscaling", "eu-west-1", 0.25)
    m.record_status_write("written")
    m.record_status_write("skipped")
    m.record_event("WebTier", "Normal", "ScaledOut", "posted")
    m.record_event("WebTier", "Warning", "MetricUnavailable", "suppressed")
    m.record_event("CachePool", "Warning", "Throttled", "failed")
    m.record_forecast("WebTier", "shop", "web", 6)
    m.record_forecast_refresh("ready")


async def scrape(url: str) -> Exposition:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(f"{url}/metrics") as resp,
    ):
        assert resp.status == 200
        text = await resp.text()
    types: dict[str, str] = {}
    series: dict[str, str] = {}
    sampled: set[str] = set()
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            series[s.name] = family.name
            sampled.add(family.name)
    return Exposition(url, text, types, series, sampled)


@pytest.fixture
async def exported(tmp_path: Path) -> AsyncIterator[Exposition]:
    """The operator's /metrics as ``stackscaler run`` serves it, one sample of each family."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNUSED_KUBECONFIG)
    operator = Operator(
        RunSettings(metrics_host="127.0.0.1", metrics_port=0, kubeconfig=str(kubeconfig))
    )
    try:
        port = await operator.health.start()
        record_one_of_each(operator.metrics)
        yield await scrape(f"http://127.0.0.1:{port}")
    finally:
        await operator.close()


async def test_every_metric_on_the_dashboard_is_one_the_operator_exports(
    exported: Exposition,
) -> None:
    doc = dashboard()
    exprs = expressions(doc)
    assert len(exprs) >= 40
    for where, expr in exprs:
        for values in (ALL, SELECTION):
            names = metric_names(substitute(expr, values))
            assert names, f"{where}: {expr!r} reads no metric"
            missing = names - set(exported.series)
            assert not missing, f"{where}: {sorted(missing)} not served on /metrics"
    for var, (selector, label) in variable_queries(doc).items():
        names = metric_names(substitute(selector, ALL))
        assert names and names <= set(exported.series), var
        assert f'{label}="' in exported.text  # the label is on what it lists


async def test_every_family_the_operator_exports_is_on_the_dashboard(
    exported: Exposition,
) -> None:
    assert exported.sampled == set(exported.types), "record_one_of_each missed a family"
    # prometheus_client writes each counter's and histogram's creation time as a gauge
    # family of its own, X_created: a by-product, not a metric to chart
    created = {
        f
        for f, type_ in exported.types.items()
        if f.endswith("_created")
        and exported.types.get(f.removesuffix("_created")) in ("counter", "histogram")
    }
    assert created  # the operator-wide counters and histograms keep theirs
    on_dashboard = dashboard_families(exported.types)
    assert set(on_dashboard) <= set(exported.types) - created
    assert set(exported.types) - created - set(on_dashboard) == set(NOT_ON_DASHBOARD)
    # the families the issue names are all there
    for family in (
        "stackscaler_capacity_current",
        "stackscaler_capacity_desired",
        "stackscaler_capacity_starting",
        "stackscaler_decisions",
        "stackscaler_metric_known",
        "stackscaler_aws_calls",
        "stackscaler_reconcile_duration_seconds",
        "stackscaler_decision_lateness_seconds",
        "stackscaler_status_writes",
        "stackscaler_events",
    ):
        assert family in on_dashboard, family


# --- against the real Prometheus ---------------------------------------------------------


def prometheus_get(base: str, path: str, **params: str | list[str]) -> dict[str, Any]:
    """GET base+path; the decoded JSON of a success, else the test fails with Prometheus'
    own error (a 400 bad_data is a query Prometheus cannot parse)."""
    query = urllib.parse.urlencode(params, doseq=True)
    try:
        with urllib.request.urlopen(f"{base}{path}?{query}", timeout=10) as resp:
            body: dict[str, Any] = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{path} {params}: {exc.code} {exc.read().decode()}") from exc
    assert body["status"] == "success", body
    return body


def unanswered(base: str, queries: list[tuple[str, str]], start: float) -> list[str]:
    """The queries (and selectors) for which Prometheus has nothing yet."""
    empty: list[str] = []
    for kind, text in queries:
        if kind == "query":
            result = prometheus_get(base, "/api/v1/query", query=text)["data"]["result"]
        else:
            result = prometheus_get(
                base, "/api/v1/series", **{"match[]": text, "start": f"{start:.3f}"}
            )["data"]
        if not result:
            empty.append(f"{kind} {text}")
    return empty


async def test_every_query_runs_on_prometheus_and_finds_the_operators_series(
    exported: Exposition, tmp_path: Path
) -> None:
    binary = _prometheus_binary()  # skips without it, fails under CI=true
    port = free_port()
    target = exported.url.removeprefix("http://")
    proc, log = await asyncio.to_thread(
        start_prometheus, binary, target, tmp_path / "prometheus", port
    )
    base = f"http://127.0.0.1:{port}"
    try:
        doc = dashboard()
        queries: list[tuple[str, str]] = []
        for values in (ALL, SELECTION):
            for _, expr in expressions(doc):
                text = substitute(expr, values)
                queries.append(("query", text))
                queries += [("series", selector) for _, selector in selectors(text)]
            for selector, _ in variable_queries(doc).values():
                queries.append(("series", substitute(selector, values)))
        queries = list(dict.fromkeys(queries))
        start = time.time() - 60

        # every expression parses, at once, before any data is there
        for kind, text in queries:
            if kind == "query":
                await asyncio.to_thread(prometheus_get, base, "/api/v1/query", query=text)

        # and each finds series once Prometheus has scraped the operator a few times
        deadline = time.monotonic() + WAIT
        while True:
            empty = await asyncio.to_thread(unanswered, base, queries, start)
            if not empty:
                break
            if time.monotonic() > deadline:
                log_tail = log.read_text(errors="replace")[-2000:]
                raise AssertionError(
                    f"{len(empty)} of {len(queries)} found nothing within {WAIT:g}s:\n"
                    + "\n".join(empty)
                    + f"\nPrometheus log:\n{log_tail}"
                )
            await asyncio.sleep(1.0)

        # the variables list the resources recorded, and only them
        for var, (selector, label) in variable_queries(doc).items():
            data = await asyncio.to_thread(
                prometheus_get,
                base,
                "/api/v1/series",
                **{"match[]": substitute(selector, ALL), "start": f"{start:.3f}"},
            )
            listed = {s[label] for s in data["data"]}
            expected = {"kind": {"WebTier", "CachePool"}, "namespace": {"shop"}}
            assert listed == expected.get(var, {"web", "cache"}), var
    finally:
        await asyncio.to_thread(_stop, proc)
