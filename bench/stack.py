"""`make bench` (stack step): read replicas that follow the web tier in front of them.

Measured through what ``stackscaler simulate --stack`` calls
(:func:`stackscaler.sim.stack.compare_stack`), on the stack of examples/predictive.yaml
as its header runs it: the storefront web tier (NASA x100, 2,400 requests a minute per
instance at 100%) and its read replicas (3 queries per request, no lag; 18,000 queries
a minute per replica at 100%; a replica serves 600 s after it is ordered).

1. **NASA launch day** (Thursday 13 July 1995, 06:00-12:00 EDT: the demo's window,
   operator/stackscaler/demo/story.py): the replicas as the example has them, following
   the web tier's Demand and their own CPU (``default``), against reactive scaling on
   their own CPU alone (``alone``: the same pool without its tier source), in the same
   run. Goal (issue 14): the replicas' under-provisioned minutes at least 80% lower,
   at no more than 10% more replica-hours. The minutes the replicas were short are
   listed (time of day, load over the ready replicas' capacity).
2. **The whole trace** (58 days), the same comparison (context, not a goal).
3. **The other values** a tier source can read (the web tier's request rate as it
   observed it; its desired capacity), each with the same target in replicas.
4. **The replicas' CPU target**: 60% in the example; 70, 80 and 90% on launch day, 80%
   on the whole trace (the tier source's target scaled to the same utilization): where
   following the web tier matters.

    python -m bench.stack [--quick] [--jobs N] [--json OUT]
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stackscaler.demo.story import LAUNCH_DAY, STORY_MINUTES, STORY_START, minute_of_day_label
from stackscaler.model.spec import parse_resource
from stackscaler.sim.run import Report, RunConfig
from stackscaler.sim.stack import Coupling, StackTier, compare_stack
from stackscaler.sim.trace import Trace, nasa_trace

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "predictive.yaml"
WEB, READERS = "storefront", "storefront-db-readers"
SCALE = 100.0
PER_INSTANCE = 2400.0
"""Requests a minute one web instance serves at 100% (the example's header)."""
QUERIES_PER_REQUEST = 3.0
PER_REPLICA = 18000.0
"""Queries a minute one replica serves at 100% (the example's comments)."""
WEB_TARGET_REQUESTS = 1200.0
"""Requests a minute per web instance at its target: one unit of its Demand."""
REDUCTION_GOAL = 0.8
EXTRA_HOURS_GOAL = 0.10
EXAMPLE_CPU = 60
TOO_FEW = 10
"""Under-provisioned minutes below which a relative fall says little."""
POLICIES = ["default", "alone", "oracle"]


def docs() -> dict[str, dict[str, Any]]:
    out = {}
    for d in yaml.safe_load_all(EXAMPLE.read_text(encoding="utf-8")):
        if d and d.get("kind") != "Namespace":
            out[d["metadata"]["name"]] = d
    return out


def readers_doc(value: str = "Demand", cpu: int = EXAMPLE_CPU) -> dict[str, Any]:
    """The example's replica pool following the web tier's ``value`` with the target that
    asks for the replicas its CPU target would (``cpu`` percent)."""
    doc = copy.deepcopy(docs()[READERS])
    follow, own = doc["spec"]["metrics"]
    u = cpu / 100.0
    requests_per_replica = PER_REPLICA * u / QUERIES_PER_REQUEST
    follow["tier"]["value"] = value
    follow["tier"].pop("metric", None)
    if value == "Metric":
        follow["tier"]["metric"] = "requests-per-minute"
        follow["target"]["value"] = round(requests_per_replica, 6)
    else:  # web instances at their target per replica
        follow["target"]["value"] = round(requests_per_replica / WEB_TARGET_REQUESTS, 6)
    own["target"]["value"] = cpu
    return doc


def stack(readers: dict[str, Any]) -> list[StackTier]:
    """The example's stack as its header runs it (``--scale 100 --capacity-per-unit 2400
    --couple storefront-db-readers=3 --capacity-per-unit storefront-db-readers=18000``)."""
    web = parse_resource(docs()[WEB], source="examples/predictive.yaml")
    return [
        StackTier(web, RunConfig(scale=SCALE, capacity_per_unit=PER_INSTANCE, record_series=True)),
        StackTier(
            parse_resource(readers, source="examples/predictive.yaml"),
            RunConfig(capacity_per_unit=PER_REPLICA, record_series=True),
            Coupling(READERS, QUERIES_PER_REQUEST),
        ),
    ]


def launch_day(quick: bool) -> Trace:
    del quick  # six hours: always whole
    first = LAUNCH_DAY * 1440 + STORY_START
    rows = nasa_trace().demand[first : first + STORY_MINUTES]
    return Trace("nasa launch day 06:00-12:00 EDT", 60.0, rows)


def whole(quick: bool) -> Trace:
    nasa = nasa_trace()
    if quick:
        return Trace(nasa.name + " (14 days)", 60.0, nasa.demand[: 14 * 1440])
    return nasa


@dataclass(frozen=True)
class Case:
    name: str
    trace: str
    """launch or whole."""
    value: str
    cpu: int

    @property
    def example(self) -> bool:
        return self.value == "Demand" and self.cpu == EXAMPLE_CPU


def cases() -> list[Case]:
    out = []
    for trace in ("launch", "whole"):
        out.append(Case("the example", trace, "Demand", EXAMPLE_CPU))
        out += [Case(f"follows {v}", trace, v, EXAMPLE_CPU) for v in ("Metric", "DesiredCapacity")]
    out += [Case(f"replicas at {c}%", "launch", "Demand", c) for c in (70, 80, 90)]
    out.append(Case("replicas at 80%", "whole", "Demand", 80))
    return out


_CASES: list[Case] = []
_QUICK = [False]


def _job(k: int) -> tuple[int, list[tuple[Report, ...]]]:
    c = _CASES[k]
    trace = launch_day(_QUICK[0]) if c.trace == "launch" else whole(_QUICK[0])
    return k, compare_stack(stack(readers_doc(c.value, c.cpu)), trace, POLICIES)


def run_cases(all_cases: list[Case], jobs: int, quick: bool) -> list[list[tuple[Report, ...]]]:
    _CASES[:] = all_cases
    _QUICK[0] = quick
    order = sorted(range(len(all_cases)), key=lambda k: all_cases[k].trace == "launch")
    if jobs > 1:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            results = dict(pool.map(_job, order, chunksize=1))
    else:
        results = dict(_job(k) for k in order)
    return [results[k] for k in range(len(all_cases))]


def _under(r: Report) -> list[tuple[int, float]]:
    """(step, load / ready capacity) of every under-provisioned step."""
    s = r.series
    return [
        (i, d / n if n else float("inf"))
        for i, (d, n) in enumerate(zip(s.demand_units, s.ready, strict=True))
        if d > n + 1e-12
    ]


def table(all_cases: list[Case], results: list[list[tuple[Report, ...]]]) -> str:
    head = (
        f"{'trace':<7} {'replicas':<24} {'policy':<8} {'replica-h':>9} {'x alone':>7} "
        f"{'x oracle':>8} {'under min':>9} {'under %':>7} {'peak':>4} {'actions':>7} "
        f"{'web unit-h':>10}"
    )
    lines = [head, "-" * len(head)]
    for c, runs in zip(all_cases, results, strict=True):
        alone = runs[1][1]
        for per in runs:
            web, r = per
            lines.append(
                f"{c.trace:<7} {c.name:<24} {r.policy:<8} {r.capacity_unit_hours:>9,.1f} "
                f"{r.capacity_unit_hours / alone.capacity_unit_hours:>7.3f} "
                f"{r.oracle_ratio:>8.3f} {r.under_provisioned_minutes:>9,.0f} "
                f"{100 * r.under_provisioned_fraction:>7.3f} {r.peak_capacity:>4} "
                f"{r.scale_actions:>7} {web.capacity_unit_hours:>10,.1f}"
            )
    return "\n".join(lines)


def claims(all_cases: list[Case], results: list[list[tuple[Report, ...]]]) -> list[str]:
    out = []
    for c, runs in zip(all_cases, results, strict=True):
        if not c.example:
            continue
        follow, alone = runs[0][1], runs[1][1]
        before, after = alone.under_provisioned_minutes, follow.under_provisioned_minutes
        extra = follow.capacity_unit_hours / alone.capacity_unit_hours - 1
        fell = (before - after) / before if before else None
        cut = "n/a (no minute to remove)" if fell is None else f"{-fell:+.0%}"
        ok = fell is not None and fell >= REDUCTION_GOAL and extra <= EXTRA_HOURS_GOAL
        what = "launch day" if c.trace == "launch" else "whole trace"
        goal = "" if c.trace == "launch" else " (context, not the goal)"
        verdict = ("PASS" if ok else "FAIL") if c.trace == "launch" else "info"
        out.append(
            f"[{verdict}] {what}, the example's replicas{goal}: under-provisioned "
            f"{after:,.0f} min following the web tier's Demand, {before:,.0f} min on their own "
            f"CPU: {cut} (goal: -{REDUCTION_GOAL:.0%} or better); replica-hours "
            f"{follow.capacity_unit_hours:,.1f} against {alone.capacity_unit_hours:,.1f}: "
            f"{extra:+.1%} (goal: at most +{EXTRA_HOURS_GOAL:.0%})"
        )
        if c.trace == "launch" and before < TOO_FEW:
            out.append(
                f"       (on its own CPU the pool is short {before:,.0f} min: -80% is "
                f"{REDUCTION_GOAL * before:.1f} min; too few minutes to tell one signal from "
                "another: see the whole trace and the other values)"
            )
        if c.trace == "launch":
            for r in (alone, follow):
                short = [
                    f"{minute_of_day_label(STORY_START + i)} ({ratio:.2f}x)"
                    for i, ratio in _under(r)
                ]
                out.append(
                    f"       {r.policy}: replicas short at {', '.join(short) or 'no minute'} "
                    "(EDT; load / the ready replicas' capacity)"
                )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/stack.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="14 days instead of the whole trace")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--json", metavar="OUT", help="also write every run as JSON")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    print("== Tiers that follow the tier in front of them (issue 14) ==")
    print(
        f"examples/predictive.yaml: web x{SCALE:g}, {PER_INSTANCE:,.0f} requests a minute per "
        f"instance; replicas {QUERIES_PER_REQUEST:g} queries per request, {PER_REPLICA:,.0f} "
        "per replica; default = the replicas follow the web tier (and their CPU), alone = "
        "their CPU only"
    )
    all_cases = cases()
    results = run_cases(all_cases, max(1, args.jobs), args.quick)
    print(table(all_cases, results))
    print()
    lines = claims(all_cases, results)
    print("\n".join(lines))
    passed = sum(line.startswith("[PASS]") for line in lines)
    failed = sum(line.startswith("[FAIL]") for line in lines)
    print(f"\nstack claims: {passed} PASS, {failed} FAIL")
    if args.json:
        rows = [
            {"case": c.name, "trace": c.trace, "value": c.value, "cpu": c.cpu, **r.to_dict()}
            for c, runs in zip(all_cases, results, strict=True)
            for per in runs
            for r in per
        ]
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    print(f"bench.stack: {time.perf_counter() - t0:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
