"""The report table (stdout) and JSON for ``stackscaler simulate`` (and ``--stack``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stackscaler.model.spec import TierSource
from stackscaler.sim.run import Report
from stackscaler.sim.stack import StackTier
from stackscaler.sim.trace import Trace

COLUMNS = (
    ("policy", "{:<16}"),
    ("unit-h", "{:>10}"),
    ("x oracle", "{:>8}"),
    ("over-prov", "{:>9}"),
    ("under min", "{:>9}"),
    ("under %", "{:>7}"),
    ("worst def", "{:>9}"),
    ("p95 util", "{:>8}"),
    ("peak", "{:>5}"),
    ("actions", "{:>7}"),
    ("revers", "{:>6}"),
    ("cost $", "{:>10}"),
)


def _row(r: Report) -> list[str]:
    return [
        r.policy,
        f"{r.capacity_unit_hours:,.1f}",
        f"{r.oracle_ratio:.2f}",
        f"{100 * r.over_provisioning:.0f}%",
        f"{r.under_provisioned_minutes:,.0f}",
        f"{100 * r.under_provisioned_fraction:.2f}",
        f"{r.worst_deficit_units}",
        f"{100 * r.p95_utilization:.0f}%",
        f"{r.peak_capacity}",
        f"{r.scale_actions}",
        f"{r.reversals}",
        f"{r.cost:,.2f}",
    ]


def table(reports: Sequence[Report]) -> str:
    header = " ".join(fmt.format(name) for name, fmt in COLUMNS)
    lines = [header, "-" * len(header)]
    for r in reports:
        lines.append(" ".join(fmt.format(v) for (_, fmt), v in zip(COLUMNS, _row(r), strict=True)))
    return "\n".join(lines)


def preamble(r: Report) -> str:
    return (
        f"tier {r.tier}, trace {r.trace}: {r.total_minutes:,.0f} minutes at {r.step_seconds:g} s "
        f"steps; one unit serves {r.capacity_per_unit:,.4g} per row interval at 100%; target "
        f"utilization {100 * r.target_utilization:.0f}%; warm-up {r.warmup_seconds:g} s\n"
        f"demand: {r.demand_unit_hours:,.1f} unit-hours at 100%; oracle (perfect foresight at the "
        f"target): {r.oracle_capacity_unit_hours:,.1f} unit-hours; "
        f"price ${r.price_per_unit_hour:g}/unit-hour"
    )


def to_json(reports: Sequence[Report]) -> dict[str, Any]:
    """One policy: its report object; several: {"reports": [...]} plus the first's fields."""
    if len(reports) == 1:
        return reports[0].to_dict()
    first = reports[0].to_dict()
    return {**first, "reports": [r.to_dict() for r in reports]}


def stack_header(tiers: Sequence[StackTier], trace: Trace, others: Sequence[str] = ()) -> str:
    """What a ``--stack`` run simulates: the front tier, the couplings, the tiers left out."""
    front = tiers[0].resource.key
    lines = [f"stack on trace {trace.name}: front tier {front} (the trace's demand)"]
    for t in tiers[1:]:
        assert t.coupling is not None
        lines.append(f"  {t.resource.key}: load = {t.coupling.describe(front)}")
        for m in t.resource.scaling.metrics:
            if isinstance(m.source, TierSource):
                lines.append(f"    metric {m.name} follows {m.source} (as last recorded)")
    if others:
        lines.append(f"not in the stack (no --couple): {'; '.join(others)}")
    return "\n".join(lines)


def stack_json(
    tiers: Sequence[StackTier], trace: Trace, runs: Sequence[Sequence[Report]]
) -> dict[str, Any]:
    """``{"stack": {...}, "tiers": [...]}``: the stack's shape, then per tier what
    :func:`to_json` gives for a single-tier run of the same policies."""
    front = tiers[0].resource.key
    return {
        "stack": {
            "trace": trace.name,
            "front": front,
            "couplings": [
                {
                    "tier": t.resource.key,
                    "ratio": t.coupling.ratio,
                    "lag_seconds": t.coupling.lag_seconds,
                }
                for t in tiers[1:]
                if t.coupling is not None
            ],
        },
        "tiers": [to_json([per_policy[k] for per_policy in runs]) for k in range(len(tiers))],
    }
