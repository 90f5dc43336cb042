"""DynamoDB's decrease budget (policy/budget.py), against AWS's rule.

The reference below keeps every decrease's time and applies the rule as AWS
states it (a UTC day's first four at any time, then one 60 minutes after the
last, at most 27 a day); ``DecreaseBudget`` sees only what DescribeTable
reports (the day's count and the last time) and must agree with it.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stackscaler.policy.budget import (
    DAY_SECONDS,
    HOUR_SECONDS,
    MAX_DECREASES_PER_DAY,
    DecreaseBudget,
    next_utc_midnight,
    utc_day,
)

SETTINGS = settings(max_examples=200, deadline=None)
DAY0 = 20_000 * DAY_SECONDS  # a UTC midnight (2024-10-04)


def aws_allows(history: list[float], now: float) -> bool:
    """AWS's rule over the full history of decreases."""
    today = [t for t in history if utc_day(t) == utc_day(now)]
    if len(today) >= MAX_DECREASES_PER_DAY:
        return False
    if len(today) < 4:
        return True
    return now - max(today) >= HOUR_SECONDS


def described(history: list[float], now: float) -> DecreaseBudget:
    """What DescribeTable reports at ``now`` for this history."""
    if not history:
        return DecreaseBudget(0, None)
    last = max(history)
    return DecreaseBudget(sum(1 for t in history if utc_day(t) == utc_day(last)), last)


gaps = st.lists(st.integers(0, 3 * HOUR_SECONDS), min_size=1, max_size=80)


@SETTINGS
@given(start=st.integers(0, DAY_SECONDS - 1), steps=gaps, greedy=st.booleans())
def test_the_budget_allows_exactly_what_aws_allows(
    start: int, steps: list[int], greedy: bool
) -> None:
    history: list[float] = []
    now = float(DAY0 + start)
    for gap in steps:
        now += gap
        budget = described(history, now)
        left = budget.left(now)
        assert (left > 0) == aws_allows(history, now)
        if left > 0 and (greedy or gap % 2 == 0):
            # Spending all that is left at once is allowed, one after another.
            for _ in range(left):
                assert aws_allows(history, now)
                history.append(now)
            assert not aws_allows(history, now)


@SETTINGS
@given(start=st.integers(0, DAY_SECONDS - 1), steps=gaps)
def test_never_more_than_27_in_a_utc_day(start: int, steps: list[int]) -> None:
    history: list[float] = []
    now = float(DAY0 + start)
    for gap in steps:
        now += gap
        budget = described(history, now)
        history.extend([now] * budget.left(now))
    per_day: dict[int, int] = {}
    for t in history:
        per_day[utc_day(t)] = per_day.get(utc_day(t), 0) + 1
    assert all(n <= MAX_DECREASES_PER_DAY for n in per_day.values())


@SETTINGS
@given(start=st.integers(0, DAY_SECONDS - 1), steps=gaps)
def test_next_earned_is_when_a_decrease_becomes_available(start: int, steps: list[int]) -> None:
    history: list[float] = []
    now = float(DAY0 + start)
    for gap in steps:
        now += gap
        budget = described(history, now)
        if budget.left(now) == 0:
            t = budget.next_earned(now)
            assert t > now
            assert aws_allows(history, t)
            assert not aws_allows(history, t - 1)
        else:
            history.append(now)


@SETTINGS
@given(start=st.integers(0, DAY_SECONDS - 1), steps=gaps)
def test_remaining_today_is_what_spending_each_as_soon_as_earned_gets(
    start: int, steps: list[int]
) -> None:
    history: list[float] = []
    now = float(DAY0 + start)
    for gap in steps[:10]:
        now += gap
        budget = described(history, now)
        if budget.left(now) and gap % 3 == 0:
            history.append(now)
    budget = described(history, now)
    expected = budget.remaining_today(now)
    # Spend every decrease as soon as it is earned until the day ends.
    sim = list(history)
    t = now
    count = 0
    midnight = next_utc_midnight(now)
    while t < midnight:
        b = described(sim, t)
        if b.left(t) > 0:
            sim.append(t)
            count += 1
            continue
        t = b.next_earned(t)
    assert count == expected


def test_a_fresh_day_has_four_at_once_then_one_an_hour() -> None:
    b = DecreaseBudget(0, None)
    assert b.left(DAY0) == 4
    b = DecreaseBudget(4, DAY0 + 600.0)
    assert b.left(DAY0 + 600.0) == 0
    assert b.next_earned(DAY0 + 700.0) == DAY0 + 600.0 + HOUR_SECONDS
    assert b.left(DAY0 + 600.0 + HOUR_SECONDS) == 1
    assert b.remaining_today(DAY0 + 700.0) == 23


def test_yesterdays_count_does_not_apply_after_midnight() -> None:
    b = DecreaseBudget(27, DAY0 - 60.0)
    assert b.left(DAY0 - 30.0) == 0
    assert b.next_earned(DAY0 - 30.0) == DAY0
    assert b.used(DAY0 + 1.0) == 0
    assert b.left(DAY0 + 1.0) == 4


def test_a_count_without_a_time_is_taken_as_just_made() -> None:
    b = DecreaseBudget(5, None)
    assert b.left(DAY0 + 10 * HOUR_SECONDS) == 0


def test_after_decrease_is_what_describe_table_then_reports() -> None:
    b = DecreaseBudget(3, DAY0 + 10.0).after_decrease(DAY0 + 20.0)
    assert b == DecreaseBudget(4, DAY0 + 20.0)
    assert DecreaseBudget(9, DAY0 - 5.0).after_decrease(DAY0 + 5.0) == DecreaseBudget(1, DAY0 + 5.0)
