"""Building specs and observations for policy tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from stackscaler.model.spec import ScalingSpec, parse_resource
from stackscaler.policy import MetricObservation, Observations

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # a Thursday
UNLIMITED = {"units": 100_000}
NO_LIMITS = {"cooldownSeconds": 0, "stabilizationWindowSeconds": 0, "maxStep": UNLIMITED}


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def metric(
    name: str = "cpu", target: float = 50, type_: str = "Value", **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "prometheus": {"serverAddress": "http://prometheus:9090", "query": f"{name}_metric"},
        "target": {"type": type_, "value": target},
        **extra,
    }


def scaling(
    metrics: list[dict[str, Any]] | None = None,
    *,
    min_capacity: int = 1,
    max_capacity: int = 100,
    scale_out: dict[str, Any] | None = None,
    scale_in: dict[str, Any] | None = None,
    **extra: Any,
) -> ScalingSpec:
    """A WebTier's scaling block; behaviors default to no cooldown, window or limit."""
    extra.setdefault("tolerance", 0.1)  # the HPA's 10% both ways (the default: 0.2 and 0.1)
    spec: dict[str, Any] = {
        "target": {"kind": "Deployment", "name": "web"},
        "minCapacity": min_capacity,
        "maxCapacity": max_capacity,
        "metrics": [metric()] if metrics is None else metrics,
        "behavior": {
            "scaleOut": scale_out or dict(NO_LIMITS),
            "scaleIn": scale_in or dict(NO_LIMITS),
        },
        **extra,
    }
    if not spec["metrics"]:
        del spec["metrics"]
    doc = {
        "apiVersion": "stackscaler.dev/v1alpha1",
        "kind": "WebTier",
        "metadata": {"name": "test", "namespace": "default"},
        "spec": spec,
    }
    return parse_resource(doc).scaling


def obs(current: int, **values: float | None) -> Observations:
    """Observations; a value of None is unknown. Metric names use '_' for '-'."""
    return Observations(
        current,
        {
            k.replace("_", "-"): MetricObservation.unknown("down")
            if v is None
            else MetricObservation(v)
            for k, v in values.items()
        },
    )
