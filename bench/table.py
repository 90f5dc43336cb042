"""`make bench` (table step): DynamoDB provisioned capacity, measured through the simulator.

The NASA trace as the traffic of the sessions table of examples/stack.yaml (its two
TableCapacity resources, read and write, as written), run as ``stackscaler simulate
-f examples/stack.yaml --tier sessions-read`` runs it:

- **Mapping**: the trace x100 (requests per minute, as the web tier's bench); every
  request reads its session (one strongly consistent read of an item up to 4 KB: one
  RCU, so one RCU serves 60 requests a minute); every 10th request writes it (one
  write of up to 1 KB: one WCU serves 600 requests a minute).
- **Policies**: the default policy (the resources' own specs, told the table's
  decreases), Application Auto Scaling's target tracking for DynamoDB, the oracle
  (perfect foresight at the target, unbudgeted: the lower bound) and the cost of
  on-demand mode for the same requests.
- **Goals** (issue 15): fewer capacity-unit-hours than the Application Auto Scaling
  baseline at no more throttled minutes; never more than 27 decreases in a UTC day;
  each full UTC day, the table back within 1.5x of the oracle by the end of the day's
  trough (its least-demand hour), each dimension.

    python -m bench.table [--file examples/stack.yaml] [--tier sessions-read]
        [--days N] [--json OUT] [--scale-out-window S] [--scale-in-window S]

The two window flags measure a variant of the resources' behavior (both dimensions'
``behavior.scaleOut/scaleIn.stabilizationWindowSeconds``), a proposal, not the spec.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import yaml

from stackscaler.cli.simulate_table import TABLE_KIND, on_demand_line, table_text
from stackscaler.model.spec import Resource, TableTarget, parse_resource
from stackscaler.sim.run import resample
from stackscaler.sim.table import DAY_SECONDS, MAX_DECREASES_PER_DAY
from stackscaler.sim.table_run import TROUGH_GOAL, TableConfig, TableReport, TableTier, run_table
from stackscaler.sim.trace import nasa_trace

ROOT = Path(__file__).resolve().parent.parent
SCALE = 100.0
READS_PER_RCU_MINUTE = 60.0
"""One RCU: one strongly consistent read (up to 4 KB) per second."""
WRITE_EVERY = 10
"""Every 10th request writes its session: one WCU serves 60 x 10 requests a minute."""
POLICIES = ("default", "target-tracking", "oracle")


def table_tiers(path: Path, front: str) -> list[TableTier]:
    """The front resource and the other dimension of its table, as the CLI pairs them."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    res = [parse_resource(d, source=str(path)) for d in docs if d.get("kind") == TABLE_KIND]
    first = next((r for r in res if r.name == front), None)
    if first is None:
        raise SystemExit(f"{path}: no TableCapacity named {front!r}")
    ft = first.target
    assert isinstance(ft, TableTarget)
    same: list[Resource] = [first]
    for r in res:
        t = r.target
        assert isinstance(t, TableTarget)
        if r is not first and (t.name, t.index) == (ft.name, ft.index):
            same.append(r)
    out = []
    for r in same:
        t = r.target
        assert isinstance(t, TableTarget)
        consumed = r.scaling.metric("consumed")
        assert consumed.target is not None
        per_unit = READS_PER_RCU_MINUTE * (1 if t.dimension.value == "Read" else WRITE_EVERY)
        out.append(TableTier(r.key, t.dimension.value, r.scaling, consumed.target.value, per_unit))
    return out


def with_windows(
    tiers: Sequence[TableTier], scale_out: int | None, scale_in: int | None
) -> list[TableTier]:
    """``tiers`` with their scale-out and/or scale-in stabilization windows replaced."""
    out = []
    for t in tiers:
        b = t.spec.behavior
        so, si = b.scale_out, b.scale_in
        if scale_out is not None:
            so = replace(so, stabilization_window_seconds=scale_out)
        if scale_in is not None:
            si = replace(si, stabilization_window_seconds=scale_in)
        out.append(replace(t, spec=replace(t.spec, behavior=replace(b, scale_out=so, scale_in=si))))
    return out


def _day(k: int) -> str:
    return datetime.fromtimestamp(k * DAY_SECONDS, UTC).strftime("%b %d")


def claims(reports: dict[str, TableReport]) -> list[str]:
    d, aas = reports["default"], reports["target-tracking"]
    lines = []
    for k, (s, a) in enumerate(zip(d.tiers, aas.tiers, strict=True)):
        ok = s.capacity_unit_hours < a.capacity_unit_hours and (
            s.throttled_minutes <= a.throttled_minutes
        )
        lines.append(
            f"[{'PASS' if ok else 'FAIL'}] {s.dimension}: fewer capacity-unit-hours than AAS "
            f"at no more throttled minutes: {s.capacity_unit_hours:,.0f} vs "
            f"{a.capacity_unit_hours:,.0f} unit-h "
            f"({s.capacity_unit_hours / a.capacity_unit_hours - 1:+.1%}), "
            f"{s.throttled_minutes:,.0f} vs {a.throttled_minutes:,.0f} throttled min"
        )
        del k
    ok = d.capacity_unit_hours < aas.capacity_unit_hours and (
        d.throttled_minutes <= aas.throttled_minutes
    )
    lines.append(
        f"[{'PASS' if ok else 'FAIL'}] table: {d.capacity_unit_hours:,.0f} vs "
        f"{aas.capacity_unit_hours:,.0f} unit-h, ${d.cost:,.2f} vs ${aas.cost:,.2f}, "
        f"{d.throttled_minutes:,.0f} vs {aas.throttled_minutes:,.0f} minutes with a throttle"
    )
    ok = d.max_decreases_per_day <= MAX_DECREASES_PER_DAY
    lines.append(
        f"[{'PASS' if ok else 'FAIL'}] at most {MAX_DECREASES_PER_DAY} decreases in any UTC day: "
        f"default {d.max_decreases_per_day} (made {d.decreases}, asked for and refused by the "
        f"table {d.decreases_refused}); AAS {aas.max_decreases_per_day} (refused "
        f"{aas.decreases_refused})"
    )
    for s, a in zip(d.tiers, aas.tiers, strict=True):
        bad = [
            (day, r)
            for day, r in zip(s.trough_days, s.trough_ratios, strict=True)
            if r > TROUGH_GOAL
        ]
        worst = ", ".join(
            f"{_day(day)} {r:.2f}x" for day, r in sorted(bad, key=lambda x: -x[1])[:5]
        )
        aas_bad = sum(r > TROUGH_GOAL for r in a.trough_ratios)
        lines.append(
            f"[{'PASS' if not bad else 'FAIL'}] {s.dimension}: within {TROUGH_GOAL:g}x of the "
            f"oracle by the end of each day's trough: {len(s.trough_ratios) - len(bad)} of "
            f"{len(s.trough_ratios)} days, worst {max(s.trough_ratios, default=0):.2f}x"
            + (f" ({worst})" if bad else "")
            + f"; AAS {len(a.trough_ratios) - aas_bad} of {len(a.trough_ratios)}, worst "
            f"{max(a.trough_ratios, default=0):.2f}x"
        )
    od = d.on_demand_cost
    lines.append(
        f"[INFO] on-demand for the same requests ${od:,.2f}: {od / d.cost:.2f}x the default "
        f"policy's provisioned ${d.cost:,.2f}, {od / aas.cost:.2f}x AAS's ${aas.cost:,.2f}"
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/table.py", description=__doc__.splitlines()[0])
    p.add_argument("--file", type=Path, default=ROOT / "examples" / "stack.yaml")
    p.add_argument("--tier", default="sessions-read")
    p.add_argument("--days", type=float, help="only the first DAYS of the trace")
    p.add_argument("--json", metavar="OUT", help="also write the reports as JSON")
    for flag in ("--scale-out-window", "--scale-in-window"):
        p.add_argument(flag, type=int, metavar="S", help="a variant: this stabilization window")
    args = p.parse_args(argv)
    tiers = table_tiers(args.file, args.tier)
    if args.scale_out_window is not None or args.scale_in_window is not None:
        tiers = with_windows(tiers, args.scale_out_window, args.scale_in_window)
    trace = nasa_trace()
    cfg = TableConfig(scale=SCALE)
    demand = resample(trace, cfg.step_seconds, cfg.scale)
    if args.days is not None:
        demand = demand[: round(args.days * 1440)]
    print("== DynamoDB provisioned capacity (issue 15) ==")
    print(
        f"NASA x{SCALE:g} as the sessions table's traffic ({len(demand):,} minutes): every "
        f"request one strongly consistent read of a session (<= 4 KB, 1 RCU), every "
        f"{WRITE_EVERY}th a write (<= 1 KB, 1 WCU); " + ", ".join(t.name for t in tiers)
    )
    b = tiers[0].spec.behavior
    print(
        f"default policy: scale-out window {b.scale_out.stabilization_window_seconds} s, "
        f"scale-in window {b.scale_in.stabilization_window_seconds} s"
        + (
            " (a variant)"
            if args.scale_out_window is not None or args.scale_in_window is not None
            else " (as the spec says)"
        )
    )
    t0 = time.process_time()
    reports = {pol: run_table(tiers, demand, pol, cfg, trace=trace.name) for pol in POLICIES}
    cpu = time.process_time() - t0
    print()
    print(table_text(list(reports.values())))
    print(on_demand_line(reports["default"]))
    print()
    lines = claims(reports)
    print("\n".join(lines))
    passed = sum(line.startswith("[PASS]") for line in lines)
    failed = sum(line.startswith("[FAIL]") for line in lines)
    print(f"\ntable claims: {passed} PASS, {failed} FAIL ({cpu:.1f} s of CPU)")
    if args.json:
        Path(args.json).write_text(
            json.dumps([r.to_dict() for r in reports.values()], indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
