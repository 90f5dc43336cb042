"""``--plot``: draw a :class:`~stackscaler.sim.chart.Chart` with matplotlib.

``stackscaler simulate --plot`` draws one panel per policy
(:func:`report_chart`), ``stackscaler demo`` one per tier; both through
:func:`draw`. matplotlib is an optional extra (``pip install 'stackscaler[plot]'``).
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stackscaler.errors import StackscalerError
from stackscaler.sim.chart import (
    BASELINE_LABEL,
    DEMAND_LABEL,
    FLOOR_LABEL,
    FORECAST_LABEL,
    Chart,
    Panel,
    clock_label,
)
from stackscaler.sim.run import Report

MISSING = (
    "--plot needs matplotlib, which is not installed: "
    "pip install 'stackscaler[plot]' (or pip install matplotlib)"
)


class PlotUnavailable(StackscalerError):
    """``--plot`` was asked for but matplotlib is not installed (the CLI says how to get it)."""


class PlotWindowEmpty(StackscalerError):
    """``--plot-window`` lies outside the run."""


def require_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise PlotUnavailable(MISSING)


Window = tuple[float, float]
"""Hours from the trace's start: [from, to)."""


def _sliced(values: Sequence[float], keep: slice) -> tuple[float, ...]:
    return tuple(float(v) for v in values[keep])


def report_panel(
    r: Report,
    window: Window | None = None,
    prefix: str = "",
    baseline: Report | None = None,
) -> Panel:
    """One report's panel (its series must have been recorded), within ``window`` (the
    title then gives the window's own figures, and the whole run's). ``baseline``: the
    same run without the forecast, whose desired capacity is drawn beside."""
    s = r.series
    hours = [m / 60 for m in s.minutes]
    keep = slice(0, len(hours))
    whole = (
        f"{r.capacity_unit_hours:,.0f} unit-h ({r.oracle_ratio:.2f}x oracle), "
        f"{r.under_provisioned_minutes:,.0f} min under-provisioned"
    )
    title = f"{prefix}{r.policy}: {whole}"
    if window is not None:
        lo, hi = window
        first = next((i for i, h in enumerate(hours) if h >= lo), len(hours))
        last = next((i for i, h in enumerate(hours) if h >= hi), len(hours))
        if first >= last:
            raise PlotWindowEmpty(
                f"--plot-window {lo:g}:{hi:g}: the run has {len(hours) * r.step_seconds / 3600:g} "
                "hours"
            )
        keep = slice(first, last)
        unit_h = sum(s.desired[keep]) * r.step_seconds / 3600
        under = sum(d > n + 1e-12 for d, n in zip(s.demand_units[keep], s.ready[keep], strict=True))
        title = (
            f"{prefix}{r.policy}: {unit_h:,.0f} unit-h, "
            f"{under * r.step_seconds / 60:,.0f} min under-provisioned in these hours "
            f"(whole run: {whole})"
        )
    return Panel(
        title=title,
        x=_sliced(hours, keep),
        demand=_sliced(s.demand_units, keep),
        ready=_sliced(s.ready, keep),
        desired=_sliced(s.desired, keep),
        forecast=_sliced(s.forecast_units, keep),
        floor=_sliced(s.floor, keep),
        baseline=() if baseline is None else _sliced(baseline.series.desired, keep),
    )


def _without_forecast(r: Report, reports: Sequence[Report]) -> Report | None:
    """The ``reactive`` report beside a forecasting one (None: none, or not forecasting)."""
    if r.predictive is None:
        return None
    return next((x for x in reports if x.policy == "reactive" and x.tier == r.tier), None)


def report_chart(reports: Sequence[Report], window: Window | None = None) -> Chart:
    """One panel per policy's report (their series must have been recorded); a forecasting
    policy's panel also draws the desired capacity without the forecast when the run has
    it (``reactive``)."""
    panels = tuple(report_panel(r, window, baseline=_without_forecast(r, reports)) for r in reports)
    return Chart(f"{reports[0].tier} on {reports[0].trace}", panels, xlabel=_xlabel(window))


def stack_chart(runs: Sequence[Sequence[Report]], window: Window | None = None) -> Chart:
    """``--stack``: for each tier, one panel per policy (tier by tier)."""
    panels = tuple(
        report_panel(
            per_policy[k],
            window,
            prefix=f"{per_policy[k].tier}, ",
            baseline=_without_forecast(per_policy[k], [p[k] for p in runs]),
        )
        for k in range(len(runs[0]))
        for per_policy in runs
    )
    return Chart(f"stack on {runs[0][0].trace}", panels, xlabel=_xlabel(window))


def _xlabel(window: Window | None) -> str:
    return "hours from the trace's start" if window is not None else "hours"


def _drawn(values: Sequence[float]) -> bool:
    """Whether a series has anything to draw (a forecast refused throughout has not)."""
    return any(not math.isnan(v) for v in values)


def render(chart: Chart) -> Any:
    """The chart as a matplotlib Figure (the caller closes it: ``matplotlib.pyplot.close``)."""
    require_matplotlib()
    # imported by name: matplotlib is optional and has no stubs in the type-check environment
    importlib.import_module("matplotlib").use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    ticker = importlib.import_module("matplotlib.ticker")

    n = len(chart.panels)
    fig, axes = plt.subplots(n, 1, sharex=True, figsize=(12, 2.6 * n + 0.6), squeeze=False)
    for i, (ax, p) in enumerate(zip(axes[:, 0], chart.panels, strict=True)):
        ax.plot(p.x, p.demand, lw=0.6, color="0.5", label=DEMAND_LABEL)
        if _drawn(p.forecast):
            ax.plot(p.x, p.forecast, lw=0.9, color="tab:purple", label=FORECAST_LABEL)
        if _drawn(p.floor):
            ax.step(
                p.x, p.floor, where="post", lw=0.8, ls="--", color="tab:purple", label=FLOOR_LABEL
            )
        if p.baseline:
            ax.step(
                p.x, p.baseline, where="post", lw=0.9, ls=":", color="0.2", label=BASELINE_LABEL
            )
        ax.step(p.x, p.desired, where="post", lw=0.8, color="tab:orange", label="desired")
        ax.step(p.x, p.ready, where="post", lw=0.8, color="tab:blue", label="ready")
        for out, marker, color, label in (
            (True, "^", "tab:green", "scale-out"),
            (False, "v", "tab:red", "scale-in"),
        ):
            marks = [m for m in p.marks if m.out is out]
            if marks:
                ax.scatter(
                    [m.x for m in marks],
                    [m.y for m in marks],
                    marker=marker,
                    s=22,
                    color=color,
                    zorder=3,
                    label=label,
                )
        for x, label in chart.moments:
            ax.axvline(x, ls=":", lw=0.8, color="0.3")
            if i == 0:
                ax.annotate(
                    label,
                    (x, 0.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(3, 4),
                    textcoords="offset points",
                    fontsize=7,
                    color="0.3",
                )
        ax.set_title(p.title, fontsize=9)
        ax.set_ylabel(p.ylabel)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.legend(loc="upper left", fontsize=7)
    axes[-1, 0].set_xlabel(chart.xlabel)
    if chart.clock:
        axes[-1, 0].xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _pos: clock_label(x)))
    fig.suptitle(chart.title, fontsize=10)
    fig.tight_layout()
    return fig


def draw(chart: Chart, out: str | Path) -> None:
    """Write the chart to ``out`` (.png or .svg)."""
    fig = render(chart)
    path = Path(out)
    try:
        if path.suffix.lower() == ".png":
            _save_png(fig, path)
        else:
            fig.savefig(path)
    finally:
        importlib.import_module("matplotlib.pyplot").close(fig)


def _save_png(fig: Any, path: Path) -> None:
    """A PNG of 256 colours: a chart of a few lines loses nothing to the eye, and a noisy
    demand line over six hours takes a third of the bytes of matplotlib's RGBA PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    image = importlib.import_module("PIL.Image")  # Pillow comes with matplotlib
    with image.open(buffer) as rgba:
        rgb = rgba.convert("RGB")
    rgb.quantize(colors=256, method=image.Quantize.FASTOCTREE).save(path, "PNG", optimize=True)


def plot(reports: Sequence[Report], out: str, window: Window | None = None) -> None:
    draw(report_chart(reports, window), out)


def plot_stack(runs: Sequence[Sequence[Report]], out: str, window: Window | None = None) -> None:
    """``--stack``: every tier under every policy (per policy, one report per tier)."""
    draw(stack_chart(runs, window), out)
