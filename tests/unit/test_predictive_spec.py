"""``spec.predictive``: parsing, defaults, the checks beyond the schema, and the forecast's
settings taken from it (the CRD's bounds are the forecast's: one source of truth).

The invalid documents and their messages are in spec_cases.py (shared with the CRD and
control-plane tests, which check the CEL rules on the API server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stackscaler.errors import InvalidSpec
from stackscaler.forecast import PredictiveSettings
from stackscaler.model.crds import spec_schema
from stackscaler.model.predictive import PredictiveMode, PredictiveSpec
from stackscaler.model.spec import parse_resource
from tests.conftest import example, mutate
from tests.unit.test_cli import run


def _with(kind: str, predictive: dict[str, Any]) -> dict[str, Any]:
    return mutate(example(kind), "spec.predictive", predictive)


def test_defaults() -> None:
    r = parse_resource(_with("WebTier", {"mode": "ForecastOnly", "metric": "cpu"}))
    assert r.scaling.predictive == PredictiveSpec(PredictiveMode.FORECAST_ONLY, "cpu")
    p = r.scaling.predictive
    assert (p.history_days, p.lead_seconds, p.refresh_seconds, p.max_error) == (
        14,
        None,
        3600,
        0.25,
    )
    assert p.history_seconds == 14 * 86400


def test_without_predictive_there_is_none() -> None:
    assert parse_resource(example("WebTier")).scaling.predictive is None


def test_every_field() -> None:
    doc = _with(
        "ReadReplicaPool",
        {
            "mode": "ForecastAndScale",
            "metric": "replica-cpu",
            "historyDays": 7,
            "leadSeconds": 900,
            "refreshSeconds": 1800,
            "maxError": 0.4,
        },
    )
    p = parse_resource(doc).scaling.predictive
    assert p == PredictiveSpec(PredictiveMode.FORECAST_AND_SCALE, "replica-cpu", 7, 900, 1800, 0.4)


def test_a_prometheus_metric_qualifies() -> None:
    doc = _with("WebTier", {"mode": "ForecastOnly", "metric": "requests-per-minute"})
    p = parse_resource(doc).scaling.predictive
    assert p is not None and p.metric == "requests-per-minute"


def test_worker_pool_forecasts_its_queue_backlog() -> None:
    p = parse_resource(_with("WorkerPool", {"mode": "ForecastOnly", "metric": "backlog"}))
    assert p.scaling.predictive is not None
    assert p.scaling.metric("backlog").target is not None


def test_a_resource_without_metrics_is_told_to_add_one() -> None:
    doc = mutate(example("WebTier"), "spec.metrics", [])
    doc = mutate(doc, "spec.predictive", {"mode": "ForecastOnly", "metric": "cpu"})
    with pytest.raises(InvalidSpec) as info:
        parse_resource(doc)
    assert any(
        e.path == "spec.predictive.metric"
        and e.message.endswith("use one of: none: add a metric with a target first")
        for e in info.value.errors
    ), info.value.errors


def test_settings_from_spec() -> None:
    spec = PredictiveSpec(PredictiveMode.FORECAST_AND_SCALE, "cpu", 3, 120, 900, 0.5)
    s = PredictiveSettings.from_spec(spec)
    assert (s.mode, s.metric, s.history_seconds, s.lead_seconds, s.refresh_seconds) == (
        PredictiveMode.FORECAST_AND_SCALE,
        "cpu",
        3 * 86400,
        120,
        900,
    )
    assert s.max_error == 0.5
    default = PredictiveSettings.from_spec(PredictiveSpec(PredictiveMode.FORECAST_ONLY, "cpu"))
    assert default == PredictiveSettings(PredictiveMode.FORECAST_ONLY, "cpu")


def _bounds(field: str) -> tuple[float, float]:
    node = spec_schema("WebTier")["properties"]["predictive"]["properties"][field]
    return node["minimum"], node["maximum"]


def test_the_crds_bounds_are_the_forecasts() -> None:
    """Every value the API server accepts makes valid settings, and one step outside the
    bounds is what the forecast refuses too."""
    lo_d, hi_d = _bounds("historyDays")
    lo_l, hi_l = _bounds("leadSeconds")
    lo_r, hi_r = _bounds("refreshSeconds")
    _, hi_e = _bounds("maxError")
    for days, lead, refresh, error in [(lo_d, lo_l, lo_r, 1e-6), (hi_d, hi_l, hi_r, hi_e)]:
        spec = PredictiveSpec(
            PredictiveMode.FORECAST_ONLY, "cpu", int(days), int(lead), int(refresh), error
        )
        PredictiveSettings.from_spec(spec)  # does not raise
    for bad in (
        {"history_days": int(lo_d) - 1},
        {"history_days": int(hi_d) + 1},
        {"lead_seconds": int(hi_l) + 1},
        {"refresh_seconds": int(lo_r) - 1},
        {"refresh_seconds": int(hi_r) + 1},
        {"max_error": hi_e * 1.01},
    ):
        spec = PredictiveSpec(PredictiveMode.FORECAST_ONLY, "cpu", **bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidSpec):
            PredictiveSettings.from_spec(spec)


def test_validate_names_the_field_and_the_fix(tmp_path: Path) -> None:
    doc = _with("WebTier", {"mode": "ForecastAndScale", "metric": "latency"})
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump(doc))
    r = run("validate", "-f", str(path))
    assert r.returncode == 1
    assert (
        "spec.predictive.metric: predictive.metric 'latency' is not a target-tracking metric of "
        "this resource; use one of: cpu, requests-per-minute"
    ) in r.stdout


def test_a_tier_source_has_no_history_to_forecast() -> None:
    doc = mutate(
        example("ReadReplicaPool"),
        "spec.metrics[0]",
        {
            "name": "web-demand",
            "tier": {"kind": "WebTier", "name": "web", "value": "Demand"},
            "target": {"type": "AverageValue", "value": 10},
        },
    )
    doc = mutate(doc, "spec.predictive", {"mode": "ForecastOnly", "metric": "web-demand"})
    with pytest.raises(InvalidSpec) as info:
        parse_resource(doc)
    assert [str(e) for e in info.value.errors] == [
        "spec.predictive.metric: metric 'web-demand' reads another resource (a tier source), "
        "whose values have no history the forecast can read: forecast a CloudWatch or "
        "Prometheus metric"
    ]
