"""``--plot``: demand, ready and desired capacity over time, one panel per policy.

matplotlib is an optional extra (``pip install 'stackscaler[plot]'``).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

from stackscaler.errors import StackscalerError
from stackscaler.sim.run import Report

MISSING = (
    "--plot needs matplotlib, which is not installed: "
    "pip install 'stackscaler[plot]' (or pip install matplotlib)"
)


class PlotUnavailable(StackscalerError):
    """``--plot`` was asked for but matplotlib is not installed (the CLI says how to get it)."""


def require_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise PlotUnavailable(MISSING)


def plot(reports: Sequence[Report], out: str) -> None:
    require_matplotlib()
    # imported by name: matplotlib is optional and has no stubs in the type-check environment
    importlib.import_module("matplotlib").use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")

    n = len(reports)
    fig, axes = plt.subplots(n, 1, sharex=True, figsize=(12, 2.6 * n + 0.6), squeeze=False)
    for ax, r in zip(axes[:, 0], reports, strict=True):
        s = r.series
        hours = [m / 60 for m in s.minutes]
        ax.plot(hours, s.demand_units, lw=0.6, color="0.5", label="demand (units at 100%)")
        ax.step(hours, s.desired, where="post", lw=0.8, color="tab:orange", label="desired")
        ax.step(hours, s.ready, where="post", lw=0.8, color="tab:blue", label="ready")
        ax.set_title(
            f"{r.policy}: {r.capacity_unit_hours:,.0f} unit-h ({r.oracle_ratio:.2f}x oracle), "
            f"{r.under_provisioned_minutes:,.0f} min under-provisioned",
            fontsize=9,
        )
        ax.set_ylabel("units")
        ax.legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("hours")
    fig.suptitle(f"{reports[0].tier} on {reports[0].trace}", fontsize=10)
    fig.tight_layout()
    fig.savefig(Path(out))
    plt.close(fig)
