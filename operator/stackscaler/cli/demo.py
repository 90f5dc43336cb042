"""``stackscaler demo``: a preview of the policy on real traffic.

Until the end-to-end demo (control plane + AWS stand-in + operator) lands,
this replays the embedded NASA-HTTP 1995 trace through ``policy.decide``
for the web tier of the embedded ``examples/stack.yaml``, in simulated
time, and prints what the tier would have done.
"""

from __future__ import annotations

import argparse
import math
from datetime import UTC, datetime, timedelta
from importlib import resources

import yaml

from stackscaler.model.spec import parse_resource
from stackscaler.sim.engine import SimConfig, simulate
from stackscaler.sim.trace import nasa_trace

# The trace starts 1995-07-01 00:00 server time (UTC-4).
TRACE_START = datetime(1995, 7, 1, 4, 0, tzinfo=UTC)
EDT = timedelta(hours=-4)
# One web instance serves 2,400 requests/minute at 100% CPU, so the tier's
# two targets (50% CPU, 1,200 requests/minute per instance) agree.
REQUESTS_PER_INSTANCE = 2400.0


def cmd_demo(args: argparse.Namespace) -> int:
    text = resources.files("stackscaler").joinpath("data/stack.yaml").read_text("utf-8")
    web = next(d for d in yaml.safe_load_all(text) if d and d.get("kind") == "WebTier")
    resource = parse_resource(web, source="examples/stack.yaml")
    trace = nasa_trace()
    minutes = min(len(trace.demand), max(1, int(args.days * 1440)))
    demand = [r * args.scale for r in trace.demand[:minutes]]
    config = SimConfig(
        step_seconds=60.0, capacity_per_unit=REQUESTS_PER_INSTANCE, warmup_seconds=180.0
    )
    steps, summary = simulate(resource.scaling, demand, TRACE_START, config)

    print("stackscaler demo (PREVIEW): the policy core replays real traffic in simulated time.")
    print("The end-to-end demo (real control plane, AWS stand-in, operator) replaces this later.")
    print(
        f"tier: WebTier {resource.key} from examples/stack.yaml "
        f"(min {resource.scaling.min_capacity}, max {resource.scaling.max_capacity}, "
        "targets 50% CPU and 1,200 requests/min per instance)"
    )
    print(
        f"traffic: NASA-HTTP July 1995, {args.days:g} day(s), requests x {args.scale:g}; "
        f"one instance serves {REQUESTS_PER_INSTANCE:,.0f} requests/min at 100% CPU, "
        "3 min warm-up\n"
    )
    header = (
        f"{'time (EDT)':<17} {'req/min':>9} {'peak':>8} {'ready':>7} {'desired':>7}  last reason"
    )
    print(header)
    print("-" * len(header))
    block = 180
    for i in range(0, len(steps), block):
        chunk = steps[i : i + block]
        avg = sum(s.demand for s in chunk) / len(chunk)
        peak = max(s.demand for s in chunk)
        lo, hi = min(s.ready for s in chunk), max(s.ready for s in chunk)
        ready = f"{lo}" if lo == hi else f"{lo}-{hi}"
        when = (chunk[0].time + EDT).strftime("%a %m-%d %H:%M")
        print(
            f"{when:<17} {avg:>9,.0f} {peak:>8,.0f} {ready:>7} {chunk[-1].desired:>7}  "
            f"{chunk[-1].reason[:60]}"
        )
    total_minutes = summary.steps * summary.step_seconds / 60
    print()
    print(
        f"instance-hours: {summary.capacity_unit_hours:,.1f} "
        f"(perfect foresight at the 50% target: {summary.oracle_unit_hours:,.1f}, "
        f"ratio {summary.capacity_unit_hours / max(summary.oracle_unit_hours, 1e-9):.2f})"
    )
    static = summary.peak_capacity * total_minutes / 60
    print(
        f"static at this replay's peak ({summary.peak_capacity} instances): "
        f"{static:,.1f} instance-hours"
    )
    pct = 100 * summary.under_provisioned_minutes / max(total_minutes, 1)
    print(
        f"minutes over 100% CPU: {summary.under_provisioned_minutes:,.0f} of "
        f"{total_minutes:,.0f} ({pct:.2f}%); scale actions: {summary.scale_actions}"
    )
    if math.isclose(summary.capacity_unit_hours, 0):
        return 1
    return 0
