"""DynamoDB's daily budget of provisioned-capacity decreases. Pure.

AWS (Amazon DynamoDB Developer Guide, "Quotas in Amazon DynamoDB", section
"Decreasing provisioned throughput"): a table and each global secondary index
may start a UTC day with up to four decreases; after them, one more decrease is
allowed per hour (60 minutes after the last one); at most 27 in one UTC day
(four in the first hour, one in each of the other 23). One UpdateTable that
lowers read and write together is one decrease.

``DecreaseBudget`` holds what DescribeTable reports (``NumberOfDecreasesToday``,
``LastDecreaseDateTime`` of the table or the index) and answers, for a moment
``now``, how many decreases can be made at once (``left``) and when the next one
is earned (``next_earned``). The model is the conservative reading of AWS's
rule: the first four of a day at any time, then one 60 minutes after the last;
it never allows a decrease the rule refuses, so the operator never plans on a
decrease that UpdateTable would answer with LimitExceededException.

Times are epoch seconds (UTC: a POSIX day is 86,400 s, so a UTC day is
``floor(t / 86400)``); the caller passes ``now``: no clock here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DAY_SECONDS = 86_400
"""One UTC day (POSIX time has no leap seconds)."""
HOUR_SECONDS = 3_600
"""The hour after a decrease in which no further one is earned (past the first four)."""
FREE_DECREASES = 4
"""Decreases allowed at any time of a UTC day, before the hourly rule applies."""
MAX_DECREASES_PER_DAY = 27
"""At most this many decreases in one UTC day (4 + one in each of the other 23 hours)."""


def utc_day(t: float) -> int:
    """The UTC day number (days since the epoch) of the epoch time ``t``."""
    return math.floor(t / DAY_SECONDS)


def next_utc_midnight(t: float) -> float:
    """The start of the UTC day after the one holding ``t`` (epoch seconds)."""
    return float((utc_day(t) + 1) * DAY_SECONDS)


@dataclass(frozen=True)
class DecreaseBudget:
    """A table's (or an index's) decreases of the current UTC day.

    ``decreases_today`` is DynamoDB's NumberOfDecreasesToday as last described;
    ``last_decrease`` its LastDecreaseDateTime (epoch seconds), None if it never
    decreased. A count read on an earlier UTC day than ``now`` (its last decrease
    on an earlier day) no longer applies: the day's budget starts afresh at
    midnight UTC. A count with no last decrease is taken as today's, and the last
    one as just made (the cautious reading of a missing time).
    """

    decreases_today: int
    last_decrease: float | None = None

    def used(self, now: float) -> int:
        """Decreases already made in the UTC day of ``now``."""
        if self.decreases_today <= 0:
            return 0
        if self.last_decrease is not None and utc_day(self.last_decrease) < utc_day(now):
            return 0
        return min(self.decreases_today, MAX_DECREASES_PER_DAY)

    def _hour_passed(self, now: float) -> bool:
        if self.last_decrease is None:
            return self.decreases_today <= 0
        return now - self.last_decrease >= HOUR_SECONDS

    def left(self, now: float) -> int:
        """Decreases that can be made at ``now``, one after another, without waiting."""
        used = self.used(now)
        if used >= MAX_DECREASES_PER_DAY:
            return 0
        free = FREE_DECREASES - used
        if free > 0:
            return free
        return 1 if self._hour_passed(now) else 0

    def next_earned(self, now: float) -> float:
        """When the next decrease is earned (epoch seconds, >= ``now``).

        With none left at ``now``: when one becomes available (an hour after the
        last, or the next UTC midnight if that is earlier or the day's 27 are
        spent). With some left: when one more would be earned if those were all
        spent at ``now``.
        """
        left = self.left(now)
        midnight = next_utc_midnight(now)
        if left == 0:
            if self.used(now) >= MAX_DECREASES_PER_DAY:
                return midnight
            last = now if self.last_decrease is None else self.last_decrease
            return max(now, min(last + HOUR_SECONDS, midnight))
        if self.used(now) + left >= MAX_DECREASES_PER_DAY:
            return midnight
        return min(now + HOUR_SECONDS, midnight)

    def remaining_today(self, now: float) -> int:
        """The most decreases still possible before the UTC day of ``now`` ends.

        Those left now, then one each hour after them, up to the day's 27.
        """
        used = self.used(now)
        left = self.left(now)
        if left == 0:
            first = self.next_earned(now)
            if first >= next_utc_midnight(now):
                return 0
            later = int((next_utc_midnight(now) - first - 1e-9) // HOUR_SECONDS) + 1
        else:
            later = int((next_utc_midnight(now) - now - 1e-9) // HOUR_SECONDS)
        return max(0, min(MAX_DECREASES_PER_DAY - used, left + later))

    def after_decrease(self, at: float) -> DecreaseBudget:
        """The budget once one decrease is made at ``at`` (as DescribeTable would report it)."""
        return DecreaseBudget(self.used(at) + 1, at)
