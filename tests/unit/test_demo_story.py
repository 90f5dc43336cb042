"""The demo's story: launch day from the NASA trace, in demo time."""

from __future__ import annotations

import pytest

from stackscaler.demo.story import (
    LAUNCH_AT,
    LAUNCH_DAY,
    STORY_MINUTES,
    STORY_START,
    launch_day,
    minute_of_day_label,
    round_sig,
    smoothed_peak,
)
from stackscaler.sim.trace import nasa_trace


@pytest.fixture(scope="module")
def trace() -> tuple[float, ...]:
    return nasa_trace().demand


def test_launch_day_is_the_busiest_morning_of_the_trace(trace: tuple[float, ...]) -> None:
    story = launch_day(trace, minute_seconds=2.0)
    first = LAUNCH_DAY * 1440 + STORY_START
    assert story.raw == tuple(trace[first : first + STORY_MINUTES])
    assert len(story.demand) == 360
    assert story.wall_seconds == 720.0
    # the trace's busiest minute (409 requests) is in the story, minutes after the lift-off
    assert max(story.raw) == max(trace) == 409
    busiest = story.raw.index(409)
    label = story.clock(busiest * story.minute_seconds)
    assert label.startswith("09:4"), label
    assert minute_of_day_label(LAUNCH_AT) == "09:42"


def test_story_clock_and_demand_follow_wall_time(trace: tuple[float, ...]) -> None:
    story = launch_day(trace, minute_seconds=2.0, scale=10.0)
    assert story.clock(0) == "06:00"
    assert story.clock(1.99) == "06:00"
    assert story.clock(2.0) == "06:01"
    assert story.clock(122) == "07:01"
    assert story.demand_at(4.5) == story.raw[2] * 10.0
    # clamped at both ends
    assert story.minute_at(-5) == 0
    assert story.minute_at(10_000) == 359
    assert story.clock(10_000) == "11:59"


def test_with_scale_multiplies_the_raw_trace(trace: tuple[float, ...]) -> None:
    story = launch_day(trace, minute_seconds=1.0)
    scaled = story.with_scale(140.0)
    assert scaled.demand[0] == story.raw[0] * 140.0
    assert scaled.raw == story.raw
    assert scaled.scale == 140.0


def test_launch_day_needs_the_whole_window() -> None:
    with pytest.raises(ValueError, match="the story needs"):
        launch_day([1.0] * 100)
    with pytest.raises(ValueError, match="minute_seconds"):
        launch_day([1.0] * 20000, minute_seconds=0)


@pytest.mark.parametrize(
    ("values", "window", "expected"),
    [
        ([1, 2, 3, 10, 1], 2, 6.5),
        ([1, 2, 3, 10, 1], 1, 10.0),
        ([4, 2], 10, 3.0),  # shorter than the window: the whole mean
        ([], 10, 0.0),
    ],
)
def test_smoothed_peak(values: list[float], window: int, expected: float) -> None:
    assert smoothed_peak(values, window) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(150.47, 150.0), (141.9, 140.0), (0.01234, 0.012), (1729.0, 1700.0), (0.0, 0.0)],
)
def test_round_sig(value: float, expected: float) -> None:
    assert round_sig(value) == pytest.approx(expected)
