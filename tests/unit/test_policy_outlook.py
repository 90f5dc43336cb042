"""The next allowed scale-in (policy/outlook.py) says what decide() will do.

Each property drives the real ``decide`` with the history the outlook reads: a
low load asks for the smallest capacity, and the outlook's "waiting" must be
exactly the ticks at which ``decide`` holds the capacity.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackscaler.model.spec import ScalingSpec
from stackscaler.policy import History, Limit, decide, scale_in_outlook
from stackscaler.policy.rules import scale_in_cooldown_until
from tests.unit.policy_helpers import NOW, UNLIMITED, at, metric, obs, scaling

T0 = NOW.timestamp()


def _idle(window: int, cooldown: int, *, min_capacity: int = 1) -> ScalingSpec:
    return scaling(
        [metric(target=50)],
        min_capacity=min_capacity,
        scale_in={
            "cooldownSeconds": cooldown,
            "stabilizationWindowSeconds": window,
            "maxStep": UNLIMITED,
        },
    )


@st.composite
def windows(draw: st.DrawFn) -> tuple[int, History, int, float]:
    """(window, a history the policy built by its own pushes, current, a time after them)."""
    window = draw(st.integers(1, 900))
    history = History()
    t = T0
    for _ in range(draw(st.integers(1, 12))):
        t += draw(st.integers(1, 400))
        value = draw(st.integers(1, 30))
        history = history.with_recommendation(t, value, in_window=window, out_window=0)
    current = draw(st.integers(2, 30))
    later = t + draw(st.integers(0, 2 * window))
    return window, history, current, later


@settings(max_examples=300, deadline=None)
@given(windows())
def test_the_window_waits_exactly_while_decide_holds_the_capacity(
    case: tuple[int, History, int, float],
) -> None:
    window, history, current, t = case
    spec = _idle(window, cooldown=0)
    when = datetime.fromtimestamp(t, UTC)
    outlook = scale_in_outlook(spec, history, current, when)
    decision = decide(spec, obs(current, cpu=0.5), history, when)  # asks for 1
    waiting = Limit.SCALE_IN_STABILIZATION in outlook.waiting_for(t)
    assert waiting == (decision.desired == current), (outlook, decision.reasons)
    if waiting:
        assert decision.limited_by is Limit.SCALE_IN_STABILIZATION
        assert outlook.window_until is not None
        # and the first moment after the window lets it go, decide does too
        after = outlook.window_until + 0.001
        then = datetime.fromtimestamp(after, UTC)
        assert decide(spec, obs(current, cpu=0.5), history, then).desired < current
        assert not scale_in_outlook(spec, history, current, then).waiting_for(after)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 900),
    st.one_of(st.none(), st.integers(0, 1000)),
    st.one_of(st.none(), st.integers(0, 1000)),
    st.integers(0, 2000),
)
def test_the_cooldown_waits_exactly_while_decide_holds_the_capacity(
    cooldown: int, scaled_in: int | None, scaled_out: int | None, offset: int
) -> None:
    history = History(
        last_scale_in=None if scaled_in is None else T0 + scaled_in,
        last_scale_out=None if scaled_out is None else T0 + scaled_out,
    )
    spec = _idle(0, cooldown)
    t = T0 + offset
    outlook = scale_in_outlook(spec, history, 10, at(offset))
    decision = decide(spec, obs(10, cpu=0.5), history, at(offset))
    waiting = Limit.SCALE_IN_COOLDOWN in outlook.waiting_for(t)
    assert waiting == (decision.desired == 10), (outlook, decision.reasons)
    assert outlook.cooldown_until == scale_in_cooldown_until(history, cooldown)
    if waiting:
        assert decision.limited_by is Limit.SCALE_IN_COOLDOWN
        assert outlook.cooldown_until is not None
        assert outlook.seconds_left(t) == pytest.approx(outlook.cooldown_until - t)
    else:
        assert outlook.seconds_left(t) == 0


def test_both_rules_the_later_one_decides_and_the_floor_stops_everything() -> None:
    spec = _idle(600, 300, min_capacity=2)
    history = History(last_scale_out=T0).with_recommendation(
        T0 + 30, 8, in_window=600, out_window=0
    )
    history = history.with_recommendation(T0 + 60, 3, in_window=600, out_window=0)
    o = scale_in_outlook(spec, history, 8, at(90))
    assert (o.cooldown_until, o.window_until) == (T0 + 300, T0 + 630)
    assert o.allowed_at == T0 + 630
    assert o.waiting_for(T0 + 90) == (Limit.SCALE_IN_STABILIZATION, Limit.SCALE_IN_COOLDOWN)
    assert o.waiting_for(T0 + 400) == (Limit.SCALE_IN_STABILIZATION,)
    assert o.seconds_left(T0 + 90) == 540
    assert o.recommended  # the newest recommendation (3) is below 8
    assert not o.at_floor
    assert scale_in_outlook(spec, history, 2, at(90)).at_floor
    # nothing recorded and never scaled: no time rule holds a scale-in
    fresh = scale_in_outlook(spec, History(), 8, at(0))
    assert (fresh.allowed_at, fresh.waiting_for(T0), fresh.recommended) == (None, (), False)


def test_a_schedule_that_raises_the_floor_is_the_floor() -> None:
    spec = scaling(
        [metric()],
        min_capacity=1,
        schedules=[
            {"name": "day", "cron": "0 0 * * *", "durationSeconds": 86400, "minCapacity": 5}
        ],
    )
    assert scale_in_outlook(spec, History(), 5, NOW).at_floor
    assert scale_in_outlook(spec, History(), 5, NOW).floor == 5
    with pytest.raises(ValueError, match="timezone-aware"):
        scale_in_outlook(spec, History(), 5, NOW.replace(tzinfo=None))
