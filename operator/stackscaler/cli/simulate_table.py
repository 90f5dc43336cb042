"""``stackscaler simulate`` on a TableCapacity: the table's dimensions, the decrease
budget they share, the Application Auto Scaling baseline and the on-demand cost."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stackscaler.cli.files import Document, UsageError, read_documents
from stackscaler.model.spec import Resource, TableTarget, parse_resource
from stackscaler.sim.run import DEFAULT_PRICE, resample
from stackscaler.sim.table import BURST_SECONDS, PRICES_SOURCE
from stackscaler.sim.table_run import (
    GAP_SECONDS,
    TABLE_POLICIES,
    TROUGH_GOAL,
    TableConfig,
    TableReport,
    TableTier,
    run_table,
)
from stackscaler.sim.trace import Trace, load_trace

TABLE_KIND = "TableCapacity"
PerTier = tuple[str | None, float]


def _pick(values: Sequence[PerTier] | None, name: str, front: bool) -> float | None:
    out = None
    for n, v in values or ():
        if n == name or (n is None and front):
            out = v
    return out


def _target(resource: Resource) -> TableTarget:
    target = resource.target
    assert isinstance(target, TableTarget)
    return target


def table_resources(path: str, front: Resource) -> list[Resource]:
    """``front`` and every other TableCapacity of the file on the same table (and index)
    and region: the dimensions that share its decrease budget, the front first."""
    ft = _target(front)
    out = [front]
    for doc in read_documents(path):
        if not (isinstance(doc.body, dict) and doc.body.get("kind") == TABLE_KIND):
            continue
        r = _parse(doc)
        if r.key == front.key or r.namespace != front.namespace:
            continue
        t = _target(r)
        if (t.name, t.index, t.region) == (ft.name, ft.index, ft.region):
            if any(_target(o).dimension == t.dimension for o in out):
                raise UsageError(
                    f"{doc.label}: a second {t.dimension.value} resource for {t}; one "
                    "resource per dimension"
                )
            out.append(r)
    return out


def _parse(doc: Document) -> Resource:
    return parse_resource(doc.body, source=doc.label)


def _refuse_flags(args: argparse.Namespace) -> None:
    flags = {
        "--stack": args.stack,
        "--couple": args.couple,
        "--warmup": args.warmup,
        "--starting-seconds": args.starting_seconds,
        "--predictive": args.predictive,
        "--predictive-metric": args.predictive_metric,
        "--lead": args.lead,
        "--history-days": args.history_days,
        "--plot": args.plot,
        "--price": args.price != DEFAULT_PRICE,
    }
    for flag, value in flags.items():
        if value:
            raise UsageError(
                f"{flag} does not apply to a TableCapacity (capacity changes at once; the "
                "prices are DynamoDB's, see docs/simulate.md)"
            )


def _policies(args: argparse.Namespace) -> list[str]:
    names = [n for p in args.policy or ["default"] for n in (TABLE_POLICIES if p == "all" else [p])]
    for n in names:
        if n not in TABLE_POLICIES:
            raise UsageError(
                f"policy {n!r} does not apply to a TableCapacity; choose from "
                f"{', '.join(TABLE_POLICIES)} or all"
            )
    return list(dict.fromkeys(names))


def tiers_for(
    resources: Sequence[Resource], args: argparse.Namespace, trace: Trace
) -> list[TableTier]:
    names = [r.name for r in resources]
    for n, _ in args.capacity_per_unit or ():
        if n is not None and n not in names:
            raise UsageError(
                f"--capacity-per-unit {n}=...: {n} is not simulated (simulated: {', '.join(names)})"
            )
    tiers = []
    for k, r in enumerate(resources):
        consumed = next((m for m in r.scaling.metrics if m.name == "consumed"), None)
        if consumed is None or consumed.target is None:  # pragma: no cover - the kind's own
            raise UsageError(f"{r.key}: has no consumed metric")
        cpu = _pick(args.capacity_per_unit, r.name, k == 0)
        tiers.append(
            TableTier(
                name=r.key,
                dimension=_target(r).dimension.value,
                spec=r.scaling,
                target=consumed.target.value,
                capacity_per_unit=trace.step_seconds if cpu is None else cpu,
            )
        )
    return tiers


ROW = "{:<16} {:<6} {:>10} {:>8} {:>9} {:>12} {:>6} {:>6} {:>6} {:>10} {:>10}"
HEADER = ROW.format(
    "policy",
    "dim",
    "unit-h",
    "x oracle",
    "thr min",
    "thr units",
    "peak",
    "ups",
    "downs",
    "trough x",
    "cost $",
)


def table_text(reports: Sequence[TableReport]) -> str:
    lines = [HEADER, "-" * len(HEADER)]
    for r in reports:
        for s in r.tiers:
            lines.append(
                ROW.format(
                    r.policy,
                    s.dimension,
                    f"{s.capacity_unit_hours:,.0f}",
                    f"{s.oracle_ratio:.2f}",
                    f"{s.throttled_minutes:,.0f}",
                    f"{s.throttled_units:,.0f}",
                    s.peak,
                    s.increases,
                    s.lowerings,
                    f"{max(s.trough_ratios, default=0.0):.2f}",
                    f"{s.cost:,.2f}",
                )
            )
        per_day = f"{r.max_decreases_per_day}" + ("" if r.budgeted else " (unbudgeted)")
        lines.append(
            f"{'':<16} table  {r.capacity_unit_hours:>10,.0f} unit-h, {r.throttled_minutes:,.0f} "
            f"throttled min (any dimension), decreases {r.decreases} (refused "
            f"{r.decreases_refused}), max {per_day} in a UTC day, ${r.cost:,.2f}"
        )
    return "\n".join(lines)


def preamble(tiers: Sequence[TableTier], resource: Resource, trace: Trace, cfg: TableConfig) -> str:
    dims = "; ".join(
        f"{t.name} ({t.dimension}: one unit serves {t.capacity_per_unit:,.4g} per row interval)"
        for t in tiers
    )
    return (
        f"{_target(resource)} on trace {trace.name}: {trace.duration_seconds / 60:,.0f} minutes "
        f"at {cfg.step_seconds:g} s steps, x{cfg.scale:g}\n"
        f"dimensions (one decrease budget): {dims}\n"
        f"target utilization {100 * tiers[0].target:.0f}%; burst capacity {cfg.burst_seconds:g} "
        f"s of unused capacity; trough: each full UTC day's least-demand hour (none in a gap of "
        f"{GAP_SECONDS / 60:g}+ minutes without a request), goal <= "
        f"{TROUGH_GOAL:g}x the oracle at its end\n"
        f"prices: {PRICES_SOURCE}"
    )


def on_demand_line(report: TableReport) -> str:
    parts = ", ".join(
        f"{s.request_units / 1e6:,.2f} M {s.dimension.lower()} request units" for s in report.tiers
    )
    return f"on-demand for the same trace: {parts}: ${report.on_demand_cost:,.2f}"


def to_json(reports: Sequence[TableReport]) -> dict[str, Any]:
    first = reports[0].to_dict()
    if len(reports) == 1:
        return first
    return {**first, "reports": [r.to_dict() for r in reports]}


def cmd_simulate_table(args: argparse.Namespace, resource: Resource) -> int:
    _refuse_flags(args)
    policies = _policies(args)
    resources = table_resources(args.file, resource)
    trace = load_trace(args.trace)
    tiers = tiers_for(resources, args, trace)
    try:
        cfg = TableConfig(step_seconds=args.step, scale=args.scale, burst_seconds=BURST_SECONDS)
        demand = resample(trace, cfg.step_seconds, cfg.scale)
        table = str(_target(resource))
        reports = [
            run_table(tiers, demand, p, cfg, table=table, trace=trace.name) for p in policies
        ]
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(preamble(tiers, resource, trace, cfg))
    print()
    print(table_text(reports))
    print(on_demand_line(reports[0]))
    if args.json:
        text = json.dumps(to_json(reports), indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0
