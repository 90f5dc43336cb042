"""``stackscaler simulate --stack``: tiers of one file under one trace, coupled by ratios,
tier sources read as the operator reads them (no peeking)."""

from __future__ import annotations

import copy
import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from stackscaler.cli import main
from stackscaler.model.spec import Resource, TierSource, TierValue, parse_resource
from stackscaler.policy import MetricObservation
from stackscaler.sim import plot as plot_module
from stackscaler.sim.policies import DecideController
from stackscaler.sim.run import RunConfig, TierRun, prepare_demand
from stackscaler.sim.stack import (
    Coupling,
    StackTier,
    TierRead,
    check,
    compare_stack,
    demands,
    run_stack,
)
from stackscaler.sim.trace import Trace
from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "predictive.yaml"
WEB, READERS = "storefront", "storefront-db-readers"
RATIO = 3.0
READS_PER_REPLICA = 18000.0


def docs() -> dict[str, dict[str, Any]]:
    out = {}
    for d in yaml.safe_load_all(EXAMPLE.read_text()):
        if d and d["kind"] != "Namespace":
            out[d["metadata"]["name"]] = d
    return out


def readers_doc(value: str = "Demand", target: float = 3, *, cpu: bool = True) -> dict[str, Any]:
    """The example's replica pool following the web tier's ``value`` (the example's:
    Demand, 3 web instances per replica) and its own CPU (or not)."""
    doc = copy.deepcopy(docs()[READERS])
    follow = doc["spec"]["metrics"][0]
    follow["tier"]["value"] = value
    if value == "Metric":
        follow["tier"]["metric"] = "requests-per-minute"
    else:
        follow["tier"].pop("metric", None)
    follow["target"]["value"] = target
    if not cpu:
        doc["spec"]["metrics"] = [follow]
    return doc


def web(*, predictive: bool = False) -> Resource:
    doc = copy.deepcopy(docs()[WEB])
    if not predictive:
        del doc["spec"]["predictive"]
    return parse_resource(doc)


def stack(
    readers: dict[str, Any] | None = None, *, lag: float = 0.0, **web_kw: bool
) -> list[StackTier]:
    record = RunConfig(scale=100.0, capacity_per_unit=2400.0, record_series=True)
    return [
        StackTier(web(**web_kw), record),
        StackTier(
            parse_resource(readers or readers_doc()),
            RunConfig(capacity_per_unit=READS_PER_REPLICA, record_series=True),
            Coupling(READERS, RATIO, lag),
        ),
    ]


def jump(before: int = 30, after: int = 90, low: float = 60, high: float = 240) -> Trace:
    """Requests per minute (x100): a quiet start, then four times the traffic."""
    return Trace("jump", 60.0, (low,) * before + (high,) * after)


# --- coupling ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=40),
    ratio=st.floats(0.01, 50, allow_nan=False),
    lag_steps=st.integers(0, 50),
)
def test_a_coupled_tier_carries_ratio_times_the_front_demand_lag_later(
    rows: list[float], ratio: float, lag_steps: int
) -> None:
    tiers = stack()
    tiers[1] = StackTier(
        tiers[1].resource, tiers[1].cfg, Coupling(READERS, ratio, 60.0 * lag_steps)
    )
    front, coupled = demands(tiers, Trace("t", 60.0, tuple(rows)))
    assert front == tuple(100.0 * r for r in rows)
    for i, load in enumerate(coupled):
        assert load == pytest.approx(ratio * front[max(0, i - lag_steps)])


def test_each_tier_has_its_own_load_warm_up_and_report() -> None:
    web_r, readers_r = run_stack(stack(), jump(), "default")
    assert (web_r.tier, readers_r.tier) == ("shop/storefront", "shop/storefront-db-readers")
    assert (web_r.warmup_seconds, readers_r.warmup_seconds) == (180, 600)  # EC2, RDS replica
    assert readers_r.trace == "jump x3"
    # replica-hours follow their own load: 3 queries per request, 18,000 per replica
    want = sum(RATIO * 100 * d for d in jump().demand) / READS_PER_REPLICA / 60
    assert readers_r.demand_unit_hours == pytest.approx(want)
    assert readers_r.target_utilization == pytest.approx(0.6)  # the tier source is not its load


def test_a_coupling_lag_delays_the_coupled_tiers_need() -> None:
    now = run_stack(stack(), jump(), "oracle")[1]
    later = run_stack(stack(lag=600.0), jump(), "oracle")[1]
    assert later.series.ready.index(max(later.series.ready)) == (
        now.series.ready.index(max(now.series.ready)) + 10
    )


# --- tier sources: read as the operator reads them ---------------------------------------


def first_rise(values: tuple[int, ...]) -> int:
    return next(i for i, v in enumerate(values) if v > values[0])


def test_the_follower_orders_in_the_minute_the_web_tier_sees_the_jump() -> None:
    # the web tier's request rate (Prometheus, one scrape late) shows the jump at minute 31;
    # the replicas' own CPU (CloudWatch: a 60 s period, readable 60 s after it) at 32,
    # and the replica pool decides every 60 s
    follow, alone = compare_stack(stack(readers_doc("Metric", 3600)), jump(), ["default", "alone"])
    web_rise = first_rise(follow[0].series.desired)
    assert web_rise == 31
    assert first_rise(follow[1].series.desired) == 31  # the same minute, never before
    assert first_rise(alone[1].series.desired) == 32
    # CPU saturates at 100%: on its own the pool asks for 100/60 of its replicas (2 -> 4),
    # then waits out its 600 s scale-out cooldown; the web tier's request rate says at once
    # how many it needs (7), within the default maxStep of 4 units (2 -> 6)
    assert follow[1].series.desired[31] == 6
    assert max(alone[1].series.desired[:42]) == 4
    assert follow[1].under_provisioned_minutes < alone[1].under_provisioned_minutes


@pytest.mark.parametrize(
    ("value", "target", "at_31", "top"),
    [
        # 24,000 requests a minute / 3,600 per replica = 6.67 -> 7, at most 4 more at once
        # (the default maxStep): 6, and 6.67 is within the pool's tolerance (0.2) of 6
        ("Metric", 3600, 6, 6),
        # the web tier's recommendation: 20 instances at 1,200 requests each, 3 per replica
        ("Demand", 3, 6, 6),
        # the web tier's decision: 5 -> 10 at minute 31 (its own rate limit: +100%), 20 at
        # 32; the pool asks for 4, then 7 once its 600 s scale-out cooldown is over
        ("DesiredCapacity", 3, 4, 7),
    ],
)
def test_every_tier_value_is_read_from_the_followed_tiers_last_decision(
    value: str, target: float, at_31: int, top: int
) -> None:
    reports = run_stack(stack(readers_doc(value, target, cpu=False)), jump(), "default")
    web_desired, readers_desired = reports[0].series.desired, reports[1].series.desired
    assert web_desired[30:33] == (5, 10, 20)
    assert readers_desired[30] == 2
    assert readers_desired[31] == at_31
    assert max(readers_desired) == top
    if value == "DesiredCapacity":  # the follower never runs ahead of the web's decision
        for i, n in enumerate(readers_desired):
            assert n <= max(2, math.ceil(web_desired[i] / target))


def test_the_ready_capacity_of_the_web_tier_lags_its_warm_up() -> None:
    reports = run_stack(stack(readers_doc("ReadyCapacity", 3, cpu=False)), jump(), "default")
    web_first, readers_first = (
        first_rise(reports[0].series.desired),
        first_rise(reports[1].series.desired),
    )
    # ready = current - starting as the operator counts it: 300 s for an ASG with a CPU
    # metric (180 s to serve + a 60 s period + 60 s delivery)
    assert readers_first - web_first == 5


@settings(max_examples=15, deadline=None)
@given(
    cut=st.integers(40, 100),
    factor=st.floats(0.2, 5.0).filter(lambda f: abs(f - 1) > 0.05),
    value=st.sampled_from(["Metric", "Demand", "DesiredCapacity", "ReadyCapacity"]),
)
def test_no_peeking_a_follower_sees_nothing_of_the_front_after_now(
    cut: int, factor: float, value: str
) -> None:
    # two stories alike until minute `cut`: nothing any tier decided up to that minute
    # may differ (the front tier reads minute `cut` only after it), whatever it follows
    a = Trace("a", 60.0, tuple(60.0 + 40 * math.sin(i / 9) ** 2 for i in range(130)))
    b = Trace("b", 60.0, a.demand[:cut] + tuple(factor * d for d in a.demand[cut:]))
    target = 3600 if value == "Metric" else 3
    tiers = stack(readers_doc(value, target))
    ra, rb = run_stack(tiers, a, "default"), run_stack(tiers, b, "default")
    for x, y in zip(ra, rb, strict=True):
        assert x.series.desired[: cut + 1] == y.series.desired[: cut + 1]
    # and the change does reach the follower later
    assert ra[1].series.demand_units != rb[1].series.demand_units


def test_a_tier_read_is_what_the_followed_tiers_last_decision_recorded() -> None:
    front = stack()[0]
    prep = prepare_demand(front.resource, demands(stack(), jump())[0], front.cfg)
    web_run = TierRun(front.resource, "default", front.cfg, prep, 60.0)
    assert isinstance(web_run.ctl, DecideController)

    def read(value: TierValue, metric: str | None = None) -> TierRead:
        return TierRead(TierSource("WebTier", WEB, value, metric), web_run.ctl, "WebTier web")

    cpu, demand = read(TierValue.METRIC, "cpu"), read(TierValue.DEMAND)
    desired, ready = read(TierValue.DESIRED_CAPACITY), read(TierValue.READY_CAPACITY)
    start = front.cfg.start
    nothing = cpu.observe(start)
    assert nothing.value is None and nothing.error == "WebTier web: no decision recorded yet"
    for i in range(33):
        web_run.step(i, prep.demand[i])
    now = start + timedelta(minutes=32)
    # minute 32: the web tier had 10 instances, 5 of them ordered at 31 (still starting:
    # 300 s), read CPU (CloudWatch, the minute before last) at 100% over its 5 ready ones,
    # and 24,000 requests a minute: 20 instances at 1,200; it decided 20
    sample = cpu.observe(now)
    assert sample.value == 100.0
    assert sample.timestamp == now - timedelta(seconds=60)  # the sample's own time
    assert demand.observe(now) == MetricObservation(20.0, now)
    assert desired.observe(now) == MetricObservation(20.0, now)
    assert ready.observe(now) == MetricObservation(5.0, now)
    gone = read(TierValue.METRIC, "memory").observe(now)
    assert gone.value is None and gone.error == "WebTier web: it has no metric 'memory'"


# --- the stack's shape and its policies ---------------------------------------------------


def test_a_tier_source_outside_the_stack_is_refused() -> None:
    doc = readers_doc()
    doc["spec"]["metrics"][0]["tier"]["name"] = "elsewhere"
    with pytest.raises(ValueError, match="follows WebTier elsewhere, which is not in the stack"):
        check(stack(doc))


def test_a_metric_the_followed_tier_does_not_have_is_refused() -> None:
    with pytest.raises(ValueError, match="metric nope, which WebTier storefront does not have"):
        doc = readers_doc("Metric")
        doc["spec"]["metrics"][0]["tier"]["metric"] = "nope"
        check(stack(doc))


def test_a_cycle_is_refused_with_its_path() -> None:
    tiers = stack()
    web_doc = copy.deepcopy(docs()[WEB])
    web_doc["spec"]["metrics"].append(
        {
            "name": "readers",
            "tier": {"kind": "ReadReplicaPool", "name": READERS, "value": "DesiredCapacity"},
            "target": {"type": "AverageValue", "value": 1},
        }
    )
    del web_doc["spec"]["predictive"]
    tiers[0] = StackTier(parse_resource(web_doc), tiers[0].cfg)
    with pytest.raises(ValueError, match="tier sources form a cycle: WebTier storefront -> "):
        check(tiers)


def test_alone_leaves_the_tier_sources_out_and_needs_a_metric_of_its_own() -> None:
    alone = run_stack(stack(readers_doc("Metric", 3600)), jump(), "alone")
    cpu_only = run_stack(stack(readers_doc("Metric", 3600)), jump(), "default")
    assert alone[1].series.desired != cpu_only[1].series.desired
    with pytest.raises(ValueError, match="no metric of its own"):
        run_stack(stack(readers_doc(cpu=False)), jump(), "alone")


def test_the_baselines_run_on_each_tiers_own_metrics() -> None:
    for policy in ("hpa", "target-tracking", "static-peak", "oracle"):
        reports = run_stack(stack(), jump(), policy)
        assert [r.policy for r in reports] == [policy, policy]
    with pytest.raises(ValueError, match="cannot read another tier"):
        run_stack(stack(readers_doc(cpu=False)), jump(), "hpa")


def test_reactive_drops_the_forecast_only_where_there_is_one() -> None:
    tiers = stack(predictive=True)
    default, reactive = compare_stack(tiers, jump(), ["default", "reactive"])
    assert default[0].predictive is not None and reactive[0].predictive is None
    assert default[1].predictive is None and reactive[1].predictive is None


def test_the_stack_chart_has_a_panel_per_tier_and_policy() -> None:
    runs = compare_stack(stack(), jump(), ["default", "alone"])
    chart = plot_module.stack_chart(runs, window=(0.25, 1.5))
    titles = [p.title for p in chart.panels]
    assert [t.split(":")[0] for t in titles] == [
        "shop/storefront, default",
        "shop/storefront, alone",
        "shop/storefront-db-readers, default",
        "shop/storefront-db-readers, alone",
    ]
    assert all(p.x[0] == 0.25 and p.x[-1] < 1.5 and len(p.x) == 75 for p in chart.panels)


# --- the command --------------------------------------------------------------------------


@pytest.fixture
def trace(tmp_path: Path) -> str:
    p = tmp_path / "trace.csv"
    p.write_text("minute,requests\n" + "".join(f"{i},{d:g}\n" for i, d in enumerate(jump().demand)))
    return str(p)


def simulate(trace: str, *args: str) -> list[str]:
    return ["simulate", "-f", str(EXAMPLE), "--trace", trace, "--scale", "100",
            "--capacity-per-unit", "2400", *args]  # fmt: skip


COUPLED = ("--stack", "--couple", f"{READERS}={RATIO:g}",
           "--capacity-per-unit", f"{READERS}={READS_PER_REPLICA:g}")  # fmt: skip


def test_simulate_stack_reports_every_tier(
    trace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "stack.json"
    code = main(simulate(trace, *COUPLED, "--policy", "all", "--json", str(out)))
    assert code == 0
    text = capsys.readouterr().out
    assert "front tier shop/storefront" in text
    assert "shop/storefront-db-readers: load = 3 x the demand of shop/storefront" in text
    assert "metric web-demand follows WebTier storefront Demand" in text
    assert text.count("x oracle") == 2  # one table per tier
    assert "== shop/storefront-db-readers ==" in text
    data = json.loads(out.read_text())
    assert data["stack"]["couplings"] == [
        {"tier": "shop/storefront-db-readers", "ratio": 3.0, "lag_seconds": 0.0}
    ]
    web_json, readers_json = data["tiers"]
    policies = ["default", "reactive", "alone", "hpa", "target-tracking", "static-peak", "oracle"]
    assert [r["policy"] for r in readers_json["reports"]] == policies
    assert readers_json["warmup_seconds"] == 600 and web_json["warmup_seconds"] == 180
    assert readers_json["reports"][0]["tier"] == "shop/storefront-db-readers"


def test_simulate_stack_plots_a_window(
    trace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "stack.png"
    args = (*COUPLED, "--policy", "default,alone", "--plot", str(png), "--plot-window", "0:1")
    assert main(simulate(trace, *args)) == 0
    assert f"plot: {png}" in capsys.readouterr().out
    assert png.read_bytes().startswith(b"\x89PNG")


def test_simulate_stack_couplings_with_a_lag(
    trace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        simulate(trace, "--stack", "--couple", f"{READERS}=3@120s", "--json", "-",
                 "--policy", "oracle")
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    data = json.loads(out[out.index("{\n") :])
    assert data["stack"]["couplings"][0]["lag_seconds"] == 120.0
    assert data["tiers"][1]["capacity_per_unit"] == 1.0  # its own --capacity-per-unit's default


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return int(str(exc.code))


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--couple", f"{READERS}=3"), 1, "--couple needs --stack"),
        (("--tier", WEB, "--policy", "alone"), 1, "policy 'alone' needs --stack"),
        (("--tier", READERS), 1,
         "simulate it with the tier it follows (stackscaler simulate --stack)"),
        (("--stack", "--couple", "nope=2"), 1, "has no resource named 'nope'"),
        (("--stack", "--couple", f"{WEB}=2"), 1, "storefront is the front tier"),
        (("--stack", "--couple", f"{READERS}=2", "--predictive", "ForecastOnly"), 1,
         "--predictive is for one tier"),
        (("--stack", "--capacity-per-unit", f"{READERS}=5"), 1,
         "storefront-db-readers is not simulated"),
        (("--tier", WEB, "--plot-window", "0:1"), 1, "--plot-window needs --plot"),
        (("--stack", "--couple", f"{READERS}=0"), 2, "must be > 0"),
        (("--stack", "--couple", "Bad_Name\x1b[31m=1"), 2, "not a resource name: 'Bad_Name"),
        (("--stack", "--couple", f"{READERS}=2", "--plot-window", "3:1"), 2,
         "FROM must be before TO"),
    ],
)  # fmt: skip
def test_simulate_stack_usage_errors(
    trace: str, args: tuple[str, ...], code: int, message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert exit_code(simulate(trace, *args)) == code
    err = capsys.readouterr().err
    assert message in err
    assert "\x1b" not in err  # a hostile name is escaped, never echoed raw


def test_a_table_is_not_simulated_in_a_stack(
    trace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "table.yaml"
    table.write_text(
        "apiVersion: stackscaler.dev/v1alpha1\nkind: TableCapacity\n"
        "metadata: {name: sessions-read, namespace: shop}\n"
        "spec:\n  target: {kind: Table, name: shop-sessions, dimension: Read}\n"
        "  minCapacity: 5\n  maxCapacity: 4000\n"
    )
    assert main(["simulate", "-f", str(table), "--trace", trace, "--stack"]) == 1
    assert "shop/sessions-read: a TableCapacity is not simulated in a --stack" in (
        capsys.readouterr().err
    )
