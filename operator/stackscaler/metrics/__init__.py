"""Metric sources (I/O): CloudWatch, SQS, Prometheus, behind one interface."""

from stackscaler.metrics.base import MetricQuery, MetricSource, Sample, check_fresh, observe

__all__ = ["MetricQuery", "MetricSource", "Sample", "check_fresh", "observe"]
