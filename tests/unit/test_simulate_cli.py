"""``stackscaler simulate``: the report table, JSON, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stackscaler.cli import main
from stackscaler.cli.demo import example_web
from stackscaler.sim import plot as plot_module
from stackscaler.sim.run import RunConfig, compare
from stackscaler.sim.trace import load_trace
from tests.conftest import ROOT

STACK = str(ROOT / "examples" / "stack.yaml")


@pytest.fixture
def trace(tmp_path: Path) -> str:
    rows = [10] * 30 + [40] * 60 + [5] * 60
    p = tmp_path / "trace.csv"
    p.write_text("minute,requests\n" + "".join(f"{i},{d}\n" for i, d in enumerate(rows)))
    return str(p)


def test_table_and_json(tmp_path: Path, trace: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    code = main(
        ["simulate", "-f", STACK, "--tier", "web", "--trace", trace, "--scale", "100",
         "--capacity-per-unit", "2400", "--json", str(out)]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "policy" in text and "default" in text and "x oracle" in text
    data = json.loads(out.read_text())
    assert data["policy"] == "default"
    assert data["total_minutes"] == 150
    assert data["warmup_seconds"] == 180  # an Auto Scaling group
    assert data["target_utilization"] == pytest.approx(0.5)
    assert data["capacity_unit_hours"] >= data["oracle_capacity_unit_hours"] * 0.5
    assert data["cost"] == pytest.approx(data["capacity_unit_hours"] * 0.096, abs=0.01)


def test_several_policies(trace: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["simulate", "-f", STACK, "--tier", "web", "--trace", trace, "--policy", "all",
         "--scale", "100", "--capacity-per-unit", "2400", "--json", "-", "--warmup", "60",
         "--step", "30"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    data = json.loads(out[out.index("{") :])
    names = [r["policy"] for r in data["reports"]]
    assert names == ["default", "hpa", "target-tracking", "static-peak", "oracle"]
    oracle = data["reports"][-1]
    assert oracle["capacity_unit_hours"] == pytest.approx(oracle["oracle_capacity_unit_hours"])
    assert all(r["warmup_seconds"] == 60 and r["step_seconds"] == 30 for r in data["reports"])


def test_a_bad_row_exits_1_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("minute,requests\n0,1\n1,2\n2,lots\n")
    assert main(["simulate", "-f", STACK, "--tier", "web", "--trace", str(p)]) == 1
    assert f"{p}:4: expected two numbers" in capsys.readouterr().err


def test_several_tiers_need_tier(trace: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "-f", STACK, "--trace", trace]) == 1
    err = capsys.readouterr().err
    assert "--tier" in err and "WebTier shop/web" in err
    assert main(["simulate", "-f", STACK, "--trace", trace, "--tier", "nope"]) == 1
    assert "no resource named 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--policy", "magic"), ("--step", "0.5"), ("--step", "90"), ("--scale", "0")],
)
def test_bad_options(trace: str, flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "-f", STACK, "--tier", "web", "--trace", trace, flag, value])
    assert exc.value.code == 2
    assert flag in capsys.readouterr().err


def test_missing_matplotlib_is_a_clear_message(
    trace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(plot_module.importlib.util, "find_spec", lambda name: None)
    out = tmp_path / "p.png"
    assert (
        main(["simulate", "-f", STACK, "--tier", "web", "--trace", trace, "--plot", str(out)]) == 1
    )
    assert "pip install 'stackscaler[plot]'" in capsys.readouterr().err
    assert not out.exists()


def test_plot_draws_a_file(trace: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "p.svg"
    code = main(
        ["simulate", "-f", STACK, "--tier", "web", "--trace", trace, "--plot", str(out),
         "--policy", "default,hpa"]
    )  # fmt: skip
    assert code == 0
    assert out.read_text().lstrip().startswith("<?xml")


def test_the_plot_has_a_panel_per_policy_with_its_series(trace: str) -> None:
    resource = example_web()  # the web tier of examples/stack.yaml
    cfg = RunConfig(scale=100, capacity_per_unit=2400, record_series=True)
    reports = compare(resource, load_trace(trace), ["default", "hpa"], cfg)
    chart = plot_module.report_chart(reports)
    assert [p.title.split(":")[0] for p in chart.panels] == ["default", "hpa"]
    assert chart.title == f"{reports[0].tier} on {reports[0].trace}"
    for panel, r in zip(chart.panels, reports, strict=True):
        assert panel.x == tuple(i / 60 for i in range(150))
        assert panel.demand == r.series.demand_units
        assert panel.ready == tuple(float(v) for v in r.series.ready)
        assert panel.desired == tuple(float(v) for v in r.series.desired)
        assert max(panel.desired) > 2  # it scaled out for the 40-request hour


def test_starting_seconds_is_what_the_default_policy_is_told(
    trace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["simulate", "-f", STACK, "--tier", "web", "--trace", trace, "--scale", "100",
            "--capacity-per-unit", "2400", "--json", "-"]  # fmt: skip
    assert main(args) == 0
    plain = capsys.readouterr().out
    assert main([*args, "--starting-seconds", "300"]) == 0
    told = capsys.readouterr().out
    assert json.loads(plain[plain.index("{") :])["policy"] == "default"
    assert json.loads(told[told.index("{") :])["total_minutes"] == 150
