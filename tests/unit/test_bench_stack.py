"""bench/stack.py: the example's stack as its header runs it, the variants, the claims."""

from __future__ import annotations

from bench import stack as bench

from stackscaler.demo.story import LAUNCH_DAY, STORY_START
from stackscaler.model.spec import TierSource, parse_resource
from stackscaler.sim.trace import nasa_trace


def test_the_bench_measures_the_example_as_written() -> None:
    assert bench.readers_doc() == bench.docs()[bench.READERS]


def test_the_variants_ask_for_the_same_replicas_as_the_cpu_target() -> None:
    for value, cpu, target in (("Demand", 60, 3), ("Metric", 60, 3600), ("Demand", 80, 4)):
        r = parse_resource(bench.readers_doc(value, cpu))
        follow, own = r.scaling.metrics
        assert isinstance(follow.source, TierSource) and follow.source.value == value
        assert follow.target is not None and follow.target.value == target
        assert own.target is not None and own.target.value == cpu
    metric = parse_resource(bench.readers_doc("Metric")).scaling.metrics[0].source
    assert isinstance(metric, TierSource) and metric.metric == "requests-per-minute"


def test_launch_day_is_the_demos_window() -> None:
    t = bench.launch_day(quick=False)
    first = LAUNCH_DAY * 1440 + STORY_START
    assert t.demand == nasa_trace().demand[first : first + 360]


def test_claims_on_launch_day() -> None:
    cases = [bench.Case("the example", "launch", "Demand", 60)]
    results = bench.run_cases(cases, jobs=1, quick=True)
    (runs,) = results
    assert [[r.policy for r in per] for per in runs] == [
        ["default"] * 2,
        ["alone"] * 2,
        ["oracle"] * 2,
    ]
    web_default, web_alone = runs[0][0], runs[1][0]
    assert web_default.capacity_unit_hours == web_alone.capacity_unit_hours  # the same web tier
    lines = bench.claims(cases, results)
    assert lines[0].startswith(("[PASS] launch day", "[FAIL] launch day"))
    assert any("alone: replicas short at" in line for line in lines)
    table = bench.table(cases, results)
    assert table.count("launch  the example") == 3
