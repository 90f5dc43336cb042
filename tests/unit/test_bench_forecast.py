"""bench/forecast.py: the cases, the with/without runs and the claims, on small cases."""

from __future__ import annotations

import pytest
from bench import forecast as bench
from bench import traces
from bench.run import bench_tier_doc

from stackscaler.sim.run import RunConfig
from stackscaler.sim.trace import Trace, nasa_trace


def test_flat_bursts_has_no_daily_shape() -> None:
    t = bench.flat_bursts()
    assert len(t.demand) == 21 * 1440
    by_hour = [0.0] * 24
    for m, d in enumerate(t.demand):
        by_hour[(m // 60) % 24] += d
    assert max(by_hour) < 1.4 * min(by_hour)  # no hour of the day stands out (bursts aside)
    assert max(t.demand) > 2 * 1000  # and bursts


def test_claims_compare_with_and_without_the_forecast() -> None:
    nasa = nasa_trace()
    tier = bench.forecasting(bench_tier_doc(), "bench")
    small = [
        bench.Case(
            "nasa, bench tier",
            Trace(nasa.name, 60.0, nasa.demand[: 3 * 1440]),
            tier,
            RunConfig(scale=100.0, capacity_per_unit=2400),
            True,
        ),
        bench.Case("step-10x", traces.step_10x(), tier, RunConfig(capacity_per_unit=2000.0), False),
    ]
    results = bench.run_cases(small, jobs=1)
    assert [[r.policy for r in reps] for reps in results] == [["default", "reactive", "oracle"]] * 2
    nasa_forecast = results[0][0].predictive
    assert nasa_forecast is not None and nasa_forecast.refreshes == 3 * 24
    # four hours of a step: never enough history, so the forecast never acts
    step = results[1]
    assert step[0].predictive is not None and step[0].predictive.ready == 0
    assert step[0].capacity_unit_hours == step[1].capacity_unit_hours
    lines = bench.claims(small, results)
    assert len(lines) == 3
    assert all(line.startswith(("[PASS]", "[FAIL]")) for line in lines)
    assert lines[2].startswith("[PASS] step-10x (no daily shape): with the forecast")
    table = bench.table(small, results)
    assert "forecast" in table and "reactive" in table and "TooLittleHistory" in table


def test_cases_mark_the_traces_without_a_daily_shape() -> None:
    shapeless = {c.name for c in bench.cases(quick=True) if not c.daily_shape}
    assert shapeless == {"step-10x", "flat-bursts"}


def test_the_nasa_cases_forecast_from_their_own_spec() -> None:
    nasa = [c for c in bench.cases(quick=True) if c.name.startswith("nasa")]
    assert [c.name for c in nasa] == [
        "nasa, predictive.yaml web",
        "nasa, stack.yaml web",
        "nasa, bench tier",
    ]
    metrics = [c.tier.scaling.predictive and c.tier.scaling.predictive.metric for c in nasa]
    assert metrics == ["requests-per-minute", "cpu", "cpu"]
    assert all(c.cfg.predictive is None for c in nasa)  # the spec's, no override


def test_a_variant_overrides_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    tier = bench.example_web_tier()
    monkeypatch.setitem(bench.VARIANT, "max_error", 0.5)
    s = bench.settings(tier)
    assert (s.metric, s.max_error, s.min_skill) == ("requests-per-minute", 0.5, 0.1)
