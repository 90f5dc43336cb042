"""bench/run.py: the sweep over cases, the iso-quality table and the claims, on small cases."""

from __future__ import annotations

from dataclasses import replace

from bench import run as bench
from bench import traces

from stackscaler.model.spec import Tolerance
from stackscaler.sim.run import RunConfig
from stackscaler.sim.trace import Trace


def small_cases() -> list[bench.Case]:
    step = bench.Case(traces.step_10x(), bench.bench_tier(), RunConfig(capacity_per_unit=2000.0))
    nasa = bench.nasa_trace()
    nasa = Trace(nasa.name, 60.0, nasa.demand[: 6 * 60])
    return [
        step,
        bench.Case(nasa, bench.bench_tier(), RunConfig(scale=100.0, capacity_per_unit=2400)),
    ]


def test_run_all_sweeps_every_policy_and_marks_the_own_setting() -> None:
    cases = small_cases()
    results = bench.run_all(cases, (0.4, 0.5, 0.6), jobs=1)
    for k in range(len(cases)):
        pts = results[k]
        assert len(pts) == 3 * 3 + 2
        assert {p.policy for p in pts if p.own} == {*bench.SWEPT, "static-peak", "oracle"}
        assert len({p.report.oracle_capacity_unit_hours for p in pts}) == 1
    table = bench.iso_table(cases[0], results[0])
    assert "default at its own" in table and "step-10x" in table
    lines, passed, failed = bench.claims(cases, results)
    assert passed + failed == len(lines)
    assert all(line.startswith(("[PASS]", "[FAIL]")) for line in lines)
    assert any("NASA" in line for line in lines)
    front = bench.frontier_lines(cases, results)
    assert (
        front[0].startswith("[info] frontiers") and "of 12 baseline settings" in front[0]
    )  # 2 traces x 2 x 3
    assert [line.split(":")[0].strip() for line in front[1:]] == [c.name for c in cases]


def test_cases_scale_synthetic_traces_to_their_peak() -> None:
    cases = {c.name: c for c in bench.cases(quick=True)}
    flash = cases["flash-crowd"]
    peak = max(flash.trace.demand) * flash.cfg.scale / flash.cfg.capacity_per_unit
    assert 20 < peak * 2 < 100  # about 45 units at 50%
    bursts = cases["poisson-bursts"]
    assert bursts.cfg.step_seconds == 10
    assert bursts.cfg.capacity_per_unit == bench.PER_INSTANCE / 6
    assert cases["step-10x"].cfg.capacity_per_unit == 2000


def test_variants_change_only_the_default_policys_settings() -> None:
    base = bench.bench_tier()
    assert base.scaling.band == Tolerance(above=0.2, below=0.1)  # the CRD's defaults
    tier = bench.variant(base, bench.Variant(tolerance=0.1, scale_in_window=300))
    assert tier.scaling.band == Tolerance.both(0.1)
    assert tier.scaling.behavior.scale_in.stabilization_window_seconds == 300
    assert tier.scaling.behavior.scale_out == replace(
        base.scaling.behavior.scale_out, tolerance=0.1
    )
    lower = bench.variant(base, bench.Variant(scale_in_tolerance=0.05))
    assert lower.scaling.band == Tolerance(above=0.2, below=0.05)
    assert bench.variant(base, bench.Variant()) == base
    told = bench.cases(quick=True, starting_seconds=300)
    assert {c.cfg.starting_seconds for c in told} == {300}
