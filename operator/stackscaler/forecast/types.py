"""Values the forecasting core takes and returns. Pure: no I/O, no clock.

Times are plain epoch seconds (floats). A history is a regularly sampled
:class:`Series`; a missing sample is ``None`` (or NaN), never zero.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from stackscaler.errors import FieldError, InvalidSpec
from stackscaler.model.predictive import (
    HISTORY_DAYS_MAX,
    HISTORY_DAYS_MIN,
    LEAD_SECONDS_MAX,
    MAX_ERROR_DEFAULT,
    MAX_ERROR_MAX,
    REFRESH_SECONDS_DEFAULT,
    REFRESH_SECONDS_MAX,
    REFRESH_SECONDS_MIN,
    PredictiveMode,
    PredictiveSpec,
)

DAY = 86400
WEEK = 7 * DAY
MAX_HISTORY_SECONDS = HISTORY_DAYS_MAX * DAY
"""AWS predictive scaling reads up to 14 days of the metric's history; so do we."""
MIN_FIT_SECONDS = DAY
"""At least 24 hours of history to fit the daily shape (AWS: 24 hours before the first
forecast)."""


__all__ = ["PredictiveMode"]  # the model's (spec.predictive.mode), re-exported


@dataclass(frozen=True)
class PredictiveSettings:
    """How one resource forecasts its metric: what ``spec.predictive`` parses into
    (:meth:`from_spec`; the bounds and defaults are the CRD's, model/predictive.py).

    ``metric`` names one of the resource's target-tracking metrics; its history is
    the metric's *load*: the total for an ``AverageValue`` target (requests per minute,
    backlog), the per-unit value times the units serving for a ``Value`` target (AWS's
    total CPU: average CPU x instances in service), so that it does not depend on the
    capacity that served it.
    """

    mode: PredictiveMode
    metric: str
    history_seconds: int = MAX_HISTORY_SECONDS
    """How much history the forecast is fitted on (1-14 days)."""
    lead_seconds: int | None = None
    """How far ahead capacity is provisioned; None: the target's warm-up
    (``model.spec.warmup``), the time a new unit needs to count."""
    refresh_seconds: int = REFRESH_SECONDS_DEFAULT
    """How often the forecast is refitted (the operator's schedule, not every tick)."""
    backtest_days: int = 2
    """How many of the last days of the history the back-test replays."""
    max_error: float = MAX_ERROR_DEFAULT
    """The back-test's error (WAPE of 5-minute means) above which the forecast refuses."""
    min_skill: float = 0.1
    """The least improvement, as a fraction of its error, the forecast must show over
    holding the last hour's level (below it, the history has no shape worth forecasting)."""
    quantile: float = 0.5
    """The quantile of the back-test's actual/forecast ratios that makes the forecast's
    ``upper`` (what the floor provisions for). The median corrects the forecast's bias;
    the target's own headroom (a 50% CPU target is 2x) is what absorbs its error, as
    with AWS predictive scaling (the load forecast at the target). A tight target
    wants a higher quantile."""

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise InvalidSpec(problems)

    @classmethod
    def from_spec(cls, spec: PredictiveSpec) -> PredictiveSettings:
        """The settings of a parsed ``spec.predictive`` (the rest at their defaults)."""
        return cls(
            mode=spec.mode,
            metric=spec.metric,
            history_seconds=spec.history_seconds,
            lead_seconds=spec.lead_seconds,
            refresh_seconds=spec.refresh_seconds,
            max_error=spec.max_error,
        )

    def problems(self) -> list[FieldError]:
        """Every problem with these settings, located as ``predictive.<field>``."""
        out: list[FieldError] = []

        def bad(name: str, message: str) -> None:
            out.append(FieldError(f"predictive.{name}", message))

        if not isinstance(self.mode, PredictiveMode):
            bad("mode", f"must be one of {', '.join(m.value for m in PredictiveMode)}")
        if not self.metric:
            bad("metric", "must name one of the resource's target-tracking metrics")
        if not HISTORY_DAYS_MIN * DAY <= self.history_seconds <= MAX_HISTORY_SECONDS:
            bad(
                "historySeconds",
                f"must be within {HISTORY_DAYS_MIN * DAY}-{MAX_HISTORY_SECONDS} "
                f"({HISTORY_DAYS_MIN}-{HISTORY_DAYS_MAX} days: one to fit, one to back-test)",
            )
        if self.lead_seconds is not None and not 0 <= self.lead_seconds <= LEAD_SECONDS_MAX:
            bad("leadSeconds", f"must be within 0-{LEAD_SECONDS_MAX}")
        if not REFRESH_SECONDS_MIN <= self.refresh_seconds <= REFRESH_SECONDS_MAX:
            bad("refreshSeconds", f"must be within {REFRESH_SECONDS_MIN}-{REFRESH_SECONDS_MAX}")
        if not 1 <= self.backtest_days <= 7:
            bad("backtestDays", "must be within 1-7")
        if not (math.isfinite(self.max_error) and 0 < self.max_error <= MAX_ERROR_MAX):
            bad("maxError", f"must be within (0, {MAX_ERROR_MAX:g}]")
        if not (math.isfinite(self.min_skill) and -10 <= self.min_skill < 1):
            bad("minSkill", "must be within [-10, 1)")
        if not (math.isfinite(self.quantile) and 0.5 <= self.quantile < 1):
            bad("quantile", "must be within [0.5, 1)")
        return out


@dataclass(frozen=True)
class Series:
    """A regularly sampled history: ``values[i]`` is the sample of the period
    ``[start + i x step, start + (i + 1) x step)`` (CloudWatch's timestamps are the
    period's start). ``None`` or NaN is a missing sample (a gap), never zero."""

    start: float
    step: float
    values: tuple[float | None, ...]

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and math.isfinite(self.step)):
            raise ValueError("a series needs a finite start and step")
        if not 1 <= self.step <= DAY:
            raise ValueError(f"a series' step must be within 1-{DAY} s, got {self.step:g}")

    @property
    def end(self) -> float:
        """The end of the last sample's period."""
        return self.start + self.step * len(self.values)


@dataclass(frozen=True)
class Forecast:
    """The load expected at ``time`` (or the highest over a window ending there):
    ``value`` the point forecast, ``upper`` the upper quantile the caller provisions for
    (``value`` times the back-test's quantile of actual/forecast)."""

    time: float
    value: float
    upper: float


class RefusalReason(enum.StrEnum):
    """Why the forecast does nothing (what the status says)."""

    TOO_LITTLE_HISTORY = "TooLittleHistory"
    ERROR_TOO_HIGH = "ErrorTooHigh"
    NO_SKILL = "NoSkill"
    """The forecast does no better than holding the last hour's level."""


@dataclass(frozen=True)
class Backtest:
    """The forecast's own error on the last days of its history, each day forecast by a
    model fitted only on the data before it (no peeking)."""

    error: float
    """WAPE of 5-minute means: sum |actual - forecast| / sum actual (0.12 = 12%)."""
    naive_error: float
    """The same for holding the last hour's mean level (persistence), for comparison."""
    days: int
    """Back-test days replayed."""
    upper_ratio: float
    """The quantile of actual/forecast over every sample (>= 1)."""
    samples: int

    @property
    def skill(self) -> float:
        """1 - error / naive_error: how much of persistence's error the forecast removes."""
        if self.naive_error <= 0:
            return 0.0 if self.error <= 0 else -math.inf
        return 1.0 - self.error / self.naive_error

    def describe(self) -> str:
        return (
            f"back-test error {100 * self.error:.1f}% over the last {self.days} day(s) "
            f"(holding the last hour's level: {100 * self.naive_error:.1f}%)"
        )


@dataclass(frozen=True)
class Refusal:
    """The forecast declines to act, with a typed reason and a human-readable message."""

    reason: RefusalReason
    message: str
    backtest: Backtest | None = None
