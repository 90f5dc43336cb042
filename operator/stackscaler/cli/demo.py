"""``stackscaler demo``: the stack of examples/stack.yaml, live, on launch day.

By default the live demo (:mod:`stackscaler.demo`): a real kube-apiserver
and etcd, moto standing in for AWS, the operator as ``stackscaler run`` and
a load generator replaying launch day from the NASA trace, with a live
table and a summary. ``--preview`` keeps the pure simulation (no Go, no
processes): the NASA trace through ``policy.decide`` for the web tier in
simulated time. When the control plane cannot be built here (no Go) or
moto is missing, the demo says why and runs the preview instead, except
under ``CI=true``, where that is an error.

Both end with a picture (``--plot``): demand, ready and desired capacity
over the story with the scale actions marked, one panel per tier (the
preview's one tier); the live demo draws it into its work dir unless
``--plot`` names the file, the preview only when ``--plot`` does.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import yaml

from stackscaler.cli import args as argtypes
from stackscaler.cli.files import UsageError
from stackscaler.model.spec import Resource, parse_resource
from stackscaler.sim.chart import Chart, Mark, Panel
from stackscaler.sim.engine import SimConfig, Step, simulate
from stackscaler.sim.trace import nasa_trace

# The trace starts 1995-07-01 00:00 server time (UTC-4).
TRACE_START = datetime(1995, 7, 1, 4, 0, tzinfo=UTC)
EDT = timedelta(hours=-4)
# One web instance serves 2,400 requests/minute at 100% CPU, so the tier's
# two targets (50% CPU, 1,200 requests/minute per instance) agree.
REQUESTS_PER_INSTANCE = 2400.0
PREVIEW_DAYS = 3.0
PREVIEW_SCALE = 100.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    m = sub.add_parser(
        "demo",
        help="the example stack live: control plane, moto, the operator, replayed NASA traffic",
        description=(
            "Start a local kube-apiserver + etcd (built from Go when missing), moto for AWS and "
            "the operator, apply examples/stack.yaml (with demo overrides it prints) and replay "
            "launch day from the NASA-HTTP trace against it, with a live table per tier and a "
            "summary. Stops everything it started. Without Go it runs the preview instead."
        ),
    )
    m.add_argument(
        "--duration",
        type=argtypes.positive,
        metavar="SECONDS",
        help="play this many seconds of the story, print the summary and exit 0 "
        "(default: the whole story, about 12 minutes, or until Ctrl-C)",
    )
    m.add_argument(
        "--minute-seconds",
        type=argtypes.positive,
        default=2.0,
        metavar="S",
        help="wall seconds per story minute (default 2)",
    )
    m.add_argument(
        "--scale",
        type=argtypes.positive,
        help="multiply the trace's requests by this (default: live, so that the web tier "
        f"peaks near its maxCapacity; preview {PREVIEW_SCALE:g})",
    )
    m.add_argument(
        "--preview",
        action="store_true",
        help="the pure simulation instead: the policy replays the trace in simulated time "
        "(no Go, no processes)",
    )
    m.add_argument(
        "--plot",
        type=argtypes.plot_file,
        metavar="OUT.png|OUT.svg",
        help="where to draw demand, ready and desired capacity per tier with the scale actions "
        "(needs the 'plot' extra; default: demo.png in the live demo's work dir, none for "
        "the preview)",
    )
    m.add_argument(
        "--days",
        type=argtypes.positive,
        help=f"preview: days of the trace to replay (default {PREVIEW_DAYS:g}; implies --preview)",
    )


def _plot_target(text: str | None) -> Path | None:
    """The ``--plot`` file, checked before anything starts (a run takes minutes)."""
    if text is None:
        return None
    from stackscaler.sim.plot import require_matplotlib  # noqa: PLC0415

    require_matplotlib()
    path = Path(text)
    if not path.parent.is_dir():
        raise UsageError(f"--plot {text}: no directory {str(path.parent)!r}")
    return path


def cmd_demo(args: argparse.Namespace) -> int:
    plot = _plot_target(args.plot)
    if args.preview or args.days is not None:
        return preview(args.days or PREVIEW_DAYS, args.scale or PREVIEW_SCALE, plot)
    # the live demo imports boto3, kubernetes and friends: only when it runs
    from stackscaler.demo.live import DemoOptions, DemoUnavailable, ci, run_live  # noqa: PLC0415

    options = DemoOptions(
        duration=args.duration, minute_seconds=args.minute_seconds, scale=args.scale, plot=plot
    )
    try:
        return run_live(options)
    except DemoUnavailable as exc:
        if ci():
            print(f"stackscaler demo: CI=true requires the live demo: {exc}", file=sys.stderr)
            return 1
        print(
            f"stackscaler demo: the live demo cannot run here: {exc}\n"
            "stackscaler demo: running the PREVIEW instead (a pure simulation of the web tier; "
            "`stackscaler demo --preview` runs it directly)\n",
            file=sys.stderr,
            flush=True,
        )
        return preview(PREVIEW_DAYS, args.scale or PREVIEW_SCALE, plot)


def example_web() -> Resource:
    """The WebTier of examples/stack.yaml (as packaged), which the preview replays."""
    text = resources.files("stackscaler").joinpath("data/stack.yaml").read_text("utf-8")
    web = next(d for d in yaml.safe_load_all(text) if d and d.get("kind") == "WebTier")
    return parse_resource(web, source="examples/stack.yaml")


def preview_chart(resource: Resource, steps: Sequence[Step], days: float, scale: float) -> Chart:
    """The preview's picture: its one tier, a mark wherever the desired capacity changed."""
    x = tuple((s.time - TRACE_START).total_seconds() / 3600 for s in steps)
    desired = tuple(float(s.desired) for s in steps)
    marks = tuple(
        Mark(x[i], desired[i], desired[i] > desired[i - 1])
        for i in range(1, len(steps))
        if desired[i] != desired[i - 1]
    )
    panel = Panel(
        title=f"WebTier {resource.key}: {len(marks)} scale actions",
        x=x,
        demand=tuple(s.demand / REQUESTS_PER_INSTANCE for s in steps),
        ready=tuple(float(s.ready) for s in steps),
        desired=desired,
        marks=marks,
    )
    return Chart(
        f"stackscaler demo (PREVIEW): NASA-HTTP July 1995, {days:g} day(s), requests x {scale:g}",
        (panel,),
        xlabel="hours since 1995-07-01 00:00 EDT",
    )


def preview(days: float, scale: float, plot: Path | None = None) -> int:
    resource = example_web()
    trace = nasa_trace()
    minutes = min(len(trace.demand), max(1, int(days * 1440)))
    demand = [r * scale for r in trace.demand[:minutes]]
    config = SimConfig(
        step_seconds=60.0, capacity_per_unit=REQUESTS_PER_INSTANCE, warmup_seconds=180.0
    )
    steps, summary = simulate(resource.scaling, demand, TRACE_START, config)

    print("stackscaler demo (PREVIEW): the policy core replays real traffic in simulated time.")
    print(
        "`stackscaler demo` without --preview runs the real thing: control plane, moto, operator."
    )
    print(
        f"tier: WebTier {resource.key} from examples/stack.yaml "
        f"(min {resource.scaling.min_capacity}, max {resource.scaling.max_capacity}, "
        "targets 50% CPU and 1,200 requests/min per instance)"
    )
    print(
        f"traffic: NASA-HTTP July 1995, {days:g} day(s), requests x {scale:g}; "
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
    if plot is not None:
        from stackscaler.sim.plot import draw  # noqa: PLC0415

        draw(preview_chart(resource, steps, days, scale), plot)
        print(f"picture: {plot} (demand, ready and desired capacity, scale actions marked)")
    if math.isclose(summary.capacity_unit_hours, 0):
        return 1
    return 0
