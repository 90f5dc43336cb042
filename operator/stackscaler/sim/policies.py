"""The policies the simulator compares, all driving the same capacity model.

- ``default``: :func:`stackscaler.policy.decide` with the tier's own spec,
  every ``pollIntervalSeconds``, exactly as the operator runs it, told the
  units starting (launched, not yet serving) as the actuators report them;
  with predictive settings, raised to the forecast's floor
  (:mod:`stackscaler.sim.predictive`).
- ``reactive``: ``default`` without the forecast (only with predictive settings:
  the comparison "with and without it" in one run).
- ``hpa``: the Kubernetes HorizontalPodAutoscaler's own algorithm
  (:mod:`stackscaler.sim.hpa`): unready pods set aside, 10% tolerance,
  300 s scale-down stabilization, the default scale-up and scale-down
  policies, a pass every 15 s.
- ``target-tracking``: AWS target tracking for an Auto Scaling group
  (:mod:`stackscaler.sim.target_tracking`): 3 / 15 one-minute datapoint
  alarms, instances in warm-up counted as capacity but not in the metric,
  no scale-in while instances warm up.
- ``static-peak``: a constant capacity, the oracle's peak.
- ``oracle``: perfect foresight of the same target: at every step the
  smallest capacity keeping utilization <= the tier's target, ordered a
  warm-up ahead (the capacity launched at t is the highest need within
  [t, t + warm-up]). Its capacity-unit-hours are the lower bound.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from stackscaler.model.spec import ScalingSpec
from stackscaler.policy import Decision, History, MetricObservation, Observations, decide
from stackscaler.sim.model import FeedSpec, Pool, Signals
from stackscaler.sim.predictive import SimForecaster

POLICIES = ("default", "hpa", "target-tracking", "static-peak", "oracle")
PREDICTIVE_POLICIES = ("reactive",)
"""Policies that exist only with predictive settings."""


class Controller(Protocol):
    name: str
    interval_steps: int
    """Decide every this many steps."""

    def desired(self, i: int, now: datetime, pool: Pool, signals: Signals) -> int:
        """The capacity wanted at step ``i``; ``pool`` is read-only (capacity, ready,
        starting)."""
        ...


class MetricRead(Protocol):
    """A metric that is not the tier's own (a tier source): read at decision time."""

    def observe(self, now: datetime) -> MetricObservation: ...


class DecideController:
    """Runs ``policy.decide`` on the simulated metric feeds.

    The observations carry the capacity in flight as the operator's actuators
    report it: ``starting`` is the units launched less than the operator's
    warm-up ago (``starting_seconds``: the tier's ``warmupSeconds``; None: the
    world's own warm-up, the units not serving yet). Nothing is ever
    ``leaving``: a scale-in removes units at once.

    ``reads``: the metrics that are not the tier's own (tier sources, ``--stack``),
    by name, each read at decision time. The controller keeps what the operator
    would have recorded of its last decision (``last``, ``last_metrics``,
    ``last_time``): what another tier's tier source reads.
    """

    def __init__(
        self,
        name: str,
        spec: ScalingSpec,
        feeds: Sequence[FeedSpec],
        step_seconds: float,
        interval_seconds: float,
        *,
        starting_seconds: float | None = None,
        forecaster: SimForecaster | None = None,
        reads: Mapping[str, MetricRead] | None = None,
    ) -> None:
        self.name = name
        self.reads = dict(reads or {})
        self.forecaster = forecaster
        self.spec = spec
        self.feeds = tuple(feeds)
        self.step_seconds = step_seconds
        self.interval_steps = max(1, round(interval_seconds / step_seconds))
        self.starting_seconds = starting_seconds
        self.launches: deque[list[float]] = deque()  # [launched at, units], oldest first
        self.history = History()
        self.last_reason = ""
        self.last: Decision | None = None
        """The last decision (None before the first)."""
        self.last_metrics: dict[str, MetricObservation] = {}
        """The metrics the last decision read, with their samples' times."""
        self.last_time: datetime | None = None

    def _starting(self, t: float, pool: Pool) -> int:
        if self.starting_seconds is None:
            return pool.starting
        while self.launches and self.launches[0][0] <= t - self.starting_seconds:
            self.launches.popleft()  # no longer starting (and older than any other)
        return min(pool.capacity, int(sum(n for _, n in self.launches)))

    def _track(self, t: float, before: int, after: int) -> None:
        if self.starting_seconds is None or after == before:
            return
        if after > before:
            self.launches.append([t, float(after - before)])
            return
        remove = before - after  # newest first, as the pool removes them
        while remove and self.launches:
            last = self.launches[-1]
            take = min(int(last[1]), remove)
            last[1] -= take
            remove -= take
            if not last[1]:
                self.launches.pop()

    def desired(self, i: int, now: datetime, pool: Pool, signals: Signals) -> int:
        metrics: dict[str, MetricObservation] = {}
        t0 = now.timestamp()
        for f in self.feeds:
            value, end = signals.read(f, i)
            age = (i - end) * self.step_seconds
            metrics[f.name] = MetricObservation(
                value, datetime.fromtimestamp(t0 - age, now.tzinfo) if age else None
            )
        for name, read in self.reads.items():
            metrics[name] = read.observe(now)
        starting = self._starting(t0, pool)
        obs = Observations(pool.capacity, metrics, starting=starting, leaving=0)
        d = decide(self.spec, obs, self.history, now)
        if self.forecaster is not None:
            d = self.forecaster.adjust(i, now, signals, d)
        self.history = d.history
        self.last_reason = d.headline
        self.last, self.last_metrics, self.last_time = d, metrics, now
        self._track(t0, pool.capacity, d.desired)
        return d.desired


class PlanController:
    """Follows a precomputed capacity plan (static-peak, oracle)."""

    def __init__(self, name: str, plan: Sequence[int]) -> None:
        self.name = name
        self.plan = plan
        self.interval_steps = 1
        self.last_reason = name

    def desired(self, i: int, now: datetime, pool: Pool, signals: Signals) -> int:
        return self.plan[i]


def oracle_plan(need: Sequence[int], warmup_steps: int) -> list[int]:
    """Capacity launched at each step: the highest need within [i, i + warm-up] (sliding max)."""
    n = len(need)
    out = [0] * n
    window: deque[int] = deque()  # indexes with decreasing need
    j = 0
    for i in range(n):
        while j < n and j <= i + warmup_steps:
            while window and need[window[-1]] <= need[j]:
                window.pop()
            window.append(j)
            j += 1
        while window[0] < i:
            window.popleft()
        out[i] = need[window[0]]
    return out
