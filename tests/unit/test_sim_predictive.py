"""The simulator with the forecast: ``--policy default`` with predictive settings."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from stackscaler.cli import main
from stackscaler.cli.demo import example_web
from stackscaler.forecast import PredictiveMode, PredictiveSettings
from stackscaler.model.spec import Resource, parse_resource
from stackscaler.sim import plot as plot_module
from stackscaler.sim.run import RunConfig, compare, run
from stackscaler.sim.trace import Trace
from tests.conftest import ROOT

STACK = str(ROOT / "examples" / "stack.yaml")
SCALE = PredictiveSettings(PredictiveMode.FORECAST_AND_SCALE, "cpu")


def morning_rush(days: int = 5, seed: int = 3) -> Trace:
    """Units of demand at 100% per minute: 3 at night, 15 from 09:00 UTC (reached in five
    minutes: faster than a reactive policy's warm-up), back down from 17:00 over an hour."""
    rng = random.Random(seed)
    out = []
    for m in range(days * 1440):
        h = (m % 1440) / 60 + 4  # the story starts at 04:00 UTC
        h %= 24
        if 9 <= h < 17:
            level = 3 + 12 * min(1.0, (h - 9) * 12)
        elif 17 <= h < 18:
            level = 15 - 12 * (h - 17)
        else:
            level = 3.0
        out.append(level * (1 + 0.03 * rng.gauss(0, 1)))
    return Trace("morning-rush", 60.0, tuple(out))


def _cfg(**kw: object) -> RunConfig:
    return RunConfig(capacity_per_unit=1.0, **kw)  # type: ignore[arg-type]


def test_the_forecast_provisions_the_rush_before_it_comes() -> None:
    tier, trace = example_web(), morning_rush()
    with_it, without = compare(tier, trace, ["default", "reactive"], _cfg(predictive=SCALE))
    s = with_it.predictive
    assert s is not None and without.predictive is None
    assert s.refreshes == 5 * 24  # every hour on the hour
    assert s.refused["TooLittleHistory"] == 2 * 24  # a day to fit and a day to back-test
    assert s.ready == s.refreshes - 2 * 24  # then the shape is clear
    assert s.mean_error is not None and s.mean_error < 0.1
    assert s.raised > 0
    # the first two days are the same (nothing to forecast from), the last three are not
    assert without.under_provisioned_minutes >= 3 * 3  # the rush catches reaction out daily
    assert with_it.under_provisioned_minutes <= without.under_provisioned_minutes - 3 * 3
    # and it costs capacity only around the rush
    assert with_it.capacity_unit_hours <= 1.1 * without.capacity_unit_hours


def test_forecast_only_counts_what_it_would_have_done_and_changes_nothing() -> None:
    tier, trace = example_web(), morning_rush(days=3)
    only = replace(SCALE, mode=PredictiveMode.FORECAST_ONLY)
    watched, without = compare(tier, trace, ["default", "reactive"], _cfg(predictive=only))
    assert watched.predictive is not None and watched.predictive.raised > 0
    assert watched.predictive.mode == "ForecastOnly"
    same = replace(watched, policy="reactive", predictive=None)
    assert same == without


def test_no_peeking_in_the_story() -> None:
    # two stories alike until the start of day 4, then one doubles: nothing decided or
    # forecast before the change may differ
    a = morning_rush(days=4)
    cut = 3 * 1440
    b = Trace(a.name, a.step_seconds, a.demand[:cut] + tuple(2 * d for d in a.demand[cut:]))
    cfg = _cfg(predictive=SCALE, record_series=True)
    ra, rb = run(example_web(), a, "default", cfg), run(example_web(), b, "default", cfg)
    assert ra.series.desired[:cut] == rb.series.desired[:cut]
    fa, fb = ra.series.forecast_units[:cut], rb.series.forecast_units[:cut]
    assert [x for x in fa if not math.isnan(x)] == [x for x in fb if not math.isnan(x)]
    assert ra.series.desired != rb.series.desired  # and the change does matter after it


def test_the_floor_and_forecast_are_recorded_for_the_plot() -> None:
    tier, trace = example_web(), morning_rush(days=3)
    cfg = _cfg(predictive=SCALE, record_series=True)
    reports = compare(tier, trace, ["default", "reactive"], cfg)
    chart = plot_module.report_chart(reports)
    default, reactive = chart.panels
    assert len(default.forecast) == len(default.floor) == 3 * 1440
    assert reactive.forecast == () and reactive.floor == () and reactive.baseline == ()
    # the forecasting panel draws the capacity without the forecast beside its own
    assert default.baseline == reactive.desired
    assert default.desired != reactive.desired
    first_two_days = default.forecast[: 2 * 1440]
    assert all(math.isnan(v) for v in first_two_days)  # refused: too little history
    day3 = [v for v in default.forecast[2 * 1440 :] if not math.isnan(v)]
    assert len(day3) > 1000
    assert max(day3) == pytest.approx(15, rel=0.1)  # the rush, in units at 100%
    assert min(day3) == pytest.approx(3, rel=0.1)


def test_the_lead_defaults_to_the_tiers_warm_up() -> None:
    tier, trace = example_web(), morning_rush(days=2)
    r = run(tier, trace, "default", _cfg(predictive=SCALE))
    assert r.predictive is not None
    assert r.predictive.lead_seconds == 300  # 180 s for an ASG + a 60 s datapoint + 60 s
    r = run(tier, trace, "default", _cfg(predictive=replace(SCALE, lead_seconds=900)))
    assert r.predictive is not None and r.predictive.lead_seconds == 900


def test_reactive_needs_predictive_settings() -> None:
    tier, trace = example_web(), morning_rush(days=1)
    with pytest.raises(ValueError, match=r"has no spec\.predictive"):
        run(tier, trace, "reactive", _cfg())


def test_the_predictive_metric_must_be_the_tiers() -> None:
    tier, trace = example_web(), morning_rush(days=1)
    with pytest.raises(ValueError, match="'nope' is not one of the tier's metrics"):
        run(tier, trace, "default", _cfg(predictive=replace(SCALE, metric="nope")))


# --- the command ------------------------------------------------------------------------


@pytest.fixture
def trace(tmp_path: Path) -> str:
    rows = [10] * 30 + [40] * 60 + [5] * 60
    p = tmp_path / "trace.csv"
    p.write_text("minute,requests\n" + "".join(f"{i},{d}\n" for i, d in enumerate(rows)))
    return str(p)


def test_simulate_predictive_flags(trace: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["simulate", "-f", STACK, "--tier", "web", "--trace", trace, "--scale", "100",
         "--capacity-per-unit", "2400", "--policy", "all", "--predictive", "ForecastAndScale",
         "--predictive-metric", "requests-per-minute", "--lead", "600", "--history-days", "7",
         "--json", "-"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    data = json.loads(out[out.index("{") :])
    names = [r["policy"] for r in data["reports"]]
    assert names == ["default", "hpa", "target-tracking", "static-peak", "oracle", "reactive"]
    p = data["reports"][0]["predictive"]
    assert p["mode"] == "ForecastAndScale"
    assert p["metric"] == "requests-per-minute"
    assert p["lead_seconds"] == 600
    assert p["refused"] == {"TooLittleHistory": 3}  # 150 minutes: refits at 0, 1 h, 2 h
    assert "predictive" not in data["reports"][5]
    assert "default: forecast (ForecastAndScale, metric requests-per-minute, lead 600 s" in out
    assert "last refit: too little history: 2.0 h" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lead", "300"], "--lead needs --predictive ForecastOnly|ForecastAndScale"),
        (["--policy", "reactive"], "shop/web has no spec.predictive (or --predictive)"),
        (
            ["--predictive", "ForecastOnly", "--predictive-metric", "memory"],
            "predictive metric 'memory' is not one of the tier's metrics",
        ),
    ],
)
def test_simulate_predictive_usage_errors(
    trace: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "-f", STACK, "--tier", "web", "--trace", trace, *args]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value"), [("--predictive", "Always"), ("--history-days", "1"), ("--lead", "-5")]
)
def test_simulate_predictive_bad_values(
    trace: str, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "-f", STACK, "--tier", "web", "--trace", trace, flag, value])
    assert exc.value.code == 2
    assert flag in capsys.readouterr().err


# --- spec.predictive: the resource's own settings, the flags as overrides -------------------

PREDICTIVE = ROOT / "examples" / "predictive.yaml"


def storefront() -> Resource:
    """The web tier of examples/predictive.yaml: ForecastAndScale on requests-per-minute."""
    doc = next(
        d for d in yaml.safe_load_all(PREDICTIVE.read_text()) if d and d["kind"] == "WebTier"
    )
    return parse_resource(doc)


def test_the_resources_spec_predictive_drives_the_default_policy() -> None:
    tier, trace = storefront(), morning_rush(days=4)
    assert tier.scaling.predictive is not None
    cfg = RunConfig(scale=2400.0, capacity_per_unit=2400.0)  # requests per minute
    with_it, without = compare(tier, trace, ["default", "reactive"], cfg)
    s = with_it.predictive
    assert s is not None and without.predictive is None
    assert (s.mode, s.metric) == ("ForecastAndScale", "requests-per-minute")
    assert s.lead_seconds == 300  # the spec sets none: the tier's warm-up
    assert s.refused["TooLittleHistory"] == 48 and s.ready == 48 and s.raised > 0
    assert with_it.under_provisioned_minutes < without.under_provisioned_minutes


def test_the_flags_override_the_spec(trace: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["simulate", "-f", str(PREDICTIVE), "--tier", "storefront", "--trace", trace,
         "--scale", "100", "--capacity-per-unit", "2400", "--policy", "all",
         "--predictive", "ForecastOnly", "--lead", "600", "--json", "-"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    reports = json.loads(out[out.index("{") :])["reports"]
    assert [r["policy"] for r in reports][-1] == "reactive"  # the spec forecasts: with and without
    p = reports[0]["predictive"]
    assert (p["mode"], p["metric"], p["lead_seconds"]) == (
        "ForecastOnly",
        "requests-per-minute",
        600,
    )


def test_without_flags_the_spec_runs(trace: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "simulate",
        "-f",
        str(PREDICTIVE),
        "--tier",
        "storefront",
        "--trace",
        trace,
        "--json",
        "-",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    p = json.loads(out[out.index("{") :])["predictive"]
    assert (p["mode"], p["metric"], p["lead_seconds"]) == (
        "ForecastAndScale",
        "requests-per-minute",
        300,
    )


def test_a_plot_window_draws_those_hours_with_their_own_figures() -> None:
    tier, trace = example_web(), morning_rush(days=3)
    cfg = _cfg(predictive=SCALE, record_series=True)
    reports = compare(tier, trace, ["default", "reactive"], cfg)
    chart = plot_module.report_chart(reports, window=(48, 72))
    default, reactive = chart.panels
    assert len(default.x) == 1440 and default.x[0] == 48 and default.x[-1] == 72 - 1 / 60
    day3 = reports[1].series.desired[2 * 1440 :]
    assert reactive.desired == tuple(float(v) for v in day3)
    assert reactive.title.startswith(f"reactive: {sum(day3) / 60:,.0f} unit-h, ")
    assert "in these hours (whole run: " in reactive.title
    with pytest.raises(plot_module.PlotWindowEmpty, match="the run has 72 hours"):
        plot_module.report_chart(reports, window=(80, 90))
