"""Invariants of the policy core, checked with hypothesis.

Histories are produced by running random tick sequences through ``decide``
itself, so the properties hold for states the policy can actually reach. The
runs include units starting (in capacity, not yet in the metrics) and leaving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stackscaler.model.spec import MetricTarget, ScalingSpec, TargetType, Tolerance
from stackscaler.policy import Decision, History, Limit, MetricObservation, Observations, decide
from stackscaler.policy.rules import step_scaling, target_tracking
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
        out = {
            "cooldownSeconds": draw(st.sampled_from([0, 30, 120, 600])),
            "stabilizationWindowSeconds": draw(st.sampled_from([0, 60, 300])),
            "maxStep": step,
        }
        if draw(st.booleans()):  # this side of the band its own (else spec.tolerance)
            out["tolerance"] = draw(st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.3]))
        return out

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
        # often some units are still starting (or leaving), as after a scale-out
        starting = draw(st.integers(0, current)) if draw(st.booleans()) else 0
        leaving = draw(st.integers(0, 3)) if draw(st.integers(0, 3)) == 0 else 0
        obs = Observations(current, metrics, starting=starting, leaving=leaving)
        d = decide(spec, obs, history, at(t))
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
    st.tuples(st.integers(0, 40), st.integers(0, 40)),
    st.sampled_from([10, 60, 600]),
)
def test_desired_never_decreases_when_a_metric_increases(
    run: Run, a: float, b: float, units: tuple[int, int], dt: float
) -> None:
    """Also with units starting (the same number for both values)."""
    low, high = sorted((a, b))
    current, starting = units
    starting = min(starting, current) if starting % 2 else 0
    t, last = run.decisions[-1]
    history = last.history
    for name in [m.name for m in run.spec.metrics]:
        base = {m.name: MetricObservation(100.0) for m in run.spec.metrics}
        d_low = decide(
            run.spec,
            Observations(current, {**base, name: MetricObservation(low)}, starting=starting),
            history,
            at(t + dt),
        )
        d_high = decide(
            run.spec,
            Observations(current, {**base, name: MetricObservation(high)}, starting=starting),
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


# --- capacity in flight -------------------------------------------------------------------


@SETTINGS
@given(runs())
def test_no_scale_in_while_units_are_starting(run: Run) -> None:
    for _, d in run.decisions:
        if d.starting and d.current <= d.max_capacity:
            assert d.desired >= d.current, f"scale-in {d.current}->{d.desired} while starting"
            if d.limited_by is Limit.WARMUP:
                assert d.desired == d.current


@SETTINGS
@given(runs())
def test_all_units_ready_is_todays_decision(run: Run) -> None:
    """With no unit starting, every rule is today's: each metric's recommendation is
    today's rule applied to the capacity, nothing speaks of units starting, and units
    leaving change the reasons only."""
    for _, d in run.decisions:
        if d.starting:
            continue
        assert d.limited_by is not Limit.WARMUP
        assert not any("starting" in r for r in d.reasons)
        for r, m in zip(d.metrics, run.spec.metrics, strict=True):
            if r.recommendation is None or r.value is None:
                continue
            if m.target is not None:
                today = target_tracking(d.current, r.value, m.target, run.spec.band)
            else:
                assert m.step_scaling is not None
                stepped = step_scaling(d.current, r.value, m.step_scaling)
                today = d.current if stepped is None else stepped
            assert r.recommendation == today
    # and the same observations say the same with the in-flight fields at their defaults
    t, last = run.decisions[-1]
    metrics = {m.name: MetricObservation(61.0) for m in run.spec.metrics}
    plain = decide(run.spec, Observations(last.desired, metrics), last.history, at(t + 30))
    zero = Observations(last.desired, metrics, starting=0, leaving=0)
    assert decide(run.spec, zero, last.history, at(t + 30)) == plain
    leaving = Observations(last.desired, metrics, starting=0, leaving=3)
    d = decide(run.spec, leaving, last.history, at(t + 30))
    assert (d.desired, d.limited_by, d.recommendation, d.history, d.history_if_held) == (
        plain.desired,
        plain.limited_by,
        plain.recommendation,
        plain.history,
        plain.history_if_held,
    )


def _value_metric(spec: ScalingSpec) -> str | None:
    return next(
        (
            m.name
            for m in spec.metrics
            if m.target is not None and m.target.type is TargetType.VALUE
        ),
        None,
    )


@st.composite
def open_specs(draw: st.DrawFn) -> ScalingSpec:
    """Target tracking with few limits in the way, so that scale-outs show."""
    lo = draw(st.integers(0, 5))
    limits = {"cooldownSeconds": 0, "stabilizationWindowSeconds": 0, "maxStep": {"units": 1000}}
    metrics = [
        metric("cpu", draw(st.sampled_from([40, 50, 70]))),
        metric("rpm", draw(st.sampled_from([100, 1000])), "AverageValue"),
    ]
    return scaling(
        metrics[: draw(st.integers(1, 2))],
        min_capacity=lo,
        max_capacity=draw(st.integers(max(lo, 1), 500)),
        scale_out=dict(limits),
        scale_in={**limits, "stabilizationWindowSeconds": draw(st.sampled_from([0, 300]))},
        tolerance=draw(st.sampled_from([0.0, 0.1, 0.2])),
    )


@st.composite
def specs_and_histories(draw: st.DrawFn) -> tuple[ScalingSpec, History, float]:
    """A spec with a history it reached (from a run), or a fresh one; and the time after."""
    if draw(st.booleans()):
        run = draw(runs())
        t, last = run.decisions[-1]
        return run.spec, last.history, t + 30
    return draw(open_specs()), History(), 0.0


@SETTINGS
@given(
    specs_and_histories(),
    st.integers(1, 60),
    st.floats(min_value=0, max_value=300, allow_nan=False),
    st.floats(min_value=0, max_value=5_000, allow_nan=False),
    st.data(),
)
def test_more_units_starting_never_order_more_for_the_same_demand(
    case: tuple[ScalingSpec, History, float],
    capacity: int,
    value: float,
    total: float,
    data: st.DataObject,
) -> None:
    """Same demand (ready x per-unit value, and the same totals), same capacity: with
    more of it still starting, never a larger scale-out (the flash-crowd overshoot was a
    scale-out that grew with every tick the new units spent warming up)."""
    spec, history, t = case
    name = _value_metric(spec)
    if name is None:
        return
    s1 = data.draw(st.integers(0, capacity - 1))
    s2 = data.draw(st.integers(s1, capacity - 1))  # at least one unit ready
    demand = value * (capacity - s1)

    def at_split(starting: int) -> Decision:
        per_unit = demand / (capacity - starting)
        metrics = {
            m.name: MetricObservation(per_unit if m.name == name else total) for m in spec.metrics
        }
        return decide(spec, Observations(capacity, metrics, starting=starting), history, at(t))

    fewer, more = at_split(s1), at_split(s2)
    assert max(more.desired, capacity) <= max(fewer.desired, capacity)


@st.composite
def step_specs(draw: st.DrawFn) -> ScalingSpec:
    lo = draw(st.integers(0, 5))
    kind = draw(st.sampled_from(["ChangeInCapacity", "PercentChangeInCapacity", "ExactCapacity"]))
    up = draw(st.integers(1, 20)) if kind != "ExactCapacity" else draw(st.integers(1, 40))
    steps = {
        "adjustmentType": kind,
        "steps": [
            {"upperBound": 30, "adjustment": -1 if kind != "ExactCapacity" else lo},
            {"lowerBound": 70, "upperBound": 85, "adjustment": up},
            {"lowerBound": 85, "adjustment": 2 * up},
        ],
    }
    m = metric("cpu")
    del m["target"]
    m["stepScaling"] = steps
    behavior = {
        "cooldownSeconds": draw(st.sampled_from([0, 60])),
        "stabilizationWindowSeconds": draw(st.sampled_from([0, 60, 300])),
        "maxStep": {"units": draw(st.sampled_from([1, 3, 100_000]))},
    }
    return scaling(
        [m],
        min_capacity=lo,
        max_capacity=draw(st.integers(max(lo, 1), 60)),
        scale_out=behavior,
        scale_in=dict(behavior),
    )


@SETTINGS
@given(
    st.one_of(specs(), open_specs(), step_specs()),
    st.integers(0, 40),
    st.floats(min_value=0, max_value=300, allow_nan=False),
    st.sampled_from([5, 30, 60, 200]),
)
def test_units_starting_never_cause_a_further_scale_out(
    spec: ScalingSpec, capacity: int, value: float, dt: float
) -> None:
    """A scale-out is ordered; while its units warm up the metrics stay the same (the
    ready units carry the same load): the next tick orders nothing beyond what the
    first one asked for (AWS: breaches needing the same capacity cause one scale-out)."""
    capacity = min(max(capacity, spec.min_capacity), spec.max_capacity)
    metrics = {m.name: MetricObservation(value) for m in spec.metrics}
    first = decide(spec, Observations(capacity, metrics), History(), at(0))
    ordered = first.desired
    starting = max(0, ordered - capacity)
    ready_now = min(ordered, capacity)
    second = decide(spec, Observations(ordered, metrics, starting=starting), first.history, at(dt))
    asked = min(max(first.recommendation, spec.min_capacity), spec.max_capacity)
    assert second.desired <= max(ordered, asked)
    if ordered >= asked:  # the capacity covers the need: no further scale-out
        assert second.desired <= ordered
    assert second.ready == ready_now or starting == 0


@SETTINGS
@given(
    target=st.sampled_from([40.0, 50.0, 70.0, 90.0]),
    ceiling=st.sampled_from([None, 100.0]),
    above=st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.3]),
    below=st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.3]),
    value=st.floats(min_value=0.1, max_value=100),
    current=st.integers(1, 200),
)
def test_any_band_lands_where_the_same_demand_holds(
    *, target: float, ceiling: float | None, above: float, below: float, value: float, current: int
) -> None:
    """Whatever the two sides of the band, target tracking's answer is a fixed point: on
    the same demand at the new capacity (a per-unit metric reads ``value x current / new``)
    it holds, so an asymmetric band never flaps on unchanged demand."""
    t = MetricTarget(TargetType.VALUE, target, ceiling)
    band = Tolerance(above, below)
    new = target_tracking(current, value, t, band)
    if new > 0:
        assert target_tracking(new, value * current / new, t, band) == new
