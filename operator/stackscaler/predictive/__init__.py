"""Predictive scaling in the operator: history reads, refreshes, the floor at each tick.

The pure core (fit, forecast, back-test, floor) is :mod:`stackscaler.forecast`; this
package is its I/O edge: it reads the forecast metric's history from CloudWatch
(batched GetMetricData) or Prometheus (range queries), keeps it in memory, refits on the
clock off the event loop, and joins the floor to the reactive decision
(:func:`~stackscaler.predictive.service.join`). docs/forecast.md, "In the operator".
"""

from stackscaler.predictive.service import Forecasts, Joined, Outlook, State, join, lead_seconds

__all__ = ["Forecasts", "Joined", "Outlook", "State", "join", "lead_seconds"]
