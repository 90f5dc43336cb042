"""The simulated DynamoDB table: provisioned capacity, burst capacity, throttling, the
decrease budget AWS enforces, and the prices of both capacity modes.

Pure: no I/O, no clock (times are the simulation's epoch seconds).

- **Capacity** changes at once (UpdateTable: no warm-up; the UPDATING state that
  follows is not modelled, see docs/simulate.md).
- **Demand** is in capacity units per second (one strongly consistent read of up to
  4 KB is one RCU; one write of up to 1 KB is one WCU).
- **Burst capacity**: DynamoDB "retains up to 5 minutes (300 seconds) of unused read
  and write capacity" and spends it on demand above the provisioned rate (AWS
  Knowledge Center, "How does DynamoDB handle spiky workloads in short intervals";
  the Developer Guide's "Burst capacity"). The simulator keeps one bucket per
  dimension: every step adds the unused unit-seconds, capped at 300 s x the
  provisioned rate; demand above the rate draws from it; what the bucket cannot
  cover is throttled. AWS gives burst on a best-effort basis, so it is the most the
  table could get, never a promise: it favours every policy alike.
- **Throttling**: requests refused are counted (``ReadThrottleEvents`` /
  ``WriteThrottleEvents``, one event per refused unit here) and are not consumed: the
  ``Consumed*CapacityUnits`` metric is what was served. A throttled minute is a minute
  with at least one refused request. Clients' retries are not modelled.
- **Decreases**: :class:`DecreaseLedger` is the world's own account of AWS's rule
  (independent of the policy's :mod:`stackscaler.policy.budget`, so a policy that
  miscounts is refused, as UpdateTable would refuse it with LimitExceededException).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DAY_SECONDS = 86_400
HOUR_SECONDS = 3_600
DECREASES_AT_ANY_TIME = 4
"""Decreases a table (or GSI) may make at any time of a UTC day."""
MAX_DECREASES_PER_DAY = 27
"""4 + one for each of the other 23 hours."""
BURST_SECONDS = 300.0
"""DynamoDB retains up to 300 s of unused read and write capacity."""

# Prices: us-east-1 (US East, N. Virginia), USD, standard table class, list prices as
# published on https://aws.amazon.com/dynamodb/pricing/provisioned/ and
# https://aws.amazon.com/dynamodb/pricing/on-demand/ (on-demand throughput halved from
# 1 November 2024; read from stored copies of those pages on 28 November 2026).
PRICE_RCU_HOUR = 0.00013
"""Provisioned: one read capacity unit for one hour."""
PRICE_WCU_HOUR = 0.00065
"""Provisioned: one write capacity unit for one hour."""
PRICE_PER_MILLION_RRU = 0.125
"""On-demand: one million read request units."""
PRICE_PER_MILLION_WRU = 0.625
"""On-demand: one million write request units."""
PRICES_SOURCE = (
    "us-east-1 list prices (aws.amazon.com/dynamodb/pricing, on-demand since 1 Nov 2024): "
    "provisioned $0.00013/RCU-h, $0.00065/WCU-h; on-demand $0.125/M reads, $0.625/M writes"
)


def utc_day(t: float) -> int:
    return math.floor(t / DAY_SECONDS)


def unit_hour_price(dimension: str) -> float:
    """Provisioned price of one capacity unit for one hour (``Read`` or ``Write``)."""
    return PRICE_RCU_HOUR if dimension == "Read" else PRICE_WCU_HOUR


def on_demand_price(dimension: str, request_units: float) -> float:
    """On-demand price of ``request_units`` read or write request units."""
    per_million = PRICE_PER_MILLION_RRU if dimension == "Read" else PRICE_PER_MILLION_WRU
    return request_units / 1e6 * per_million


class DecreaseLedger:
    """The decreases of one table or GSI, as DynamoDB counts them.

    AWS (Developer Guide, "Quotas in Amazon DynamoDB", decreasing provisioned
    throughput): up to four decreases at any time in a UTC day; past those, one more
    if there was no decrease in the past hour; at most 27 in a UTC day. Read and write
    share it: one UpdateTable that lowers either or both is one decrease.
    """

    __slots__ = ("_day", "_today", "last", "refused", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        """Every decrease made, in order."""
        self.last: float | None = None
        self.refused = 0
        """Decreases asked for and refused (LimitExceededException)."""
        self._day: int | None = None
        self._today = 0

    def decreases_today(self, t: float) -> int:
        """NumberOfDecreasesToday as DescribeTable would report it at ``t``."""
        return self._today if self._day == utc_day(t) else 0

    def allows(self, t: float) -> bool:
        n = self.decreases_today(t)
        if n >= MAX_DECREASES_PER_DAY:
            return False
        if n < DECREASES_AT_ANY_TIME:
            return True
        return self.last is None or t - self.last >= HOUR_SECONDS

    def request(self, t: float) -> bool:
        """One UpdateTable lowering capacity at ``t``: True if made (and counted)."""
        if not self.allows(t):
            self.refused += 1
            return False
        day = utc_day(t)
        self._today = self._today + 1 if self._day == day else 1
        self._day = day
        self.last = t
        self.times.append(t)
        return True

    def per_day(self) -> dict[int, int]:
        """Decreases made per UTC day (days with none left out)."""
        out: dict[int, int] = {}
        for t in self.times:
            d = utc_day(t)
            out[d] = out.get(d, 0) + 1
        return out


@dataclass(frozen=True)
class Served:
    """One step of one dimension: what was consumed and what was refused."""

    consumed: float
    """Units per second served (ConsumedCapacityUnits Sum / period)."""
    throttled_units: float
    """Request units refused in the step (ThrottleEvents, one per unit)."""


class Dimension:
    """One scalable dimension (read or write of a table or GSI): provisioned units and
    the burst bucket."""

    __slots__ = ("burst", "burst_seconds", "provisioned")

    def __init__(self, provisioned: int, burst_seconds: float = BURST_SECONDS) -> None:
        self.provisioned = provisioned
        self.burst_seconds = burst_seconds
        self.burst = burst_seconds * provisioned
        """Unit-seconds of unused capacity retained (starts full: an idle history)."""

    def resize(self, units: int) -> None:
        self.provisioned = units
        self.burst = min(self.burst, self.burst_seconds * units)

    def serve(self, demand: float, seconds: float) -> Served:
        """Serve ``demand`` units per second for ``seconds``."""
        rate = float(self.provisioned)
        if demand <= rate:
            cap = self.burst_seconds * rate
            self.burst = min(cap, self.burst + (rate - demand) * seconds)
            return Served(demand, 0.0)
        deficit = (demand - rate) * seconds
        from_burst = min(self.burst, deficit)
        self.burst -= from_burst
        refused = deficit - from_burst
        return Served(demand - refused / seconds, refused)
