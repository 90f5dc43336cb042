"""When the policy's time rules next allow a scale-in, from a resource's history.

:func:`decide` holds a scale-in back with two rules that depend on time alone:
the scale-in cooldown (``scaleIn.cooldownSeconds`` after the last scale-in or
scale-out, :func:`~stackscaler.policy.rules.scale_in_cooldown_until`) and the
scale-in stabilization window (the highest recommendation of the last
``scaleIn.stabilizationWindowSeconds``, :meth:`History.scale_in_held_until`).
:func:`scale_in_outlook` reads both from the same history, with the same
functions, so what it says is what the next decision will find; ``stackscaler
status`` shows it.

The other rules that bound a scale-in do not depend on time: the floor
(``minCapacity``, or a schedule's), the warm-up (no scale-in while units are
starting, on per-unit metrics), unknown metrics (never a scale-in), and the
rate limit (it slows a scale-in, never stops it: at least one unit a period).

Pure: no I/O, no clock (``now`` is an argument).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from stackscaler.model.spec import ScalingSpec
from stackscaler.policy.history import History
from stackscaler.policy.rules import effective_bounds, scale_in_cooldown_until
from stackscaler.policy.types import Limit


@dataclass(frozen=True)
class ScaleInOutlook:
    """The scale-in rules that depend on time, for one resource at one capacity."""

    current: int
    floor: int
    """The effective minCapacity at the time asked (schedules applied)."""
    cooldown_until: float | None
    """When the scale-in cooldown ends (epoch seconds; maybe past); None: never scaled."""
    window_until: float | None
    """When the scale-in window stops holding ``current`` (epoch seconds; maybe past);
    None: it records no recommendation of ``current`` or more (or has no length)."""
    recommended: bool
    """The newest recommendation the window records is below ``current``: the policy
    asks for a scale-in that the rules still hold back (False: it does not ask for one;
    the times above are then the earliest one could happen, were the load to drop)."""

    @property
    def at_floor(self) -> bool:
        """No scale-in at any time: the capacity is at or below the floor."""
        return self.current <= self.floor

    @property
    def allowed_at(self) -> float | None:
        """The earliest time both the cooldown and the window allow a scale-in (None: no
        time rule holds it back at all)."""
        return max(
            (x for x in (self.cooldown_until, self.window_until) if x is not None), default=None
        )

    def waiting_for(self, t: float) -> tuple[Limit, ...]:
        """The time rules that still hold a scale-in back at ``t``, in the policy's order."""
        out: list[Limit] = []
        if self.window_until is not None and t <= self.window_until:
            out.append(Limit.SCALE_IN_STABILIZATION)
        if self.cooldown_until is not None and t < self.cooldown_until:
            out.append(Limit.SCALE_IN_COOLDOWN)
        return tuple(out)

    def seconds_left(self, t: float) -> float:
        """Seconds from ``t`` until the time rules allow a scale-in (0: they do now)."""
        at = self.allowed_at
        return 0.0 if at is None or not self.waiting_for(t) else max(0.0, at - t)


def scale_in_outlook(
    spec: ScalingSpec, history: History, current: int, now: datetime
) -> ScaleInOutlook:
    """When :func:`~stackscaler.policy.decide` would next let ``current`` go down.

    ``history`` is the one the last decision left (``status.history``); ``now``
    must be timezone-aware (it picks the schedules that set the floor).
    """
    if now.tzinfo is None:
        raise ValueError("scale_in_outlook() needs a timezone-aware 'now'")
    behavior = spec.behavior.scale_in
    floor, _, _ = effective_bounds(spec, now)
    window = float(behavior.stabilization_window_seconds)
    newest = history.scale_in_window[-1][1] if history.scale_in_window else None
    return ScaleInOutlook(
        current=current,
        floor=floor,
        cooldown_until=scale_in_cooldown_until(history, behavior.cooldown_seconds),
        window_until=history.scale_in_held_until(current, window),
        recommended=newest is not None and newest < current,
    )
