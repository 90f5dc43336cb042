"""``stackscaler status`` output: text for a terminal or a pipe, and JSON. Pure.

Every string that comes from a resource (names, reasons, messages, condition
types, whatever a status holds) goes through :func:`esc`, which is
:func:`stackscaler.text.safe_text`: a control character, an escape
sequence, a bidi override or a zero-width character is printed as a
visible escape (``\\x1b``, ``\\u202e``), never sent to the terminal. The
only escape sequences in the output are the colors this module adds, and
only with :data:`COLOR`.

JSON carries the strings as the status holds them (a program reads them),
serialized with ``ensure_ascii``: a control or bidi character is a ``\\uXXXX``
escape in the output text, never the character itself.

Pure: no I/O, no clock (``now`` is an argument).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from stackscaler.status.view import Condition, ForecastLine, ScaleIn, ScaleInState, TierView
from stackscaler.text import safe_text

JSON_VERSION: Final = 1
"""Version of the ``--json`` document; bumped only when a key changes meaning or goes."""

REASON_LIMIT: Final = 1024
"""Characters of a reason or message shown (the CRD allows 1,024 per reason)."""
NAME_LIMIT: Final = 253


def esc(text: str, limit: int = NAME_LIMIT) -> str:
    """``text`` from a resource, safe to print: one line, every invisible character escaped."""
    return safe_text(text, limit)


# --- style ----------------------------------------------------------------------

BOLD, DIM, RED, GREEN, YELLOW, CYAN = "1", "2", "31", "32", "33", "36"


@dataclass(frozen=True)
class Style:
    """ANSI colors (SGR) or none."""

    color: bool

    def __call__(self, text: str, *codes: str) -> str:
        if not self.color or not codes or not text:
            return text
        return f"\x1b[{';'.join(codes)}m{text}\x1b[0m"


PLAIN: Final = Style(False)
COLOR: Final = Style(True)

_GOOD_WHEN_TRUE: Final = frozenset({"Ready", "MetricsAvailable"})
_RED_WHEN_TRUE: Final = frozenset({"Fallback", "Conflict"})


def _condition_codes(c: Condition) -> tuple[str, ...]:
    if c.status not in ("True", "False"):
        return (YELLOW,)
    true = c.status == "True"
    if c.type in _GOOD_WHEN_TRUE:
        return (GREEN,) if true else (RED,)
    if not true:
        return (DIM,)
    return (RED,) if c.type in _RED_WHEN_TRUE else (YELLOW,)


# --- times ----------------------------------------------------------------------


def duration(seconds: float) -> str:
    """``42s``, ``4m12s``, ``2h05m``, ``3d04h`` (whole seconds, rounded up)."""
    s = max(0, math.ceil(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def rfc3339(t: float) -> str:
    """``2026-11-27T12:05:00Z``."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _ago(t: float | None, now: float) -> str:
    if t is None:
        return ""
    return f"{duration(now - t)} ago" if t <= now else f"in {duration(t - now)} (clock skew?)"


def _n(v: int | None) -> str:
    return "-" if v is None else str(v)


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.6g}"


# --- the summary table ------------------------------------------------------------


def scale_in_short(s: ScaleIn) -> str:
    """The NEXT SCALE-IN column: ``now``, ``in 4m12s``, ``at min 2``, ``-``."""
    if s.state is ScaleInState.WAITING and s.seconds_left is not None:
        return f"in {duration(s.seconds_left)}"
    if s.state is ScaleInState.ALLOWED:
        return "now"
    if s.state is ScaleInState.AT_MINIMUM:
        return f"at min {_n(s.floor)}"
    return "-"


def _scale_in_codes(s: ScaleIn) -> tuple[str, ...]:
    if s.state is ScaleInState.WAITING:
        return (YELLOW,)
    if s.state is ScaleInState.ALLOWED:
        return (GREEN,)
    return (DIM,)


Cell = tuple[str, tuple[str, ...]]
"""Text already safe to print, and its color codes."""


def _table(header: Sequence[str], rows: Sequence[Sequence[Cell]], style: Style) -> list[str]:
    widths = [max([len(h), *(len(r[i][0]) for r in rows)]) for i, h in enumerate(header)]
    last = len(header) - 1

    def line(cells: Sequence[Cell]) -> str:
        parts = [
            style(text if i == last else text.ljust(widths[i]), *codes)
            for i, (text, codes) in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    return [line([(h, (BOLD,)) for h in header]), *(line(r) for r in rows)]


def render_summary(
    views: Sequence[TierView], *, style: Style = PLAIN, namespaces: bool = False
) -> list[str]:
    """One line per resource: the stack at a glance."""
    header = [
        *(["NAMESPACE"] if namespaces else []),
        "KIND",
        "NAME",
        "CURRENT",
        "DESIRED",
        "STARTING",
        "READY",
        "LIMITED BY",
        "NEXT SCALE-IN",
    ]
    rows: list[list[Cell]] = []
    for v in views:
        ready = v.condition("Ready")
        ready_cell: Cell = (
            ("-", ())
            if ready is None
            else (esc(ready.status, 16), (GREEN,) if ready.status == "True" else (RED,))
        )
        limited = v.decision.limited_by if v.decision else None
        rows.append(
            [
                *([(esc(v.namespace), ())] if namespaces else []),
                (esc(v.kind), (CYAN,)),
                (esc(v.name), (BOLD,)),
                (_n(v.current), ()),
                (_n(v.desired), (BOLD,) if v.desired != v.current else ()),
                (_n(v.starting), (YELLOW,) if v.starting else ()),
                ready_cell,
                (esc(limited, 64) if limited else "-", (YELLOW,) if limited else ()),
                (scale_in_short(v.scale_in), _scale_in_codes(v.scale_in)),
            ]
        )
    return _table(header, rows, style)


# --- one resource in detail -----------------------------------------------------------


def scale_in_text(s: ScaleIn, now: float) -> str:
    """The ``scale-in`` line of a resource: when, and what it waits for."""
    if s.state is ScaleInState.UNKNOWN:
        return f"unknown: {s.detail}"
    if s.state is ScaleInState.AT_MINIMUM:
        return f"none: at the minimum capacity {_n(s.floor)}"
    parts = []
    if s.window_until is not None and now <= s.window_until:
        parts.append(f"the stabilization window holds it until {rfc3339(s.window_until)}")
    if s.cooldown_until is not None and now < s.cooldown_until:
        parts.append(f"the cooldown runs until {rfc3339(s.cooldown_until)}")
    asked = (
        "the last recommendation asks for one"
        if s.recommended
        else "the last recommendation does not ask for one"
    )
    if s.state is ScaleInState.ALLOWED:
        return f"allowed now ({asked})"
    assert s.seconds_left is not None and s.allowed_at is not None
    return (
        f"in {duration(s.seconds_left)}, at {rfc3339(s.allowed_at)}: {'; '.join(parts)} ({asked})"
    )


def _label(text: str, style: Style) -> str:
    return "  " + style(text.ljust(11), BOLD)


def _decision_lines(v: TierView, now: float, style: Style) -> list[str]:
    d = v.decision
    if d is None:
        return [_label("decision", style) + style("none yet", DIM)]
    if v.current != v.desired:
        move = f"{_n(v.current)} -> {_n(v.desired)}"
        head = f"{style('scale ' + esc(d.direction or '?', 16).lower(), CYAN)} {move}"
    else:
        head = f"hold {_n(v.current)}"
    if d.limited_by:
        head += ", limited by " + style(esc(d.limited_by, 64), YELLOW)
    if d.time is not None:
        when = esc(d.time, 64)
        head += f", {_ago(d.at, now)} ({when})" if d.at is not None else f" ({when})"
    out = [_label("decision", style) + head]
    out += [" " * 15 + "- " + esc(r, REASON_LIMIT) for r in d.reasons]
    for m in d.metrics:
        target = f" (target {_num(m.target)})" if m.target is not None else ""
        rec = f" -> {m.recommendation}" if m.recommendation is not None else ""
        state = esc(m.state or "?", 16)
        codes = () if m.state == "Known" else (RED,)
        value = style(_num(m.value) if m.value is not None else state.lower(), *codes)
        out.append(_label("metric", style) + f"{esc(m.name, 63)} {value}{target}{rec} [{state}]")
    return out


_FORECAST_CODES: Final = {"Ready": (GREEN,), "Refused": (YELLOW,)}


def forecast_text(f: ForecastLine, style: Style = PLAIN) -> str:
    """``ForecastOnly cpu Ready: floor 14, would raise to 14 (lead 600s): <message>``."""
    state = esc(f.state or "?", 16)
    head = f"{esc(f.mode or '?', 32)} {esc(f.metric or '?', 63)} "
    head += style(state, *_FORECAST_CODES.get(f.state or "", (DIM,)))
    if f.reason and f.reason != f.state:
        head += f" ({esc(f.reason, 64)})"
    parts = []
    if f.floor is not None:
        parts.append(f"floor {f.floor}")
    if f.would_raise_to is not None:
        parts.append("would raise to " + style(str(f.would_raise_to), YELLOW))
    if parts:
        lead = f" (lead {duration(f.lead_seconds)})" if f.lead_seconds is not None else ""
        head += ": " + ", ".join(parts) + lead
    if f.message:
        head += f"; {esc(f.message, REASON_LIMIT)}"
    if f.next_refresh:
        head += f"; next refresh {esc(f.next_refresh, 64)}"
    return head


def _conditions_lines(v: TierView, style: Style) -> list[str]:
    if not v.conditions:
        return [_label("conditions", style) + style("none yet", DIM)]
    width = max(len(esc(c.type, 64)) for c in v.conditions)
    out = ["  " + style("conditions", BOLD)]
    for c in v.conditions:
        reason = esc(c.reason, 128)
        message = esc(c.message, REASON_LIMIT)
        since = f" (since {esc(c.since, 64)})" if c.since else ""
        status = style(esc(c.status, 16).ljust(7), *_condition_codes(c))
        text = f"    {esc(c.type, 64).ljust(width)}  {status} {reason}"
        out.append((text + (f": {message}" if message else "") + since).rstrip())
    return out


def render_tier(v: TierView, now: float, *, style: Style = PLAIN) -> list[str]:
    """Everything ``status`` knows of one resource, a few lines."""
    head = f"{style(esc(v.kind), CYAN)} {style(esc(v.namespace) + '/' + esc(v.name), BOLD)}"
    if v.spec_pending:
        head += style(
            f"  (spec generation {v.generation} not reconciled yet: the status is of "
            f"{v.observed_generation})",
            YELLOW,
        )
    target = f"{esc(v.target_kind or '?', 64)} {esc(v.target_name or '?')}"
    bounds = f"min {_n(v.min_capacity)}, max {_n(v.max_capacity)}"
    mode = esc(v.mode, 16) if v.mode else "Active"
    out = [head, _label("target", style) + f"{target}, {bounds}, mode {mode}"]
    capacity = (
        f"current {_n(v.current)}, desired {_n(v.desired)}, "
        f"starting {style(_n(v.starting), YELLOW) if v.starting else _n(v.starting)}, "
        f"leaving {_n(v.leaving)}, applied {_n(v.applied)}"
    )
    out.append(_label("capacity", style) + capacity)
    out += _decision_lines(v, now, style)
    if v.pending is not None:
        p = v.pending
        headline = f": {esc(p.headline, REASON_LIMIT)}" if p.headline else ""
        out.append(
            _label("pending", style)
            + style(f"{_n(p.start)} -> {_n(p.to)}", YELLOW)
            + f" being sent since {esc(p.time or '?', 64)}{headline}"
        )
    if v.last_scale_time:
        out.append(
            _label("last scale", style)
            + f"{esc(v.last_scale_time, 64)} (out {esc(v.last_scale_out_time or '-', 64)}, "
            f"in {esc(v.last_scale_in_time or '-', 64)})"
        )
    out.append(
        _label("scale-in", style)
        + style(scale_in_text(v.scale_in, now), *_scale_in_codes(v.scale_in))
    )
    if v.forecast is not None:
        out.append(_label("forecast", style) + forecast_text(v.forecast, style))
    out += _conditions_lines(v, style)
    return out


def render_text(
    views: Sequence[TierView],
    now: datetime,
    *,
    style: Style = PLAIN,
    namespaces: bool = False,
    scope: str = "",
) -> list[str]:
    """The summary table, then every resource in detail. ``scope`` says what was listed
    (``in namespace shop``, already safe to print) for the line that says there is none."""
    if not views:
        return [f"No stackscaler resources{' ' + scope if scope else ''}."]
    t = now.timestamp()
    out = render_summary(views, style=style, namespaces=namespaces)
    for v in views:
        out.append("")
        out += render_tier(v, t, style=style)
    return out


# --- JSON -------------------------------------------------------------------------


def _opt_time(t: float | None) -> str | None:
    return None if t is None else rfc3339(t)


def scale_in_dict(s: ScaleIn) -> dict[str, Any]:
    return {
        "state": str(s.state),
        "allowedAt": _opt_time(s.allowed_at),
        "secondsLeft": None if s.seconds_left is None else math.ceil(s.seconds_left),
        "waitingFor": list(s.waiting_for),
        "cooldownUntil": _opt_time(s.cooldown_until),
        "stabilizationUntil": _opt_time(s.window_until),
        "recommended": s.recommended,
        "minCapacity": s.floor,
        "detail": s.detail,
    }


def tier_dict(v: TierView, now: float) -> dict[str, Any]:
    """One resource for ``--json``: every key always present (null when unknown)."""
    d = v.decision
    return {
        "kind": v.kind,
        "namespace": v.namespace,
        "name": v.name,
        "target": {"kind": v.target_kind, "name": v.target_name},
        "mode": v.mode,
        "minCapacity": v.min_capacity,
        "maxCapacity": v.max_capacity,
        "generation": v.generation,
        "observedGeneration": v.observed_generation,
        "capacity": {
            "current": v.current,
            "desired": v.desired,
            "starting": v.starting,
            "leaving": v.leaving,
            "applied": v.applied,
        },
        "lastScaleTime": v.last_scale_time,
        "lastScaleOutTime": v.last_scale_out_time,
        "lastScaleInTime": v.last_scale_in_time,
        "lastDecision": None
        if d is None
        else {
            "time": d.time,
            "ageSeconds": None if d.at is None else math.floor(now - d.at),
            "direction": d.direction,
            "limitedBy": d.limited_by,
            "reasons": list(d.reasons),
            "metrics": [
                {
                    "name": m.name,
                    "state": m.state,
                    "value": m.value,
                    "target": m.target,
                    "recommendation": m.recommendation,
                }
                for m in d.metrics
            ],
        },
        "pendingAction": None
        if v.pending is None
        else {
            "time": v.pending.time,
            "from": v.pending.start,
            "to": v.pending.to,
            "headline": v.pending.headline,
        },
        "conditions": [
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": c.since,
            }
            for c in v.conditions
        ],
        "scaleIn": scale_in_dict(v.scale_in),
        "forecast": None if v.forecast is None else forecast_dict(v.forecast),
    }


def forecast_dict(f: ForecastLine) -> dict[str, Any]:
    return {
        "mode": f.mode,
        "metric": f.metric,
        "state": f.state,
        "reason": f.reason,
        "message": f.message,
        "floor": f.floor,
        "wouldRaiseTo": f.would_raise_to,
        "load": f.load,
        "leadSeconds": f.lead_seconds,
        "backtestError": f.backtest_error,
        "historyHours": f.history_hours,
        "nextRefreshTime": f.next_refresh,
    }


def to_json(views: Sequence[TierView], now: datetime) -> dict[str, Any]:
    """The ``--json`` document."""
    t = now.timestamp()
    return {
        "version": JSON_VERSION,
        "time": rfc3339(t),
        "items": [tier_dict(v, t) for v in views],
    }


def dump_json(document: dict[str, Any], *, indent: int | None = 2) -> str:
    """JSON text that is pure ASCII: no character of a resource reaches a terminal raw."""
    return json.dumps(document, indent=indent, ensure_ascii=True, allow_nan=False)
