"""A token bucket per (service, region), shared by every call and every retry.

:class:`~stackscaler.aws.clients.AwsCaller` awaits a token with
:meth:`TokenBucket.wait` on the event loop, before it hands an attempt to a
worker thread: a call waiting for its turn holds no thread, so reads of one
service never queue behind rate-limited writes of another. Every HTTP
attempt, retries included, takes one token. :meth:`TokenBucket.acquire`
blocks the calling thread instead; it is left for requests made inside a
worker thread (STS AssumeRole at a role's first use or credential refresh).

Tokens are reserved in order, possibly into debt: the n-th waiter past the
burst waits n / rate seconds. A waiter cancelled before its turn gives its
token back, so cancelled calls leave no debt behind.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    rate: float
    """Tokens per second."""
    burst: int
    """Bucket size."""


# Conservative defaults, below AWS's documented per-account, per-region limits.
DEFAULT_LIMITS: dict[str, RateLimit] = {
    "autoscaling": RateLimit(5.0, 10),
    "cloudwatch": RateLimit(10.0, 20),
    "sqs": RateLimit(50.0, 100),
    "rds": RateLimit(5.0, 10),
    "elasticache": RateLimit(3.0, 6),
    "sts": RateLimit(5.0, 10),
}


class TokenBucket:
    """Thread-safe token bucket, awaitable on the event loop or blocking in a thread.

    ``clock``, ``sleep`` (blocking) and ``async_sleep`` are injectable for tests.
    """

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        if limit.rate <= 0 or limit.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.limit = limit
        self._clock, self._sleep, self._async_sleep = clock, sleep, async_sleep
        self._on_wait = on_wait
        self._tokens = float(limit.burst)
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        """Add the tokens earned since the last look, up to the burst (lock held)."""
        now = self._clock()
        self._tokens = min(
            float(self.limit.burst), self._tokens + (now - self._last) * self.limit.rate
        )
        self._last = now

    def _reserve(self) -> float:
        """Take a token, possibly going into debt; return how long to wait."""
        with self._lock:
            self._refill()
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.limit.rate

    def give_back(self) -> None:
        """Return a reserved token that was never used (a cancelled waiter, an unsent request)."""
        with self._lock:
            self._refill()
            self._tokens = min(float(self.limit.burst), self._tokens + 1.0)

    @property
    def available(self) -> float:
        """Tokens in the bucket now; negative while waiters are in debt."""
        with self._lock:
            self._refill()
            return self._tokens

    def acquire(self) -> float:
        """Block the calling thread until a token is available; return the seconds waited."""
        wait = self._reserve()
        if wait > 0:
            if self._on_wait is not None:
                self._on_wait(wait)
            self._sleep(wait)
        return wait

    async def wait(self, within: float | None = None) -> float | None:
        """Await a token on the event loop, holding no thread; return the seconds waited.

        With ``within``, a token that would come more than ``within`` seconds
        from now (and later than at once) is not taken: the reservation goes
        back and None is returned at once. Cancelled while waiting, the
        reserved token goes back to the bucket.
        """
        wait = self._reserve()
        if within is not None and wait > 0 and wait > within:
            self.give_back()
            return None
        if wait > 0:
            if self._on_wait is not None:
                self._on_wait(wait)
            try:
                await self._async_sleep(wait)
            except BaseException:  # cancelled: this waiter will not send
                self.give_back()
                raise
        return wait


MUTATING = (
    "Set",
    "Create",
    "Delete",
    "Modify",
    "Update",
    "Put",
    "Increase",
    "Decrease",
    "Terminate",
    "Start",
    "Stop",
    "Reboot",
    "Promote",
    "Add",
    "Remove",
    "Send",
    "Purge",
    "Tag",
    "Untag",
    "Attach",
    "Detach",
)
"""Operation name prefixes that change something: they take tokens from the write bucket."""


def access(operation: str | None) -> str:
    """'write' for an operation that changes something, else 'read'."""
    return "write" if operation is not None and operation.startswith(MUTATING) else "read"


class RateLimiters:
    """Two buckets per (service, region), reads and writes, created on first use.

    As EC2 counts mutating and non-mutating actions apart, reads never queue
    behind rate-limited writes (a burst of SetDesiredCapacity does not delay
    the DescribeAutoScalingGroups every other tier needs); each gets the
    service's limit.
    """

    def __init__(
        self,
        limits: dict[str, RateLimit] | None = None,
        on_wait: Callable[[str, str, float], None] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._limits = {**DEFAULT_LIMITS, **(limits or {})}
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}
        self._lock = threading.Lock()
        self._on_wait = on_wait
        self._clock, self._sleep, self._async_sleep = clock, sleep, async_sleep

    def bucket(self, service: str, region: str, operation: str | None = None) -> TokenBucket:
        """The bucket of ``operation`` (None: a read) of ``service`` in ``region``."""
        key = (service, region, access(operation))
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                hook = self._on_wait

                def report(seconds: float) -> None:
                    if hook is not None:
                        hook(service, region, seconds)

                b = TokenBucket(
                    self._limits.get(service, RateLimit(5.0, 10)),
                    clock=self._clock,
                    sleep=self._sleep,
                    async_sleep=self._async_sleep,
                    on_wait=report,
                )
                self._buckets[key] = b
            return b
