"""The policy's memory between ticks: small, bounded, serializable.

It lives in ``.status.history`` so cooldowns, stabilization windows and
rate-limit periods survive an operator restart (the HPA forgets them).

Stabilization windows are kept as monotonic queues: the scale-in window
keeps only recommendations that are higher than every later one (so its
head is the window's maximum), the scale-out window only those lower than
every later one (head = minimum). Recommendations are integers within the
capacity bounds, so each queue holds at most one entry per distinct value;
on top of that every list is capped, and when a cap is hit the two oldest
entries merge conservatively (the older, more restraining value is kept
until the newer time), so truncation can only make the policy more
cautious, never less.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

HISTORY_VERSION = 1
MAX_WINDOW_ENTRIES = 64
MAX_EVENTS = 64

Entry = tuple[float, int]
"""(time in epoch seconds, capacity or capacity change)."""


def _push_monotonic(
    entries: tuple[Entry, ...], t: float, value: int, window: float, *, keep_max: bool
) -> tuple[Entry, ...]:
    kept = [e for e in entries if e[0] >= t - window and e[0] <= t]
    if keep_max:
        while kept and kept[-1][1] <= value:
            kept.pop()
    else:
        while kept and kept[-1][1] >= value:
            kept.pop()
    kept.append((t, value))
    while len(kept) > MAX_WINDOW_ENTRIES:
        (_, v1), (t2, _) = kept[0], kept[1]
        kept[0:2] = [(t2, v1)]
    return tuple(kept)


def _window_head(entries: tuple[Entry, ...], t: float, window: float) -> int | None:
    for e_t, value in entries:
        if t - window <= e_t <= t:
            return value
    return None


@dataclass(frozen=True)
class History:
    """State carried from one decision to the next. Times are epoch seconds."""

    last_scale_out: float | None = None
    last_scale_in: float | None = None
    scale_in_window: tuple[Entry, ...] = ()
    scale_out_window: tuple[Entry, ...] = ()
    events: tuple[Entry, ...] = ()
    """Recent capacity changes (time, signed delta) for rate limits."""
    consecutive_failures: int = 0
    fallback_active: bool = False

    # --- queries ------------------------------------------------------------

    def max_in_window(self, t: float, window: float) -> int | None:
        """Highest recommendation recorded within [t - window, t]."""
        return _window_head(self.scale_in_window, t, window)

    def min_in_window(self, t: float, window: float) -> int | None:
        """Lowest recommendation recorded within [t - window, t]."""
        return _window_head(self.scale_out_window, t, window)

    def scale_in_held_until(self, level: int, window: float) -> float | None:
        """Until when the scale-in window holds the capacity at ``level`` or above.

        Scale-in follows the highest recommendation of its window (:meth:`max_in_window`),
        so the window keeps ``level`` until the newest recommendation of ``level`` or more
        that it records has left it: ``window`` seconds after that entry. From then on
        ``max_in_window`` is below ``level`` (or None) unless a new recommendation of
        ``level`` or more is recorded. None when the window records none, or has no length.
        """
        if window <= 0:
            return None
        held = [e_t for e_t, value in self.scale_in_window if value >= level]
        return max(held) + window if held else None

    def net_change_in_period(self, t: float, period: float) -> int:
        """Net capacity change (increases minus decreases) in (t - period, t].

        The capacity at the start of the period is the current capacity minus this, in
        both directions (the HPA's periodStartReplicas: current - added + deleted).
        """
        return sum(delta for e_t, delta in self.events if t - period < e_t <= t)

    # --- updates (return new histories) -----------------------------------

    def with_first_window(self, t: float, capacity: int, *, in_window: float) -> History:
        """Open the first scale-in window of a newly seen resource (or a reset history).

        With no scale-in recommendation recorded yet, the current capacity is recorded as
        the window's first recommendation, as the HPA does for a new autoscaler, so the
        resource does not scale in before one whole window of its own recommendations.
        A history that has decided once always holds at least its last recommendation, so
        an empty scale-in window means exactly "never decided" or "reset". A window of 0
        seconds has nothing to open.
        """
        if self.scale_in_window or in_window <= 0:
            return self
        return replace(self, scale_in_window=((t, capacity),))

    def with_recommendation(
        self, t: float, value: int, *, in_window: float, out_window: float
    ) -> History:
        return replace(
            self,
            scale_in_window=_push_monotonic(
                self.scale_in_window, t, value, in_window, keep_max=True
            ),
            scale_out_window=_push_monotonic(
                self.scale_out_window, t, value, out_window, keep_max=False
            ),
        )

    def with_scale(self, t: float, delta: int, *, keep_seconds: float) -> History:
        if delta == 0:
            return self
        events = [e for e in self.events if e[0] > t - keep_seconds and e[0] <= t]
        events.append((t, delta))
        while len(events) > MAX_EVENTS:
            (_, d1), (t2, d2) = events[0], events[1]
            if (d1 > 0) == (d2 > 0):
                events[0:2] = [(t2, d1 + d2)]
            else:
                events.pop(0)
        return replace(
            self,
            events=tuple(events),
            last_scale_out=t if delta > 0 else self.last_scale_out,
            last_scale_in=t if delta < 0 else self.last_scale_in,
        )

    # --- serialization (for .status.history) --------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": HISTORY_VERSION}
        if self.last_scale_out is not None:
            out["lastScaleOut"] = _ts(self.last_scale_out)
        if self.last_scale_in is not None:
            out["lastScaleIn"] = _ts(self.last_scale_in)
        if self.scale_in_window:
            out["scaleInWindow"] = [[_ts(t), v] for t, v in self.scale_in_window]
        if self.scale_out_window:
            out["scaleOutWindow"] = [[_ts(t), v] for t, v in self.scale_out_window]
        if self.events:
            out["events"] = [[_ts(t), d] for t, d in self.events]
        if self.consecutive_failures:
            out["consecutiveFailures"] = self.consecutive_failures
        if self.fallback_active:
            out["fallbackActive"] = True
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> History:
        """Read a history written by :meth:`to_dict`; raise ValueError if it is malformed."""
        if not data:
            return cls()
        try:
            version = data.get("version", HISTORY_VERSION)
            if version != HISTORY_VERSION:
                raise ValueError(f"unsupported history version {version!r}")
            return cls(
                last_scale_out=_opt_time(data.get("lastScaleOut")),
                last_scale_in=_opt_time(data.get("lastScaleIn")),
                scale_in_window=_entries(data.get("scaleInWindow"), MAX_WINDOW_ENTRIES),
                scale_out_window=_entries(data.get("scaleOutWindow"), MAX_WINDOW_ENTRIES),
                events=_entries(data.get("events"), MAX_EVENTS),
                consecutive_failures=_nonneg_int(data.get("consecutiveFailures", 0)),
                fallback_active=bool(data.get("fallbackActive", False)),
            )
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"malformed history: {exc}") from exc


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """Epoch seconds of an RFC 3339 time (``Z`` or an offset; naive means UTC)."""
    if not isinstance(text, str):
        raise ValueError(f"expected an RFC 3339 time string, got {text!r}")
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _opt_time(v: Any) -> float | None:
    return None if v is None else parse_time(v)


def _nonneg_int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ValueError(f"expected a non-negative integer, got {v!r}")
    return v


def _entries(raw: Any, cap: int) -> tuple[Entry, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError(f"expected a list, got {raw!r}")
    out = []
    for item in raw[-cap:]:
        t, v = item
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"expected an integer, got {v!r}")
        out.append((parse_time(t), v))
    return tuple(out)
