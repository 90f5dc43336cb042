"""The simulator's capacity model, metric feeds, baselines and report fields."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stackscaler.model.spec import Resource, parse_resource
from stackscaler.policy.rules import effective_bounds
from stackscaler.sim.model import Pool, feed_spec, target_utilization
from stackscaler.sim.policies import oracle_plan
from stackscaler.sim.run import RunConfig, compare, prepare, resample, run, schedule_changes
from stackscaler.sim.trace import Trace, TraceError, load_trace, nasa_trace, parse_trace


def tier(kind: str = "WebTier", **spec: Any) -> Resource:
    base: dict[str, Any] = {
        "target": {"kind": "AutoScalingGroup", "name": "asg"},
        "minCapacity": 1,
        "maxCapacity": 100,
        "metrics": [
            {
                "name": "cpu",
                "cloudWatch": {"namespace": "AWS/EC2", "metricName": "CPUUtilization"},
                "target": {"type": "Value", "value": 50},
            }
        ],
    }
    base.update(spec)
    doc = {
        "apiVersion": "stackscaler.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": base,
    }
    return parse_resource(doc)


def flat_then_jump(before: int = 60, after: int = 120, low: float = 10, high: float = 40) -> Trace:
    return Trace("jump", 60.0, tuple([low] * before + [high] * after))


# --- capacity pool ------------------------------------------------------------


def test_pool_units_serve_only_after_warmup() -> None:
    p = Pool(2, warmup=180)
    p.resize(0, 5)
    assert (p.ready, p.capacity) == (2, 5)
    p.advance(179)
    assert p.ready == 2
    p.advance(180)
    assert p.ready == 5


def test_pool_scale_in_removes_pending_units_first() -> None:
    p = Pool(3, warmup=100)
    p.resize(0, 6)
    p.resize(10, 4)
    assert (p.ready, p.capacity) == (3, 4)
    p.resize(20, 1)
    assert (p.ready, p.capacity) == (1, 1)


def test_zero_warmup_serves_at_once() -> None:
    p = Pool(1, warmup=0)
    p.resize(0, 4)
    assert p.ready == 4


# --- oracle ---------------------------------------------------------------------


def test_oracle_plan_is_a_sliding_max_over_the_warmup() -> None:
    assert oracle_plan([1, 1, 5, 1, 1, 1], 2) == [5, 5, 5, 1, 1, 1]
    assert oracle_plan([3, 1, 2], 0) == [3, 1, 2]


def test_oracle_never_underprovisions_and_is_the_lower_bound() -> None:
    r = tier()
    reports = compare(r, flat_then_jump(), ["oracle", "default", "static-peak"], RunConfig())
    oracle, default, static = reports
    assert oracle.under_provisioned_minutes == 0
    assert oracle.capacity_unit_hours == pytest.approx(oracle.oracle_capacity_unit_hours)
    assert default.oracle_capacity_unit_hours == oracle.capacity_unit_hours
    assert static.capacity_unit_hours >= oracle.capacity_unit_hours
    assert static.under_provisioned_minutes == 0
    assert static.scale_actions == 0


# --- the policies react through warm-up and metric delay -----------------------


def test_default_policy_scales_out_after_a_jump_but_late_by_delay_and_warmup() -> None:
    r = tier()  # CloudWatch: 60 s period + 60 s delay; EC2 warm-up 180 s
    rep = run(r, flat_then_jump(), "default", RunConfig(record_series=True))
    s = rep.series
    assert s.ready[0] == 20  # starts at the need: 10 / (1 x 50%)
    jump = 60
    first_out = next(i for i in range(jump, len(s.desired)) if s.desired[i] > s.desired[i - 1])
    first_ready = next(i for i in range(jump, len(s.ready)) if s.ready[i] > s.ready[i - 1])
    assert first_out >= jump + 1  # the metric arrives late
    assert first_ready - first_out == 3  # 180 s warm-up
    assert rep.under_provisioned_minutes > 0  # the jump hurts until units are ready
    assert s.ready[-1] >= 80  # 40 / 50% eventually


def test_longer_warmup_means_more_underprovisioned_minutes() -> None:
    r = tier()
    fast = run(r, flat_then_jump(), "default", RunConfig(warmup_seconds=30))
    slow = run(r, flat_then_jump(), "default", RunConfig(warmup_seconds=600))
    assert slow.under_provisioned_minutes > fast.under_provisioned_minutes


def test_hpa_and_target_tracking_are_different_rules() -> None:
    r = tier()
    trace = flat_then_jump()
    hpa, tt = compare(r, trace, ["hpa", "target-tracking"], RunConfig(record_series=True))

    # target tracking waits for 3 datapoints above target, HPA syncs every 15 s
    def first_out(rep: Any) -> int:
        d = rep.series.desired
        return next(i for i in range(1, len(d)) if d[i] > d[i - 1])

    assert first_out(tt) > first_out(hpa)
    assert tt.scale_actions >= 1


def test_target_tracking_scale_in_waits_for_15_datapoints() -> None:
    r = tier()
    trace = Trace("drop", 60.0, tuple([40.0] * 30 + [10.0] * 40))
    rep = run(r, trace, "target-tracking", RunConfig(record_series=True))
    d = rep.series.desired
    first_in = next(i for i in range(1, len(d)) if d[i] < d[i - 1])
    assert first_in >= 30 + 15


def test_worker_pool_backlog_grows_then_drains() -> None:
    r = tier(
        "WorkerPool",
        queue={"name": "jobs", "backlogPerWorker": 100},
        metrics=[],
        minCapacity=1,
        maxCapacity=50,
    )
    trace = Trace("burst", 60.0, tuple([50.0] * 10 + [500.0] * 20 + [0.0] * 60))
    rep = run(r, trace, "default", RunConfig(capacity_per_unit=50, record_series=True))
    assert rep.max_backlog is not None and rep.max_backlog > 0
    assert rep.series.desired[-1] <= rep.series.desired[40]
    assert max(rep.series.desired) > 1


def test_report_fields_and_reversals() -> None:
    r = tier()
    # a square wave every 2 minutes: an HPA without stabilization on the way up reverses
    trace = Trace("flap", 60.0, tuple(([10.0] * 6 + [40.0] * 6) * 10))
    rep = run(r, trace, "oracle", RunConfig())
    d = rep.to_dict()
    for key in [
        "policy",
        "total_minutes",
        "capacity_unit_hours",
        "demand_unit_hours",
        "oracle_capacity_unit_hours",
        "over_provisioning",
        "under_provisioned_minutes",
        "worst_deficit_units",
        "p95_utilization",
        "scale_actions",
        "reversals",
        "cost",
    ]:
        assert key in d
    assert d["total_minutes"] == 120
    assert d["demand_unit_hours"] == pytest.approx((10 * 6 + 40 * 6) * 10 / 60)
    assert d["cost"] == pytest.approx(d["capacity_unit_hours"] * 0.096, abs=0.01)
    over = (rep.capacity_unit_hours - rep.demand_unit_hours) / rep.demand_unit_hours
    assert rep.over_provisioning == pytest.approx(over)
    assert rep.reversals >= 1  # the oracle follows the wave: out, in, out ... within 10 min


def test_underprovisioned_minutes_and_worst_deficit_count_units_short() -> None:
    r = tier(maxCapacity=10)  # capped: 40 demand needs 40 units at 100%
    rep = run(r, Trace("cap", 60.0, tuple([40.0] * 30)), "static-peak", RunConfig())
    assert rep.under_provisioned_minutes == 30
    assert rep.worst_deficit_units == 30
    assert rep.p95_utilization == pytest.approx(4.0)


def test_step_below_the_row_interval_resamples() -> None:
    trace = Trace("x", 60.0, (1.0, 2.0))
    assert resample(trace, 30.0, 2.0) == [2.0, 2.0, 4.0, 4.0]
    rep = run(tier(), Trace("x", 60.0, (10.0,) * 20), "default", RunConfig(step_seconds=15))
    assert rep.total_minutes == 20


@pytest.mark.parametrize("step", [0.5, 61, 0])
def test_step_bounds(step: float) -> None:
    with pytest.raises(ValueError, match="1-60"):
        RunConfig(step_seconds=step)


def test_target_utilization_uses_the_most_demanding_target() -> None:
    r = tier(
        metrics=[
            {
                "name": "cpu",
                "cloudWatch": {"namespace": "AWS/EC2", "metricName": "CPUUtilization"},
                "target": {"type": "Value", "value": 60},
            },
            {
                "name": "rpm",
                "prometheus": {"serverAddress": "http://p:9090", "query": "q"},
                "target": {"type": "AverageValue", "value": 1000},
            },
        ]
    )
    assert target_utilization(r.scaling, 2000) == pytest.approx(0.5)
    assert target_utilization(r.scaling, 1000) == pytest.approx(0.6)
    cw, prom = (feed_spec(m, 15) for m in r.scaling.metrics)
    assert (cw.signal, cw.period_steps, cw.delay_steps) == ("util", 4, 4)
    assert (prom.signal, prom.period_steps, prom.delay_steps) == ("total", 2, 0)


def test_simulation_is_deterministic() -> None:
    r = tier()
    a = run(r, flat_then_jump(), "default", RunConfig())
    b = run(r, flat_then_jump(), "default", RunConfig())
    assert a == b


# --- traces ---------------------------------------------------------------------


def test_trace_units_from_the_header_and_gzip(tmp_path: Path) -> None:
    p = tmp_path / "t.csv.gz"
    p.write_bytes(gzip.compress(b"second,requests\n0,1\n10,2\n20,3\n"))
    t = load_trace(p)
    assert (t.step_seconds, t.demand) == (10.0, (1.0, 2.0, 3.0))
    assert parse_trace("h", "hour,x\n0,1\n1,1\n").step_seconds == 3600


@pytest.mark.parametrize(
    ("body", "where", "what"),
    [
        ("minute,r\n0,1\n1,x\n", ":3:", "expected two numbers"),
        ("minute,r\n0,1\n1,-2\n", ":3:", ">= 0"),
        ("minute,r\n0,1\n1,2\n1,3\n", ":4:", "not after"),
        ("minute,r\n0,1\n1,2\n5,3\n", ":4:", "evenly spaced"),
        ("minute,r\n0,1\n1,nan\n", ":3:", "finite"),
        ("0,1\n1,2\n", ":1:", "header"),
        ("minute,r\n0,1\n", "", "at least two rows"),
    ],
)
def test_bad_traces_name_the_line(tmp_path: Path, body: str, where: str, what: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(body)
    with pytest.raises(TraceError, match=what) as exc:
        load_trace(p)
    assert f"{p}{where}" in str(exc.value)


def test_truncated_gzip_is_a_trace_error(tmp_path: Path) -> None:
    p = tmp_path / "t.csv.gz"
    p.write_bytes(gzip.compress(b"minute,r\n0,1\n1,2\n" * 50)[:-12])
    with pytest.raises(TraceError, match="gzip"):
        load_trace(p)


def test_the_embedded_nasa_trace() -> None:
    t = nasa_trace()
    assert len(t.demand) == 84_332
    assert t.step_seconds == 60


@pytest.mark.parametrize(
    ("start", "step"),
    [
        (datetime(2026, 3, 5, tzinfo=UTC), 60.0),  # over the spring-forward change (8 March)
        (datetime(2026, 10, 29, tzinfo=UTC), 17.0),  # over the fall-back change (1 November)
    ],
)
def test_schedule_bounds_evaluated_at_their_changes_equal_every_step(
    start: datetime, step: float
) -> None:
    r = tier(
        schedules=[
            {"name": "office", "cron": "30 1 * * MON-FRI", "timeZone": "America/New_York",
             "durationSeconds": 36000, "minCapacity": 4},
            {"name": "night", "cron": "0 23 * * *", "timeZone": "Europe/Berlin",
             "durationSeconds": 7200, "minCapacity": 6, "maxCapacity": 8},
        ]
    )  # fmt: skip
    n = int(7 * 86400 / step)
    trace = Trace("flat", step, (1.0,) * n)
    cfg = RunConfig(step_seconds=step, start=start)
    got = prepare(r, trace, cfg).need
    want = []
    for i in range(n):
        lo, hi, active = effective_bounds(r.scaling, start + timedelta(seconds=i * step))
        want.append(min(max(2, lo), hi) if active else 2)  # 1 demand at 50%: 2 units
    assert list(got) == want
    assert schedule_changes(r.scaling, start, start + timedelta(days=7))
