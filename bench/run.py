"""`make bench`: every policy on every trace, as a ratio to the oracle, then speed.

The tier is the web tier of examples/stack.yaml (50% CPU and 1,200
requests/min per instance; one instance serves 2,400 requests/min at 100%).
NASA is replayed x100 with the stack as it is (peak ~35 instances at the
target, maxCapacity 40). Synthetic traces are scaled so that their peak needs
about 500 instances at the target, with maxCapacity raised to 1,000.
The NASA trace is loaded from the package (operator/stackscaler/data/).

    python -m bench.run [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from importlib import resources
from typing import Any

import yaml

from bench import traces
from stackscaler.model.spec import Resource, parse_resource
from stackscaler.sim.policies import POLICIES
from stackscaler.sim.run import Report, RunConfig, compare, run
from stackscaler.sim.trace import Trace, nasa_trace

PER_INSTANCE = 2400.0
SPEED_GOAL_SECONDS = 10.0


def web_tier(max_capacity: int | None = None) -> Resource:
    text = resources.files("stackscaler").joinpath("data/stack.yaml").read_text("utf-8")
    doc: dict[str, Any] = next(
        d for d in yaml.safe_load_all(text) if d and d.get("kind") == "WebTier"
    )
    doc = copy.deepcopy(doc)
    if max_capacity is not None:
        doc["spec"]["maxCapacity"] = max_capacity
    return parse_resource(doc, source="examples/stack.yaml")


def cases(quick: bool) -> list[tuple[Trace, Resource, float]]:
    out: list[tuple[Trace, Resource, float]] = [(nasa_trace(), web_tier(), 100.0)]
    big = web_tier(1000)
    for make in traces.ALL.values():
        t = make()
        if quick:
            t = Trace(t.name, t.step_seconds, t.demand[: 3 * traces.DAY])
        scale = 500 * PER_INSTANCE * 0.5 / max(t.demand)
        out.append((t, big, scale))
    return out


def ratio_table(rows: list[Report]) -> str:
    head = (
        f"{'trace':<24} {'policy':<16} {'x oracle':>8} {'unit-h':>10} {'under min':>9} "
        f"{'under %':>7} {'p95':>5} {'actions':>7} {'revers':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.trace:<24} {r.policy:<16} {r.oracle_ratio:>8.2f} {r.capacity_unit_hours:>10,.0f} "
            f"{r.under_provisioned_minutes:>9,.0f} {100 * r.under_provisioned_fraction:>7.2f} "
            f"{100 * r.p95_utilization:>4.0f}% {r.scale_actions:>7} {r.reversals:>6}"
        )
    return "\n".join(lines)


def goal(rows: list[Report]) -> list[str]:
    by = {r.policy: r for r in rows if r.trace.startswith("nasa")}
    d = by["default"]
    out = [
        f"default on NASA: {d.oracle_ratio:.2f}x oracle (goal <= 1.30), "
        f"{100 * d.under_provisioned_fraction:.2f}% minutes under-provisioned (goal < 0.50%)"
    ]
    for other in ("hpa", "target-tracking"):
        o = by[other]
        better = (
            d.capacity_unit_hours <= o.capacity_unit_hours
            and d.under_provisioned_minutes <= o.under_provisioned_minutes
            and (
                d.capacity_unit_hours < o.capacity_unit_hours
                or d.under_provisioned_minutes < o.under_provisioned_minutes
            )
        )
        verdict = "Pareto-better" if better else "NOT Pareto-better"
        out.append(
            f"  vs {other}: unit-h {d.capacity_unit_hours:,.0f} vs {o.capacity_unit_hours:,.0f}, "
            f"under-provisioned min {d.under_provisioned_minutes:,.0f} vs "
            f"{o.under_provisioned_minutes:,.0f}: {verdict}"
        )
    return out


def speed() -> list[str]:
    """Wall time of the NASA replay at 60 s steps, and against the static loop in this run."""
    trace, tier = nasa_trace(), web_tier()
    cfg = RunConfig(scale=100.0, capacity_per_unit=PER_INSTANCE)
    timings: dict[str, float] = {}
    for policy in ("static-peak", "default"):
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            run(tier, trace, policy, cfg)
            best = min(best, time.perf_counter() - t0)
        timings[policy] = best
    d, s = timings["default"], timings["static-peak"]
    ok = "OK" if d < SPEED_GOAL_SECONDS else "TOO SLOW"
    return [
        f"speed: NASA 58.6 days ({len(trace.demand):,} steps of 60 s), one tier, default policy: "
        f"{d:.2f} s (goal < {SPEED_GOAL_SECONDS:g} s: {ok}; best of 3)",
        f"       static-peak loop (same engine, no policy calls): {s:.2f} s; "
        f"default / static = {d / s:.1f}x; {1e6 * d / len(trace.demand):.0f} us per step",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 days of each synthetic trace")
    p.add_argument("--json", metavar="OUT", help="also write every report as JSON")
    args = p.parse_args(argv)
    rows: list[Report] = []
    for trace, tier, scale in cases(args.quick):
        cfg = RunConfig(scale=scale, capacity_per_unit=PER_INSTANCE)
        rows.extend(compare(tier, trace, POLICIES, cfg))
    print(ratio_table(rows))
    print()
    print("\n".join(goal(rows)))
    print()
    print("\n".join(speed()))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([r.to_dict() for r in rows], f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
