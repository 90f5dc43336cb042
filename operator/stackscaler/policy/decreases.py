"""How a DynamoDB table spends its scarce decreases, and throttling as a signal. Pure.

Increases are free and immediate; decreases are few (policy/budget.py: the
day's first four at any time, then one an hour after the last, at most 27).
A decrease spent on a short dip is gone for the day, and a table that spent
its quick ones early is held high for an hour after each later decrease: what
Application Auto Scaling does, since it lowers the capacity whenever its
scale-in alarm fires. So the policy spends them where they save the most
capacity-hours:

* **paced** (an hour or more since the last decrease, or the first of a UTC
  day): spent when the step is at least ``PACED_STEP`` of the capacity (at
  least one unit). Smaller steps are saved: the decrease would hold the next
  one back an hour and save little.
* **quick** (within an hour of the last, from the day's four): spent only on a
  step of ``QUICK_STEP`` or more while ``RESERVE`` quick decreases stay in
  hand, or on a fall of ``BIG_STEP`` or more (what the reserve is kept for:
  coming down after the daily peak or a burst). Anything else waits for the
  next paced decrease, which comes within the hour. In the last hour of the
  UTC day the quick ones left are spent as paced ones: they expire at
  midnight.
* **settled** (the decrease that leaves none to spend until the next is
  earned, an hour later): spent once the fall has settled, not on its way
  down. While the highest need of the last ``SETTLE_SECONDS`` is lower than
  the stabilization window's by ``PACED_STEP`` or more, the window still holds
  an older, higher need that it drops within minutes: the decrease waits for
  it rather than landing on a step of the way down and staying there an hour.
* none left: no scale-in until the next decrease is earned.

Short dips are already kept out by the scale-in stabilization window (the
kind's default 900 s: the highest need of 15 minutes), so a step that passes
the window is a sustained one; the thresholds above decide whether it is
worth one of the day's decreases now or can wait for a cheaper one.

Throttling: a throttle metric (``MetricSpec.throttle``: a TableCapacity's
``throttles``, ThrottleEvents per period) above zero means demand the table
refused. It scales out at once (no scale-out stabilization, no scale-out
cooldown) to at least :func:`throttled_need`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from stackscaler.policy.budget import (
    FREE_DECREASES,
    HOUR_SECONDS,
    DecreaseBudget,
    next_utc_midnight,
)
from stackscaler.policy.rules import ceil

PACED_STEP = 0.10
"""A paced decrease is spent on a step of at least 10 % of the capacity (and one unit)."""
QUICK_STEP = 0.25
"""A quick decrease (within an hour of the last) needs a step of at least 25 %..."""
RESERVE = 1
"""...and leaves this many quick decreases in hand for a fall after the peak..."""
BIG_STEP = 0.50
"""...unless the step is at least half the capacity: then the reserve is spent too."""
SETTLE_SECONDS = 300
"""The recent part of the scale-in window that says whether a fall has settled."""


@dataclass(frozen=True)
class Spend:
    """The budget phase's answer: the capacity to go to, and why."""

    desired: int
    spent: bool
    """Whether ``desired`` spends a decrease (it is below the current capacity)."""
    held: bool
    """Whether a scale-in was held back (budget spent, or a decrease saved)."""
    saved: bool
    """Held to save a decrease (there was one to spend), rather than none left."""
    reason: str


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S UTC")


def _min_step(current: int, fraction: float) -> int:
    return max(1, ceil(current * fraction))


def spend_decrease(
    budget: DecreaseBudget, current: int, proposal: int, t: float, recent: int | None = None
) -> Spend:
    """Whether to lower ``current`` to ``proposal`` (< current) now, given ``budget``.

    ``recent``: the highest need of the last ``SETTLE_SECONDS`` (None: not known).
    """
    used = budget.used(t)
    left = budget.left(t)
    step = current - proposal
    share = step / current if current else 1.0
    if left == 0:
        return Spend(
            current,
            spent=False,
            held=True,
            saved=False,
            reason=(
                f"decrease budget spent ({used} today): no scale-in to {proposal} until the "
                f"next decrease is earned at {_clock(budget.next_earned(t))}"
            ),
        )
    last = budget.last_decrease
    expiring = next_utc_midnight(t) - t <= HOUR_SECONDS
    paced = used == 0 or last is None or t - last >= HOUR_SECONDS or expiring
    spend_note = f"{left} decrease(s) left now, {used} spent today"
    locking = left == 1 and not expiring
    if locking and recent is not None and proposal - recent >= _min_step(current, PACED_STEP):
        return Spend(
            current,
            spent=False,
            held=True,
            saved=True,
            reason=(
                f"saving a decrease ({spend_note}): the need is still falling (the last "
                f"{SETTLE_SECONDS}s ask for {recent}, the window still holds {proposal}); "
                "the last decrease for an hour waits for it to settle"
            ),
        )
    if paced:
        need = _min_step(current, PACED_STEP)
        if step >= need:
            return Spend(
                proposal,
                True,
                False,
                False,
                f"spending a decrease ({spend_note}): {current} -> {proposal} ({share:.0%} lower)",
            )
        return Spend(
            current,
            spent=False,
            held=True,
            saved=True,
            reason=(
                f"saving a decrease ({spend_note}): {current} -> {proposal} is {step} unit(s), "
                f"less than {PACED_STEP:.0%} of the capacity ({need}): too little to spend one "
                "of the day's decreases on"
            ),
        )
    quick_left = max(0, FREE_DECREASES - used)
    ago = (t - last) / 60 if last is not None else 0.0
    paced_at = _clock(last + HOUR_SECONDS) if last is not None else "now"
    if share >= BIG_STEP or (share >= QUICK_STEP and quick_left - 1 >= RESERVE):
        return Spend(
            proposal,
            True,
            False,
            False,
            f"spending a quick decrease ({spend_note}, the last {ago:.0f} min ago): "
            f"{current} -> {proposal} ({share:.0%} lower)",
        )
    if quick_left - 1 >= RESERVE:
        why = f"a quick decrease needs a step of {QUICK_STEP:.0%}"
    else:
        why = f"keeping {RESERVE} quick decrease(s) for a fall of {BIG_STEP:.0%} or more"
    return Spend(
        current,
        spent=False,
        held=True,
        saved=True,
        reason=(
            f"saving a decrease ({spend_note}, the last {ago:.0f} min ago): {current} -> "
            f"{proposal} is {share:.0%} lower and {why}; next paced decrease at {paced_at}"
        ),
    )


def throttled_need(
    current: int,
    throttled: float,
    period_seconds: float,
    totals: list[tuple[float, float]],
    *,
    fresh: bool = True,
) -> int:
    """The capacity a throttled table needs at least.

    ``throttled`` events in ``period_seconds`` were refused: each asked for at least one
    capacity unit (a 4 KB strongly consistent read, a 1 KB write), so at least
    ``throttled / period_seconds`` units per second more than were served. Each total
    (``value`` per second served, ``target`` per unit: a table's consumed capacity at
    its target utilization) needs ``ceil((value + throttled / period) / target)``.

    ``fresh``: the sample's whole period came after the last scale-out, so the refusals
    happened at the current capacity; then at the very least the current capacity plus
    the refused units (one unit more when they round to nothing). A sample from before
    the last scale-out (DynamoDB publishes throttles once a minute, and a tick every few
    seconds reads the same datapoint again) says nothing about the capacity since: only
    the level rule applies, so one datapoint raises the capacity once, not at every
    tick. Never below ``current``: throttling never lowers capacity.
    """
    refused = throttled / period_seconds if period_seconds > 0 else throttled
    need = current + max(1, ceil(refused)) if fresh else current
    for value, target in totals:
        if target > 0:
            need = max(need, ceil((value + refused) / target))
    return need
