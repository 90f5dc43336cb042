"""The WebTier the fault scenarios scale: an Auto Scaling group on its CloudWatch CPU."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import API_VERSION
from tests.integration.conftest import REGION


def cpu_web_tier(
    ns: str, name: str, group: str, *, max_capacity: int = 40, **target: Any
) -> dict[str, Any]:
    """One scale-out per 600 s cooldown, on the group's CPU at a 50% target, ticking every 5 s.

    ``target`` adds target fields (``roleArn`` is used for the metric too).
    ``warmupSeconds`` is 0: moto's instances serve at once, so warm-up is not
    what these scenarios wait for.
    """
    role = {"roleArn": target["roleArn"]} if "roleArn" in target else {}
    return {
        "apiVersion": API_VERSION,
        "kind": "WebTier",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "target": {"kind": "AutoScalingGroup", "name": group, "region": REGION, **target},
            "minCapacity": 1,
            "maxCapacity": max_capacity,
            "metrics": [
                {
                    "name": "cpu",
                    "target": {"value": 50},
                    "cloudWatch": {
                        "namespace": "AWS/EC2",
                        "metricName": "CPUUtilization",
                        "dimensions": [{"name": "AutoScalingGroupName", "value": group}],
                        **role,
                    },
                }
            ],
            "behavior": {
                "scaleOut": {"cooldownSeconds": 600, "maxStep": {"units": 100}},
                "scaleIn": {"cooldownSeconds": 600, "stabilizationWindowSeconds": 600},
            },
            "pollIntervalSeconds": 5,
            "warmupSeconds": 0,
        },
    }
