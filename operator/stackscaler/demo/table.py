"""The live table, the event lines and the summary, as plain text. Pure.

Rows combine what the load generator knows (demand, load) with what the
operator wrote into each resource's status (current and desired capacity,
and the reason: the Ready condition's message, which is the last decision's
headline, or why the resource is not ready).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stackscaler.demo.load import TierTally
from stackscaler.demo.stack import Tier

WAITING = "waiting for the operator's first decision"


@dataclass(frozen=True)
class Row:
    tier: str
    target: str
    demand: str
    load: str
    ready: int | None
    current: int | None
    desired: int | None
    reason: str


@dataclass(frozen=True)
class TierStatus:
    """What the live table needs from one resource's status."""

    current: int | None
    desired: int | None
    reason: str
    decided: bool


def tier_status(status: Mapping[str, Any] | None) -> TierStatus:
    """Current, desired and the last reason from a resource's ``.status``."""
    status = status or {}
    current, desired = status.get("currentCapacity"), status.get("desiredCapacity")
    conditions = {
        c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, Mapping)
    }
    ready = conditions.get("Ready")
    if ready is None:
        reason = WAITING
    elif ready.get("status") == "True":
        reason = str(ready.get("message") or ready.get("reason") or "")
    else:
        reason = f"{ready.get('reason')}: {ready.get('message')}"
    return TierStatus(
        current if isinstance(current, int) else None,
        desired if isinstance(desired, int) else None,
        reason,
        decided="lastDecision" in status,
    )


def count(value: float) -> str:
    """12345.6 -> '12,346'; 1234567 -> '1.23M'."""
    if not math.isfinite(value):
        return "-"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.3g}M"
    return f"{value:,.0f}"


def percent(value: float | None) -> str:
    return "no data" if value is None else f"{value:.0f}%"


def mmss(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def _fit(text: str, width: int) -> str:
    text = " ".join(text.split())
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


HEADERS = (
    "tier",
    "scales",
    "demand/min",
    "load vs target",
    "ready",
    "current",
    "desired",
    "last reason",
)
_TEXT = (0, 1, 3)
"""Left-aligned columns; numbers are right-aligned."""
_MIN_REASON = 20


def render_table(title: str, rows: Sequence[Row], width: int = 120) -> list[str]:
    """The live table: a title line, a header and one line per tier, at most ``width`` wide."""
    cells = [
        (
            r.tier,
            r.target,
            r.demand,
            r.load,
            _cell(r.ready),
            _cell(r.current),
            _cell(r.desired),
        )
        for r in rows
    ]
    n = len(HEADERS) - 1
    widths = [max([len(HEADERS[i]), *(len(c[i]) for c in cells)]) for i in range(n)]

    def line(values: Sequence[str], reason: str) -> str:
        parts = [
            v.ljust(widths[i]) if i in _TEXT else v.rjust(widths[i]) for i, v in enumerate(values)
        ]
        head = "  ".join(parts) + "  "
        return head + _fit(reason, max(_MIN_REASON, width - len(head)))

    out = [_fit(title, width), line(HEADERS[:n], HEADERS[n])]
    out += [line(c, r.reason) for c, r in zip(cells, rows, strict=True)]
    return out


def event_line(wall: float, clock: str, tier: str, *, reason: str, message: str, width: int) -> str:
    """One scale action or warning, as it scrolls above the table."""
    return _fit(f"[{mmss(wall)} | {clock}] {tier}: {reason} {message}", width)


@dataclass(frozen=True)
class TierSummary:
    tier: Tier
    tally: TierTally
    scale_outs: int
    scale_ins: int
    over_what: str
    """What "over target" means for this tier, e.g. 'cpu > 55%'."""


def render_summary(
    tiers: Sequence[TierSummary],
    *,
    heading: str,
    first_scale_out: str | None,
    footer: Sequence[str] = (),
) -> list[str]:
    out = [heading]
    names = [t.tier.label for t in tiers]
    width = max((len(n) for n in names), default=4)
    out.append(
        f"{'tier'.ljust(width)}  {'scale actions':>19}  {'capacity seen':>13}  time over target"
    )
    for t, name in zip(tiers, names, strict=True):
        actions = t.scale_outs + t.scale_ins
        act = f"{actions} ({t.scale_outs} out, {t.scale_ins} in)"
        lo, hi = t.tally.min_capacity, t.tally.max_capacity
        seen = "-" if lo is None or hi is None else (f"{lo}" if lo == hi else f"{lo}-{hi}")
        over = (
            f"{100 * t.tally.share_over:.0f}% ({t.tally.seconds_over:.0f} of "
            f"{t.tally.seconds:.0f} s with {t.over_what})"
        )
        out.append(f"{name.ljust(width)}  {act:>19}  {seen:>13}  {over}")
    out.append(
        "first scale-out: " + (first_scale_out if first_scale_out else "none during this run")
    )
    out.extend(footer)
    return out
