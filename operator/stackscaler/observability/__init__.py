"""Observability: Prometheus metrics, health/readiness/metrics endpoints, logging."""

from stackscaler.observability.logs import configure_logging
from stackscaler.observability.metrics import OperatorMetrics
from stackscaler.observability.server import HealthServer

__all__ = ["HealthServer", "OperatorMetrics", "configure_logging"]
