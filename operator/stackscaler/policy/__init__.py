"""The pure scaling-policy core: ``decide(spec, observations, history, now)``.

No I/O, no clock, no Kubernetes or AWS imports (a test enforces it).
"""

from stackscaler.policy.budget import DecreaseBudget
from stackscaler.policy.decide import decide
from stackscaler.policy.history import History
from stackscaler.policy.outlook import ScaleInOutlook, scale_in_outlook
from stackscaler.policy.types import (
    Decision,
    Direction,
    Limit,
    MetricObservation,
    MetricResult,
    MetricState,
    Observations,
)

__all__ = [
    "Decision",
    "DecreaseBudget",
    "Direction",
    "History",
    "Limit",
    "MetricObservation",
    "MetricResult",
    "MetricState",
    "Observations",
    "ScaleInOutlook",
    "decide",
    "scale_in_outlook",
]
