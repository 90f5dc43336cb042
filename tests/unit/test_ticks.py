"""Readiness and liveness from ticks: a stuck operator fails liveness, a slow AWS does not."""

from __future__ import annotations

from stackscaler.observability.ticks import TickWatch


def test_a_tick_stuck_past_its_deadlines_fails_liveness() -> None:
    now = [0.0]
    w = TickWatch(stalled_after=300, idle_after=600, clock=lambda: now[0])
    with w.running("a"):
        now[0] = 299
        assert w.alive() is True
        now[0] = 301
        assert "stuck" in str(w.alive())
        assert "stuck" in str(w.ready(1))
    assert w.alive() is True  # it ended


def test_readiness_needs_ticks_to_complete_when_there_are_resources() -> None:
    now = [0.0]
    w = TickWatch(stalled_after=300, idle_after=600, clock=lambda: now[0])
    now[0] = 700
    assert w.ready(0) is True  # nothing to tick
    assert "no tick of 3 resource(s) completed" in str(w.ready(3))
    with w.running("a"):
        pass
    assert w.ready(3) is True
    assert w.completed == 1
