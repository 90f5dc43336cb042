"""Invariants of the policy core, checked with hypothesis.

Histories are produced by running random tick sequences through ``decide``
itself, so the properties hold for states the policy can actually reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stackscaler.model.spec import ScalingSpec
from stackscaler.policy import Decision, History, MetricObservation, Observations, decide
from tests.unit.policy_helpers import at, metric, scaling

SETTINGS = settings(max_examples=150, deadline=None)

values = st.one_of(st.none(), st.floats(min_value=0, max_value=500, allow_nan=False))


@st.composite
def specs(draw: st.DrawFn) -> ScalingSpec:
    lo = draw(st.integers(0, 10))
    hi = draw(st.integers(max(lo, 1), 40))

    def direction() -> dict[str, Any]:
        step: dict[str, Any] = {"periodSeconds": draw(st.sampled_from([15, 60, 300]))}
        step["units"] = draw(st.integers(1, 10))
        if draw(st.booleans()):
            step["percent"] = draw(st.integers(1, 200))
        return {
            "cooldownSeconds": draw(st.sampled_from([0, 30, 120, 600])),
            "stabilizationWindowSeconds": draw(st.sampled_from([0, 60, 300])),
            "maxStep": step,
        }

    metrics = [
        metric("cpu", draw(st.sampled_from([40, 50, 70])), activationThreshold=5),
        metric("rpm", draw(st.sampled_from([100, 1000])), "AverageValue"),
    ]
    extra: dict[str, Any] = {}
    if draw(st.booleans()):
        fb = draw(st.integers(lo, hi))
        extra["onMetricsUnavailable"] = {
            "failureThreshold": draw(st.integers(1, 4)),
            "action": "Fallback",
            "fallbackCapacity": fb,
        }
    return scaling(
        metrics[: draw(st.integers(1, 2))],
        min_capacity=lo,
        max_capacity=hi,
        scale_out=direction(),
        scale_in=direction(),
        tolerance=draw(st.sampled_from([0.0, 0.1])),
        **extra,
    )


@dataclass(frozen=True)
class Run:
    spec: ScalingSpec
    decisions: list[tuple[float, Decision]]
    """(time offset in seconds, decision) for every tick."""


@st.composite
def runs(draw: st.DrawFn) -> Run:
    spec = draw(specs())
    history = History()
    current = draw(st.integers(spec.min_capacity, spec.max_capacity))
    t = 0.0
    out = []
    for _ in range(draw(st.integers(1, 12))):
        t += draw(st.sampled_from([5, 15, 30, 60, 200]))
        metrics = {m.name: _obs(draw(values)) for m in spec.metrics}
        d = decide(spec, Observations(current, metrics), history, at(t))
        out.append((t, d))
        history = d.history
        # Usually the actuator applies the decision; sometimes someone else changes the
        # capacity out of band (or an apply fails), anywhere from 0 to above the max.
        current = (
            d.desired if draw(st.integers(0, 4)) else draw(st.integers(0, spec.max_capacity + 5))
        )
    return Run(spec, out)


def _obs(v: float | None) -> MetricObservation:
    return MetricObservation.unknown("down") if v is None else MetricObservation(v)


@SETTINGS
@given(runs())
def test_never_outside_bounds(run: Run) -> None:
    for _, d in run.decisions:
        assert d.min_capacity <= d.desired <= d.max_capacity


@SETTINGS
@given(runs())
def test_no_scale_in_inside_cooldown(run: Run) -> None:
    cooldown = run.spec.behavior.scale_in.cooldown_seconds
    last_action: float | None = None
    for t, d in run.decisions:
        inside = last_action is not None and t - last_action < cooldown
        if inside and d.current <= d.max_capacity:
            assert d.desired >= d.current, f"scale-in {d.current}->{d.desired} inside cooldown"
        if d.desired != d.current:
            last_action = t


@SETTINGS
@given(runs())
def test_scale_in_respects_stabilization_window(run: Run) -> None:
    window = run.spec.behavior.scale_in.stabilization_window_seconds
    seen: list[tuple[float, int]] = []
    for t, d in run.decisions:
        seen.append((t, min(max(d.recommendation, d.min_capacity), d.max_capacity)))
        if d.desired < d.current and d.current <= d.max_capacity:
            peak = max(v for s, v in seen if s >= t - window)
            assert d.desired >= min(d.current, peak)


@SETTINGS
@given(runs())
def test_unknown_metrics_never_lower_capacity(run: Run) -> None:
    for _, d in run.decisions:
        if not d.metrics_available and d.current <= d.max_capacity:
            assert d.desired >= d.current


@SETTINGS
@given(
    runs(),
    st.floats(min_value=0, max_value=500, allow_nan=False),
    st.floats(min_value=0, max_value=500, allow_nan=False),
    st.integers(0, 40),
    st.sampled_from([10, 60, 600]),
)
def test_desired_never_decreases_when_a_metric_increases(
    run: Run, a: float, b: float, current: int, dt: float
) -> None:
    low, high = sorted((a, b))
    t, last = run.decisions[-1]
    history = last.history
    for name in [m.name for m in run.spec.metrics]:
        base = {m.name: MetricObservation(100.0) for m in run.spec.metrics}
        d_low = decide(
            run.spec,
            Observations(current, {**base, name: MetricObservation(low)}),
            history,
            at(t + dt),
        )
        d_high = decide(
            run.spec,
            Observations(current, {**base, name: MetricObservation(high)}),
            history,
            at(t + dt),
        )
        assert d_high.desired >= d_low.desired


@SETTINGS
@given(runs())
def test_same_inputs_same_decision(run: Run) -> None:
    t, last = run.decisions[-1]
    obs = Observations(last.desired, {m.name: MetricObservation(42.0) for m in run.spec.metrics})
    assert decide(run.spec, obs, last.history, at(t + 30)) == decide(
        run.spec, obs, last.history, at(t + 30)
    )


@SETTINGS
@given(runs())
def test_history_survives_serialization(run: Run) -> None:
    t, last = run.decisions[-1]
    restored = History.from_dict(last.history.to_dict())
    obs = Observations(last.desired, {m.name: MetricObservation(77.0) for m in run.spec.metrics})
    a = decide(run.spec, obs, last.history, at(t + 45))
    b = decide(run.spec, obs, restored, at(t + 45))
    assert (a.desired, a.limited_by) == (b.desired, b.limited_by)
