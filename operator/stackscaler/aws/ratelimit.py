"""A token bucket per (service, region), shared by every call and every retry.

boto3 calls run in worker threads; the bucket is acquired from botocore's
``before-send`` event, so each HTTP attempt, retries included, takes a
token. Waiting happens in the worker thread, never on the event loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
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
    """Thread-safe token bucket; ``clock`` and ``sleep`` are injectable for tests."""

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        if limit.rate <= 0 or limit.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.limit = limit
        self._clock, self._sleep, self._on_wait = clock, sleep, on_wait
        self._tokens = float(limit.burst)
        self._last = clock()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Take a token, possibly going into debt; return how long to wait."""
        with self._lock:
            now = self._clock()
            self._tokens = min(
                float(self.limit.burst), self._tokens + (now - self._last) * self.limit.rate
            )
            self._last = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.limit.rate

    def acquire(self) -> float:
        """Block until a token is available; return the seconds waited."""
        wait = self._reserve()
        if wait > 0:
            if self._on_wait is not None:
                self._on_wait(wait)
            self._sleep(wait)
        return wait


class RateLimiters:
    """One bucket per (service, region), created on first use."""

    def __init__(
        self,
        limits: dict[str, RateLimit] | None = None,
        on_wait: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self._limits = {**DEFAULT_LIMITS, **(limits or {})}
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()
        self._on_wait = on_wait

    def bucket(self, service: str, region: str) -> TokenBucket:
        key = (service, region)
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                hook = self._on_wait

                def report(seconds: float) -> None:
                    if hook is not None:
                        hook(service, region, seconds)

                b = TokenBucket(self._limits.get(service, RateLimit(5.0, 10)), on_wait=report)
                self._buckets[key] = b
            return b
