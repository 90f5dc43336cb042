"""The story as the picture at its end shows it, recorded while it plays. Pure.

Every tick of the load generator (1 s) records one :class:`Sample`: per
tier, the demand in capacity units at 100% (:func:`stackscaler.demo.load.needs`),
the ready capacity the stand-ins serve with and the desired capacity of the
resource's ``status.desiredCapacity`` as the display last read it. Every
scale action's Event (ScaledOut, ScaledIn) becomes an :class:`Action` at
its time. Times are on the story's clock: minutes of the day, EDT.

The :class:`Recorder` is bounded, whatever the story's length or tick rate:
at most ``max_samples`` samples (when full, every other one is dropped and
from then on one tick in twice as many is kept, so the samples stay evenly
spaced over the whole run; the latest is always kept) and at most
``max_actions`` actions (later ones are counted, not kept). The whole story
at its default pace is 720 ticks, so nothing is dropped there.

:func:`story_chart` turns a :class:`Timeline` into the picture's
:class:`~stackscaler.sim.chart.Chart`: one panel per tier, the scale
actions marked at the capacity they went to.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from stackscaler.demo.stack import Tier
from stackscaler.demo.story import LAUNCH_AT, Story, minute_of_day_label
from stackscaler.sim.chart import Chart, Mark, Panel

MAX_SAMPLES = 4096
MAX_ACTIONS = 2000
_HEADLINE = re.compile(r"\s*(\d{1,9}) -> (\d{1,9})\b")
_ALLOWED = re.compile(r"\(the target allows (\d{1,9})\)")


@dataclass(frozen=True)
class TierPoint:
    demand: float | None
    """Capacity units the demand keeps busy at 100%; None: no load computed yet."""
    ready: int | None
    desired: int | None
    """The status' desiredCapacity; None before the operator's first decision."""


@dataclass(frozen=True)
class Sample:
    minute: float
    """Story minute of the day (EDT)."""
    tiers: tuple[TierPoint, ...]
    """In the order of :attr:`Timeline.kinds`."""


@dataclass(frozen=True)
class Action:
    minute: float
    kind: str
    out: bool
    """True for a scale-out, False for a scale-in."""
    capacity: int | None
    """The capacity it went to, when its Event says (None: read it off the desired line)."""


@dataclass(frozen=True)
class Timeline:
    kinds: tuple[str, ...]
    samples: tuple[Sample, ...]
    actions: tuple[Action, ...]
    stride: int = 1
    """One tick in ``stride`` is kept (the latest always)."""
    dropped_actions: int = 0


class Recorder:
    """Samples and actions of one run, bounded (see the module docstring).

    The live demo's one recorder, filled from its event loop (no locks);
    :meth:`timeline` takes a frozen copy at any moment, also after Ctrl-C.
    """

    def __init__(
        self,
        kinds: Sequence[str],
        *,
        max_samples: int = MAX_SAMPLES,
        max_actions: int = MAX_ACTIONS,
    ) -> None:
        if max_samples < 2 or max_actions < 0:
            raise ValueError("a recorder keeps at least 2 samples and 0 actions")
        self.kinds = tuple(kinds)
        self._max_samples = max_samples
        self._max_actions = max_actions
        self._samples: list[Sample] = []
        self._latest: Sample | None = None
        self._ticks = 0
        self._stride = 1
        self._actions: list[Action] = []
        self._dropped_actions = 0

    def sample(self, minute: float, points: Sequence[TierPoint]) -> None:
        """One tick: ``points`` in the order of :attr:`kinds`."""
        if len(points) != len(self.kinds):
            raise ValueError(f"{len(points)} points for {len(self.kinds)} tiers")
        sample = Sample(minute, tuple(points))
        self._latest = sample
        tick = self._ticks
        self._ticks += 1
        if tick % self._stride:
            return
        if len(self._samples) >= self._max_samples:
            self._samples = self._samples[::2]
            self._stride *= 2
            if tick % self._stride:
                return
        self._samples.append(sample)

    def action(self, minute: float, kind: str, *, out: bool, message: str) -> None:
        """A scale action's Event (``message`` is only searched for the capacity it went to)."""
        if len(self._actions) >= self._max_actions:
            self._dropped_actions += 1
            return
        self._actions.append(Action(minute, kind, out, capacity_after(message)))

    def timeline(self) -> Timeline:
        samples = list(self._samples)
        if self._latest is not None and (not samples or samples[-1] is not self._latest):
            samples.append(self._latest)
        return Timeline(
            self.kinds,
            tuple(samples),
            tuple(sorted(self._actions, key=lambda a: a.minute)),
            self._stride,
            self._dropped_actions,
        )


def capacity_after(message: str) -> int | None:
    """The capacity a scale action's Event message says it went to, if it says.

    The operator's message starts with the decision's headline, ``"2 -> 5: ..."``,
    and adds ``"(the target allows 4)"`` when the target clamped the request.
    """
    allowed = _ALLOWED.search(message)
    if allowed:
        return int(allowed.group(1))
    headline = _HEADLINE.match(message)
    return int(headline.group(2)) if headline else None


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _desired_at(minutes: Sequence[float], desired: Sequence[float], minute: float) -> float:
    """The desired capacity recorded last at or before ``minute`` (else the first after)."""
    i = bisect.bisect_right(minutes, minute)
    before = (d for d in reversed(desired[:i]) if not math.isnan(d))
    after = (d for d in desired[i:] if not math.isnan(d))
    return next(before, next(after, math.nan))


def _range(values: Sequence[float]) -> str:
    known = [int(v) for v in values if not math.isnan(v)]
    if not known:
        return "-"
    lo, hi = min(known), max(known)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def story_chart(timeline: Timeline, tiers: Sequence[Tier], story: Story) -> Chart:
    """The picture: one panel per tier (x in hours of the day, EDT), the lift-off marked when
    the recorded part of the story holds it."""
    minutes = [s.minute for s in timeline.samples]
    x = tuple(m / 60 for m in minutes)
    panels = []
    for tier in tiers:
        i = timeline.kinds.index(tier.kind)
        points = [s.tiers[i] for s in timeline.samples]
        ready = tuple(_nan(p.ready) for p in points)
        desired = tuple(_nan(p.desired) for p in points)
        marks = []
        for a in timeline.actions:
            if a.kind != tier.kind:
                continue
            y = (
                float(a.capacity)
                if a.capacity is not None
                else _desired_at(minutes, desired, a.minute)
            )
            if not math.isnan(y):
                marks.append(Mark(a.minute / 60, y, a.out))
        outs = sum(1 for a in timeline.actions if a.kind == tier.kind and a.out)
        ins = sum(1 for a in timeline.actions if a.kind == tier.kind and not a.out)
        panels.append(
            Panel(
                title=(
                    f"{tier.label} ({tier.target}): ready {_range(ready)}, "
                    f"{outs} scale-out(s), {ins} scale-in(s)"
                ),
                x=x,
                demand=tuple(_nan(p.demand) for p in points),
                ready=ready,
                desired=desired,
                marks=tuple(marks),
            )
        )
    lift_off = LAUNCH_AT / 60
    recorded = bool(x) and x[0] <= lift_off <= x[-1]
    return Chart(
        title=(
            "stackscaler demo: examples/stack.yaml live on launch day at NASA, Thu 13 July 1995 "
            f"(NASA-HTTP requests x {story.scale:g})"
        ),
        panels=tuple(panels),
        xlabel="story time (EDT)",
        clock=True,
        moments=((lift_off, f"STS-70 lift-off {minute_of_day_label(LAUNCH_AT)}"),)
        if recorded
        else (),
    )
