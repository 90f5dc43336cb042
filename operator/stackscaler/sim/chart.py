"""What a ``--plot`` picture shows, as values. Pure.

One :class:`Chart` is a title over panels that share their x axis; each
:class:`Panel` draws demand (in capacity units at 100%), ready and desired
capacity, optionally the scale actions as :class:`Mark` s, and the forecast
and its capacity floor when the default policy forecasts (with the desired capacity
without the forecast beside them when the run has both).
``stackscaler simulate --plot`` makes one panel per policy
(:func:`stackscaler.sim.plot.report_chart`), ``stackscaler demo`` one per
tier (from its recorded timeline); :mod:`stackscaler.sim.plot` draws both
with matplotlib. Unknown values are NaN (a gap in the line).
"""

from __future__ import annotations

from dataclasses import dataclass

DEMAND_LABEL = "demand (units at 100%)"
FORECAST_LABEL = "forecast (units at 100%)"
FLOOR_LABEL = "forecast floor"
BASELINE_LABEL = "desired without the forecast"
SUFFIXES = (".png", ".svg")
"""The files ``--plot`` writes."""


@dataclass(frozen=True)
class Mark:
    """One scale action: where it happened and the capacity it went to."""

    x: float
    y: float
    out: bool
    """True for a scale-out, False for a scale-in."""


@dataclass(frozen=True)
class Panel:
    title: str
    x: tuple[float, ...]
    demand: tuple[float, ...]
    """Capacity units the demand would keep busy at 100% (NaN: unknown)."""
    ready: tuple[float, ...]
    desired: tuple[float, ...]
    marks: tuple[Mark, ...] = ()
    ylabel: str = "units"
    forecast: tuple[float, ...] = ()
    """The forecast of the demand, in the same units (NaN: no forecast then; empty:
    none drawn)."""
    floor: tuple[float, ...] = ()
    """The forecast's capacity floor (NaN: none then; empty: none drawn)."""
    baseline: tuple[float, ...] = ()
    """The desired capacity of the same policy without the forecast, for comparison
    (empty: none drawn)."""

    def __post_init__(self) -> None:
        n = len(self.x)
        if not len(self.demand) == len(self.ready) == len(self.desired) == n:
            raise ValueError("a panel's series must be as long as its x")
        if any(len(v) not in (0, n) for v in (self.forecast, self.floor, self.baseline)):
            raise ValueError(
                "a panel's forecast, floor and baseline must be empty or as long as its x"
            )


@dataclass(frozen=True)
class Chart:
    title: str
    panels: tuple[Panel, ...]
    xlabel: str = "hours"
    clock: bool = False
    """x is hours of the day: the axis reads HH:MM."""
    moments: tuple[tuple[float, str], ...] = ()
    """Vertical lines across every panel: (x, label), e.g. a lift-off."""


def clock_label(hours: float) -> str:
    """Hours of the day as ``HH:MM`` (9.7 -> '09:42')."""
    minutes = round(hours * 60)
    return f"{(minutes // 60) % 24:02d}:{minutes % 60:02d}"
