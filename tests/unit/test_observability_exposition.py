"""The per-resource collector's own text (ResourceSeries.render) against generate_latest."""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterable

import pytest
from bench import exposition as bench_exposition
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from stackscaler.errors import Throttled
from stackscaler.observability import OperatorMetrics
from stackscaler.observability.exposition import (
    ExpositionRegistry,
    escape_label_value,
    exposition,
    format_value,
)
from stackscaler.observability.resource_series import FAMILIES, ResourceSeries
from stackscaler.policy import Decision, Direction, History, Limit
from stackscaler.policy.types import MetricResult, MetricState

Sample = tuple[str, tuple[tuple[str, str], ...], str]

HOSTILE = (
    'a"}\n evil 1',
    "back\\slash",
    'quo"te',
    "new\nline",
    "trailing\\",
    '\\"',
    "\\n",
    "ünïcödé ☃ 名前",
    "",
    "} 1\n# TYPE x counter",
)


def decision(
    current: int = 3,
    *metrics: tuple[str, float | None, float | None],
    direction: Direction = Direction.OUT,
    limited_by: Limit | None = None,
) -> Decision:
    """A decision with ``metrics`` as (name, value or None for unknown, target)."""
    results = tuple(
        MetricResult(
            name,
            MetricState.UNKNOWN if value is None else MetricState.KNOWN,
            value,
            target,
            None,
            "",
        )
        for name, value, target in metrics
    )
    return Decision(
        current=current,
        desired=current + 1,
        direction=direction,
        limited_by=limited_by,
        reasons=(),
        metrics=results,
        recommendation=current + 1,
        min_capacity=1,
        max_capacity=100,
        active_schedules=(),
        metrics_available=True,
        fallback_active=False,
        history=History(),
    )


def samples(text: str) -> list[Sample]:
    """Every sample of ``text``, sorted; values as generate_latest writes them (NaN == NaN)."""
    return sorted(
        (s.name, tuple(sorted(s.labels.items())), floatToGoString(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    )


def families(text: str) -> list[str]:
    """The names in ``# TYPE`` lines, in order."""
    return [line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE ")]


def populate(m: OperatorMetrics, names: Iterable[tuple[str, str, str]]) -> None:
    for i, res in enumerate(names):
        m.record_decision(*res, decision(3, ("cpu", 61.5, 50.0), ("rps", None, 100.0)))
        m.record_decision(
            *res,
            decision(
                4, ("cpu", 12.0 * i, 50.0), ("rps", None, None), limited_by=Limit.MAX_CAPACITY
            ),
            at=1_800_000_000.5 + i,
        )
        m.record_scale(*res, Direction.OUT)
        m.record_scale(*res, Direction.IN)
        m.record_scale(*res, Direction.NONE)
        m.record_error(*res, Throttled("slow"))
        m.record_error(*res, ValueError("boom"))
        m.set_mode(*res, paused=i % 2 == 0, dry_run=True)


RESOURCES = [("WebTier", f"ns-{i % 3}", f"tier-{i}") for i in range(7)]


# --- render against generate_latest --------------------------------------------------


def test_render_is_what_generate_latest_writes_from_collect() -> None:
    m = OperatorMetrics()
    populate(m, RESOURCES)
    collector = m.resource_series
    text = collector.render()
    reference = generate_latest(collector).decode()

    assert samples(text) == samples(reference)
    # 4 capacities, 2 in flight, 3+1 per metric, 1 time, 6 counters, 2 modes
    assert len(samples(text)) == 7 * 19
    assert families(text) == [f.exposed_name for f in FAMILIES]
    assert text == reference  # same order, same escaping, same numbers: byte for byte


def test_per_resource_counters_have_no_created_series() -> None:
    m = OperatorMetrics()
    populate(m, RESOURCES[:1])
    assert "_created" not in m.resource_series.render()
    created = [
        (name, dict(labels))
        for name, labels, _ in samples(exposition(m.registry).decode())
        if name.endswith("_created")
    ]
    assert created  # operator-wide counters keep theirs (a handful of series)
    assert all("name" not in labels for _, labels in created)


def test_special_and_large_values_are_written_as_prometheus_expects() -> None:
    m = OperatorMetrics()
    values = [math.inf, -math.inf, math.nan, 0.0, -0.0, 1e-9, 1.8e9, 12345678.9, 1e22, -1e22]
    metrics = [(f"m{i}", v, 1.0) for i, v in enumerate(values)]
    m.record_decision("WebTier", "shop", "web", decision(3, *metrics), at=1_800_000_030.0)
    text = m.resource_series.render()
    assert text == generate_latest(m.resource_series).decode()
    assert samples(text) == samples(generate_latest(m.resource_series).decode())
    assert 'metric="m0",name="web",namespace="shop"} +Inf\n' in text
    assert 'metric="m1",name="web",namespace="shop"} -Inf\n' in text
    assert 'metric="m2",name="web",namespace="shop"} NaN\n' in text
    assert 'stackscaler_last_decision_timestamp_seconds{kind="WebTier",name="web",' in text
    assert "} 1.80000003e+09\n" in text


def test_format_value_agrees_with_prometheus_client() -> None:
    rnd = random.Random(7)
    values = [math.inf, -math.inf, math.nan, 0.0, -0.0, 5e-324, 2.0**53, 1e7, 123456.7]
    values += [rnd.uniform(-1e12, 1e12) for _ in range(500)]
    values += [10 ** rnd.uniform(-30, 30) for _ in range(500)]
    values += [float(rnd.randint(0, 10**13)) for _ in range(500)]
    for v in values:
        assert format_value(v) == floatToGoString(v), v


# --- hostile label values ------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_label_values_round_trip(hostile: str) -> None:
    m = OperatorMetrics()
    res = ("Web\\Tier", hostile, hostile + "-name")
    m.record_decision(*res, decision(3, (hostile, 1.0, 2.0)), at=1.0)
    m.record_error(*res, Throttled(hostile))
    m.set_mode(*res, paused=True, dry_run=False)
    text = m.resource_series.render()

    assert samples(text) == samples(generate_latest(m.resource_series).decode())
    assert families(text) == [f.exposed_name for f in FAMILIES]  # nothing injected
    parsed = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert len(parsed) == 14
    for s in parsed:
        assert (s.labels["kind"], s.labels["namespace"], s.labels["name"]) == res
    value = next(s for s in parsed if s.name == "stackscaler_metric_value")
    assert value.labels["metric"] == hostile
    assert not any(s.name == "evil" for s in parsed)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.text(max_size=12),
    namespace=st.text(max_size=12),
    name=st.text(alphabet=st.sampled_from('ab"\\\n}{ =,é☃'), max_size=12),
    metric_name=st.text(max_size=12),
)
def test_any_label_values_round_trip(
    kind: str, namespace: str, name: str, metric_name: str
) -> None:
    s = ResourceSeries()
    res = (kind, namespace, name)
    s.record_decision(
        res,
        current=1,
        desired=2,
        min_capacity=1,
        max_capacity=3,
        starting=1,
        leaving=0,
        metrics=[(metric_name, 0.5, 1.0)],
        direction="Out",
        limited_by="none",
        at=None,
    )
    text = s.render()
    assert text == generate_latest(s).decode()
    parsed = [x for f in text_string_to_metric_families(text) for x in f.samples]
    assert len(parsed) == 10
    for x in parsed:
        assert (x.labels["kind"], x.labels["namespace"], x.labels["name"]) == res


def test_escape_label_value() -> None:
    assert escape_label_value('a"}\n evil 1') == 'a\\"}\\n evil 1'
    assert escape_label_value("\\n") == "\\\\n"  # a backslash then an n, not a newline


# --- forget ----------------------------------------------------------------------------


def test_forget_removes_every_series_from_both_ways_out() -> None:
    m = OperatorMetrics()
    populate(m, RESOURCES)
    for res in RESOURCES[1:]:
        m.forget(*res)
    kind, namespace, name = RESOURCES[0]
    text = m.resource_series.render()
    left = samples(text)
    assert len(left) == 19
    assert all(dict(labels)["name"] == name for _, labels, _ in left)
    assert left == samples(generate_latest(m.resource_series).decode())

    m.forget(kind, namespace, name)
    assert samples(m.resource_series.render()) == []
    assert samples(generate_latest(m.resource_series).decode()) == []
    assert families(m.resource_series.render()) == [f.exposed_name for f in FAMILIES]
    labels = {"kind": kind, "namespace": namespace, "name": name}
    assert m.registry.get_sample_value("stackscaler_paused", labels) is None


def test_forgotten_resource_comes_back_with_fresh_series() -> None:
    s = ResourceSeries()
    res = ("WebTier", "shop", "web")
    s.inc_error(res, "Throttled")
    s.inc_error(res, "Throttled")
    s.forget(res)
    s.inc_error(res, "Throttled")
    assert s.render().count("stackscaler_errors_total{") == 1
    assert 'error="Throttled",kind="WebTier",name="web",namespace="shop"} 1.0\n' in s.render()


# --- the registry ----------------------------------------------------------------------


class Custom:
    """A user's own collector (no render): goes through generate_latest."""

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("custom_thing", "A user's gauge.", labels=["x"])
        family.add_metric(['quo"te'], 2)
        return [family]


def test_exposition_has_every_family_once_and_the_same_samples_as_generate_latest() -> None:
    m = OperatorMetrics()
    populate(m, RESOURCES)
    with m.observe_reconcile("WebTier"):
        pass
    user = Gauge("user_gauge", "Registered by a user.", registry=m.registry)
    user.set(5)
    custom: Collector = Custom()
    m.registry.register(custom)

    body = exposition(m.registry).decode()
    reference = generate_latest(m.registry).decode()
    assert samples(body) == samples(reference)
    names = families(body)
    assert len(names) == len(set(names))
    assert set(names) == set(families(reference))
    assert {"user_gauge", "custom_thing", "stackscaler_build_info"} <= set(names)

    m.registry.unregister(custom)
    assert "custom_thing" not in exposition(m.registry).decode()


def test_a_plain_registry_still_works_through_generate_latest() -> None:
    plain = CollectorRegistry()
    m = OperatorMetrics(plain)
    populate(m, RESOURCES[:2])
    assert exposition(plain) == generate_latest(plain)
    assert (
        m.registry.get_sample_value(
            "stackscaler_decisions_total",
            {
                "kind": "WebTier",
                "namespace": "ns-0",
                "name": "tier-0",
                "direction": "Out",
                "limited_by": "maxCapacity",
            },
        )
        == 1
    )


def test_registry_refuses_a_clashing_name_and_target_info() -> None:
    m = OperatorMetrics()
    with pytest.raises(ValueError, match="stackscaler_paused"):
        Gauge("stackscaler_paused", "clash", registry=m.registry)
    with pytest.raises(ValueError, match="target_info"):
        ExpositionRegistry().set_target_info({"a": "b"})


# --- threads ---------------------------------------------------------------------------


def test_render_while_other_threads_record_and_forget() -> None:
    """Hooks run in worker threads: rendering meanwhile never fails and always parses."""
    m = OperatorMetrics()
    stop = threading.Event()
    failures: list[BaseException] = []

    def churn(worker: int) -> None:
        try:
            i = 0
            while not stop.is_set():
                res = ("WebTier", f"ns-{worker}", f"tier-{i % 50}")
                m.record_decision(*res, decision(3, (f"m{i % 3}", float(i), 1.0)), at=float(i))
                m.record_error(*res, Throttled("x"))
                if i % 7 == 0:
                    m.forget(*res)
                i += 1
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=churn, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(10):
            text = exposition(m.registry).decode()
            names = families(text)
            assert len(names) == len(set(names))
            samples(text)
            list(m.registry.collect())
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []


# --- the benchmark runs (no timing asserted) ---------------------------------------------


def test_bench_exposition_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_exposition.main(["--resources", "40", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "560 per-resource series" in out
    assert "ratio:" in out
