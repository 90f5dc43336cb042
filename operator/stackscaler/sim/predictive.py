"""The forecast in the simulator: the default policy with ``PredictiveSettings``.

As the operator will run it: the metric's load history (per minute, as CloudWatch
keeps it) accumulates as the story runs; every ``refresh_seconds`` of story time
(on the clock's multiples: every hour on the hour by default) the forecast is rebuilt
(:func:`stackscaler.forecast.build`) from the datapoints readable at that moment only:
the feed's newest complete period after its delivery delay, never later (no peeking).
At every decision the floor is the capacity the forecast needs over the next lead
(``model.peak(t, t + lead)``); in ``ForecastAndScale`` the decision is raised to it
(:func:`stackscaler.forecast.raise_to_floor`), in ``ForecastOnly`` it is only counted.

The load of a ``Value`` metric is the per-unit value times the units serving (AWS's
total CPU); of an ``AverageValue`` metric, the metric itself.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stackscaler.forecast import (
    PredictiveMode,
    PredictiveSettings,
    Ready,
    Refusal,
    Series,
    build,
    capacity_floor,
    raise_to_floor,
)
from stackscaler.model.spec import ScalingSpec, TargetType
from stackscaler.policy import Decision
from stackscaler.sim.model import FeedSpec, Signals, feed_spec

HISTORY_SAMPLE_SECONDS = 60.0
"""The history is read per minute (CloudWatch's 1-minute datapoints)."""


@dataclass(frozen=True)
class PredictiveSummary:
    """What the forecast did over a run (in the report and its JSON)."""

    mode: str
    metric: str
    lead_seconds: float
    refresh_seconds: float
    refreshes: int
    ready: int
    """Refreshes whose forecast was fit to act on."""
    refused: dict[str, int] = field(default_factory=dict)
    """Refreshes refused, by reason."""
    mean_error: float | None = None
    """Mean back-test error (WAPE) of the refreshes that were ready."""
    raised: int = 0
    """Decisions the floor raised above the reactive policy (ForecastOnly: would have)."""
    last: str = ""
    """The last refresh's message (what the status would say)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "metric": self.metric,
            "lead_seconds": self.lead_seconds,
            "refresh_seconds": self.refresh_seconds,
            "refreshes": self.refreshes,
            "ready": self.ready,
            "refused": dict(sorted(self.refused.items())),
            "mean_backtest_error": None if self.mean_error is None else round(self.mean_error, 4),
            "raised_decisions": self.raised,
            "last": self.last,
        }

    def describe(self) -> str:
        refused = ", ".join(f"{n} {r}" for r, n in sorted(self.refused.items())) or "none"
        err = "" if self.mean_error is None else f"; mean back-test error {self.mean_error:.1%}"
        verb = "raised" if self.mode == PredictiveMode.FORECAST_AND_SCALE else "would have raised"
        return (
            f"forecast ({self.mode}, metric {self.metric}, lead {self.lead_seconds:g} s, "
            f"refit every {self.refresh_seconds:g} s): {self.ready} of {self.refreshes} refits "
            f"ready (refused: {refused}){err}; {verb} {self.raised} decisions"
        )


class SimForecaster:
    """The forecast of one simulated tier: its history, its schedule, its floor."""

    def __init__(
        self,
        settings: PredictiveSettings,
        spec: ScalingSpec,
        *,
        step_seconds: float,
        lead_seconds: float,
        capacity_per_unit: float,
    ) -> None:
        try:
            metric = spec.metric(settings.metric)
        except KeyError:
            raise ValueError(
                f"predictive metric {settings.metric!r} is not one of the tier's metrics "
                f"({', '.join(m.name for m in spec.metrics)})"
            ) from None
        if metric.target is None:
            raise ValueError(f"predictive metric {settings.metric!r} has no target-tracking target")
        self.settings = settings
        self.spec = spec
        self.target = metric.target
        self.feed: FeedSpec = feed_spec(metric, step_seconds)
        self.step_seconds = step_seconds
        self.lead = lead_seconds
        self.per_sample = max(1, round(HISTORY_SAMPLE_SECONDS / step_seconds))
        self.units_per_load = (
            1.0 / 100.0 if metric.target.type is TargetType.VALUE else 1.0 / capacity_per_unit
        )
        """Load -> units at 100% (a per-unit percent summed over units; or a total)."""
        self.samples: list[float] = []
        """Per-minute load, from the start of the story."""
        self._steps_seen = 0
        self._acc = 0.0
        self.start: float | None = None
        self.outcome: Ready | Refusal | None = None
        self.next_refresh = -math.inf
        self.refreshes = 0
        self.ready = 0
        self.refused: Counter[str] = Counter()
        self.errors: list[float] = []
        self.raised = 0
        self.floor: int | None = None
        """The floor at the last decision (None: no forecast to act on)."""
        self.forecast_units = math.nan
        """The forecast for the last decision's moment, in units at 100% (NaN: none)."""

    # --- history ---------------------------------------------------------------------

    def _load(self, signals: Signals, i: int) -> float:
        s = self.feed.signal
        if s == "util":
            return (signals.util_sum[i + 1] - signals.util_sum[i]) * signals.ready[i]
        if s == "backlog":
            return signals.backlog[i]
        if s == "per_ready":
            return signals.per_ready_sum[i + 1] - signals.per_ready_sum[i]
        return signals.demand_sum[i + 1] - signals.demand_sum[i]

    def _catch_up(self, signals: Signals, i: int) -> None:
        """Record the per-minute load of every step the feed can read at step ``i``."""
        _, end = signals.window(self.feed, i)
        end = min(end, len(signals.ready))
        per = self.per_sample
        while self._steps_seen < end:
            self._acc += self._load(signals, self._steps_seen)
            self._steps_seen += 1
            if self._steps_seen % per == 0:
                self.samples.append(self._acc / per)
                self._acc = 0.0

    def _refresh(self, t: float) -> None:
        assert self.start is not None
        keep = math.ceil(self.settings.history_seconds / HISTORY_SAMPLE_SECONDS) + 1
        lo = max(0, len(self.samples) - keep)
        sample_s = self.per_sample * self.step_seconds
        series = Series(self.start + lo * sample_s, sample_s, tuple(self.samples[lo:]))
        out = build(series, t, self.settings)
        self.outcome = out
        self.refreshes += 1
        if isinstance(out, Ready):
            self.ready += 1
            self.errors.append(out.backtest.error)
        else:
            self.refused[str(out.reason)] += 1

    # --- the decision ------------------------------------------------------------------

    def adjust(self, i: int, now: datetime, signals: Signals, decision: Decision) -> Decision:
        """The decision at step ``i`` with the forecast's floor applied (ForecastAndScale)
        or only counted (ForecastOnly)."""
        t = now.timestamp()
        if self.start is None:
            self.start = t - i * self.step_seconds
        self._catch_up(signals, i)
        if t >= self.next_refresh:
            self._refresh(t)
            r = self.settings.refresh_seconds
            self.next_refresh = (math.floor(t / r) + 1) * r
        out = self.outcome
        if not isinstance(out, Ready):
            self.floor = None
            self.forecast_units = math.nan
            return decision
        model = out.model
        self.forecast_units = model.value_at(t) * self.units_per_load
        floor = capacity_floor(
            model.peak(t, t + self.lead),
            self.target,
            decision.min_capacity,
            decision.max_capacity,
            current=decision.current,
            tolerance=self.spec.band,
        )
        self.floor = floor
        if floor <= decision.desired:
            return decision
        self.raised += 1
        if self.settings.mode is not PredictiveMode.FORECAST_AND_SCALE:
            return decision
        why = f"{self.settings.metric} forecast over the next {self.lead:g} s; {out.describe()}"
        return raise_to_floor(decision, floor, self.spec, now, why)

    def summary(self) -> PredictiveSummary:
        last = ""
        if isinstance(self.outcome, Refusal):
            last = self.outcome.message
        elif isinstance(self.outcome, Ready):
            last = self.outcome.describe()
        return PredictiveSummary(
            mode=str(self.settings.mode),
            metric=self.settings.metric,
            lead_seconds=self.lead,
            refresh_seconds=float(self.settings.refresh_seconds),
            refreshes=self.refreshes,
            ready=self.ready,
            refused=dict(self.refused),
            mean_error=sum(self.errors) / len(self.errors) if self.errors else None,
            raised=self.raised,
            last=last,
        )
