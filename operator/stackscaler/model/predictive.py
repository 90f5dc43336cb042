"""``spec.predictive``: predictive scaling's settings on every kind (issue 14).

The single source of truth for the field: its schema (bounds, defaults, the CEL rule
that ties ``predictive.metric`` to one of the resource's target-tracking metrics), the
typed value :class:`PredictiveSpec` the model parses it into, and the checks the API
server cannot make. The forecasting core (:mod:`stackscaler.forecast`) takes its
``PredictiveSettings`` from a ``PredictiveSpec`` and reads its bounds from here.

Pure: no I/O. Imports only the schema builders (model/crds.py imports this module).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stackscaler.errors import FieldError
from stackscaler.model.schema import JSON, Node, Rule, integer, number, obj, rule, string

DAY = 86400
HISTORY_DAYS_MIN = 2
"""One day to fit the daily shape (AWS: 24 hours before the first forecast), one to
back-test it."""
HISTORY_DAYS_MAX = 14
"""AWS predictive scaling reads up to 14 days of history; so do we."""
LEAD_SECONDS_MAX = 3600
"""The longest lead (AWS's SchedulingBufferTime and the longest warm-up are 3600 s)."""
REFRESH_SECONDS_MIN = 300
"""The history's resolution (5-minute periods): a refresh more often reads nothing new."""
REFRESH_SECONDS_MAX = DAY
REFRESH_SECONDS_DEFAULT = 3600
MAX_ERROR_DEFAULT = 0.25
"""The back-test error (WAPE of 5-minute means) above which the forecast refuses."""
MAX_ERROR_MAX = 10.0


class PredictiveMode(enum.StrEnum):
    """What the operator does with a forecast (AWS predictive scaling's two modes)."""

    FORECAST_ONLY = "ForecastOnly"
    """Compute the forecast and report what it would have done; never act on it."""
    FORECAST_AND_SCALE = "ForecastAndScale"
    """Raise capacity to the forecast's floor (never lower it)."""


@dataclass(frozen=True)
class PredictiveSpec:
    """``spec.predictive`` parsed: how the resource forecasts one of its metrics."""

    mode: PredictiveMode
    metric: str
    """One of the resource's target-tracking metrics (WorkerPool: also ``backlog``)."""
    history_days: int = HISTORY_DAYS_MAX
    lead_seconds: int | None = None
    """None: the target's warm-up (:func:`stackscaler.model.spec.warmup`)."""
    refresh_seconds: int = REFRESH_SECONDS_DEFAULT
    max_error: float = MAX_ERROR_DEFAULT

    @property
    def history_seconds(self) -> int:
        return self.history_days * DAY


def predictive_schema(name_pattern: str) -> JSON:
    """The OpenAPI schema of ``spec.predictive`` (``name_pattern``: the metric names')."""
    return obj(
        "Predictive scaling: forecast one target-tracking metric's load from its own history "
        "(daily and weekly shape, trend), refreshed on a schedule, and keep the capacity the "
        "forecast needs a lead ahead as a floor under the reactive decision (never above "
        "maxCapacity, never scaling in). The forecast refuses, and says why in "
        "status.forecast, with too little history or when its back-test error on the last "
        "days is too high.",
        {
            "mode": string(
                "ForecastOnly: compute the forecast and write it, with what it would have done, "
                "into status.forecast; never act on it. ForecastAndScale: also raise the "
                "capacity to the forecast's floor.",
                enum=[m.value for m in PredictiveMode],
            ),
            "metric": string(
                "The metric to forecast: the name of one of this resource's metrics that has a "
                "target (target tracking); on a WorkerPool also 'backlog', the queue's.",
                pattern=name_pattern,
                max_length=63,
            ),
            "historyDays": integer(
                "Days of the metric's history the forecast is fitted on (the forecast needs "
                "2: one to fit, one to back-test).",
                minimum=HISTORY_DAYS_MIN,
                maximum=HISTORY_DAYS_MAX,
                default=HISTORY_DAYS_MAX,
            ),
            "leadSeconds": integer(
                "How far ahead the capacity is provisioned. Default: the target's warm-up "
                "(spec.warmupSeconds or the target kind's default).",
                minimum=0,
                maximum=LEAD_SECONDS_MAX,
            ),
            "refreshSeconds": integer(
                "How often the history is read and the forecast refitted, on the clock's "
                "multiples (3600: every hour on the hour); a multiple of 300.",
                minimum=REFRESH_SECONDS_MIN,
                maximum=REFRESH_SECONDS_MAX,
                default=REFRESH_SECONDS_DEFAULT,
            ),
            "maxError": number(
                "The forecast refuses when its back-test error (WAPE of 5-minute means over "
                "the last days) is above this (0.25 = 25%).",
                minimum=0,
                exclusive_minimum=True,
                maximum=MAX_ERROR_MAX,
                default=MAX_ERROR_DEFAULT,
            ),
        },
        required=["mode", "metric"],
        rules=[
            rule(
                f"self.refreshSeconds % {REFRESH_SECONDS_MIN} == 0",
                f"refreshSeconds must be a multiple of {REFRESH_SECONDS_MIN} (the history's "
                "5-minute periods)",
                lambda n: n["refreshSeconds"] % REFRESH_SECONDS_MIN == 0,
                field_path=".refreshSeconds",
            )
        ],
    )


def forecast_status_schema() -> JSON:
    """``status.forecast``: what the forecast says and, in ForecastOnly, would have done."""
    return obj(
        "The forecast of spec.predictive, as of the last decision written: its state, why, "
        "and the floor it sets (ForecastAndScale) or would set (ForecastOnly).",
        {
            "mode": string("ForecastOnly or ForecastAndScale.", max_length=32),
            "metric": string("The metric forecast.", max_length=63),
            "state": string(
                "Pending (reading the history), Ready (a forecast to act on) or Refused.",
                max_length=16,
            ),
            "reason": string(
                "Ready, ReadingHistory, TooLittleHistory, ErrorTooHigh, NoSkill or "
                "HistoryUnavailable.",
                max_length=64,
            ),
            "message": string(
                "The back-test's figures, or why the forecast refuses.", max_length=1024
            ),
            "leadSeconds": integer("How far ahead the floor provisions.", fmt="int64"),
            "refreshTime": string("When the forecast was last refitted.", fmt="date-time"),
            "nextRefreshTime": string("When it is refitted next.", fmt="date-time"),
            "historyHours": number("Hours of history held (5-minute periods with a value)."),
            "backtestError": number("The back-test's error (WAPE of 5-minute means; 0.12 = 12%)."),
            "load": number(
                "The forecast's load (its upper quantile) at its highest over the next lead."
            ),
            "floor": integer(
                "The capacity that load needs, within [minCapacity, maxCapacity].", fmt="int64"
            ),
            "wouldRaiseTo": integer(
                "ForecastOnly: the capacity ForecastAndScale would have decided, when above "
                "the reactive decision.",
                fmt="int64",
            ),
        },
    )


def _tracked(n: Node) -> list[str]:
    return [m["name"] for m in n.get("metrics", ()) if "target" in m and "name" in m]


_IMPLICIT = {"backlog": "the queue's", "consumed": "the table's consumed capacity"}
"""What the implicit metric a predictive.metric may name measures, by name."""


def predictive_metric_rule(extra: str | None = None) -> Rule:
    """The spec-level rule: ``predictive.metric`` names a metric with a target.

    ``extra``: an implicit metric that always qualifies (WorkerPool's ``backlog``).
    """
    tracked = (
        "(has(self.metrics) && self.metrics.exists(m, m.name == self.predictive.metric "
        "&& has(m.target)))"
    )
    also = f"self.predictive.metric == '{extra}' || " if extra else ""
    message = (
        "predictive.metric must name one of this resource's metrics that has a target "
        "(target tracking)"
        + (f", or '{extra}' ({_IMPLICIT.get(extra, 'implicit')})" if extra else "")
    )

    def check(n: Node) -> bool:
        p = n.get("predictive")
        return p is None or p["metric"] == extra or p["metric"] in _tracked(n)

    def explain(n: Node) -> str:
        names = _tracked(n) + ([extra] if extra else [])
        choice = ", ".join(names) if names else "none: add a metric with a target first"
        return (
            f"predictive.metric {n['predictive']['metric']!r} is not a target-tracking metric "
            f"of this resource; use one of: {choice}"
        )

    return rule(
        f"!has(self.predictive) || {also}{tracked}",
        message,
        check,
        field_path=".predictive.metric",
        explain=explain,
    )


def parse_predictive(d: Mapping[str, Any] | None) -> PredictiveSpec | None:
    """The typed value of a schema-validated, defaulted ``spec.predictive``."""
    if d is None:
        return None
    return PredictiveSpec(
        mode=PredictiveMode(d["mode"]),
        metric=d["metric"],
        history_days=d["historyDays"],
        lead_seconds=d.get("leadSeconds"),
        refresh_seconds=d["refreshSeconds"],
        max_error=float(d["maxError"]),
    )


def predictive_errors(spec: Mapping[str, Any]) -> list[FieldError]:
    """What the API server cannot check: a forecast metric whose history cannot be read.

    A CloudWatch Metrics Insights query (``SELECT ...``) reaches back 3 hours only (the
    forecast needs days), and a tier source has no history at all. Robust to documents
    that failed schema validation.
    """
    p = spec.get("predictive")
    metrics = spec.get("metrics")
    if not isinstance(p, dict) or not isinstance(metrics, list):
        return []
    name = p.get("metric")
    for m in metrics:
        if not isinstance(m, dict) or m.get("name") != name:
            continue
        if isinstance(m.get("tier"), dict):
            return [
                FieldError(
                    "spec.predictive.metric",
                    f"metric {name!r} reads another resource (a tier source), whose values "
                    "have no history the forecast can read: forecast a CloudWatch or "
                    "Prometheus metric",
                )
            ]
        cw = m.get("cloudWatch")
        if not isinstance(cw, dict):
            return []
        expression = cw.get("expression")
        if isinstance(expression, str) and expression.lstrip().upper().startswith("SELECT"):
            return [
                FieldError(
                    "spec.predictive.metric",
                    f"metric {name!r} is a Metrics Insights query (SELECT), which CloudWatch "
                    "answers for the last 3 hours only; the forecast needs days of history: "
                    "forecast a metric with namespace and metricName, or a metric-math "
                    "expression",
                )
            ]
        return []
    return []
