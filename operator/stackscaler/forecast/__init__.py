"""The pure forecasting core of predictive scaling: fit, forecast, back-test, floor.

``build(history, now, settings)`` fits a seasonal model (daily shape, weekly factors,
trend, recent level) on the metric's history before ``now``, back-tests it on the last
days (no peeking) and returns a :class:`Ready` model or a typed :class:`Refusal`;
``capacity_floor`` turns its forecast into capacity with the policy's own
target-tracking rule, and ``raise_to_floor`` joins it to the reactive decision as
``max(reactive, floor)``.

No I/O, no clock (time is an argument, in epoch seconds), no Kubernetes or AWS imports
(tests/unit/test_layout.py enforces it). Layering: forecast imports model and policy;
model and policy never import forecast.
"""

from stackscaler.forecast.backtest import Outcome, Ready, backtest, build
from stackscaler.forecast.floor import capacity_floor, load_of, raise_to_floor, units_for_load
from stackscaler.forecast.season import Model, Shape, fit
from stackscaler.forecast.types import (
    MAX_HISTORY_SECONDS,
    MIN_FIT_SECONDS,
    Backtest,
    Forecast,
    PredictiveMode,
    PredictiveSettings,
    Refusal,
    RefusalReason,
    Series,
)

__all__ = [
    "MAX_HISTORY_SECONDS",
    "MIN_FIT_SECONDS",
    "Backtest",
    "Forecast",
    "Model",
    "Outcome",
    "PredictiveMode",
    "PredictiveSettings",
    "Ready",
    "Refusal",
    "RefusalReason",
    "Series",
    "Shape",
    "backtest",
    "build",
    "capacity_floor",
    "fit",
    "load_of",
    "raise_to_floor",
    "units_for_load",
]
