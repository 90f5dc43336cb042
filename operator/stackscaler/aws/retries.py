"""botocore's ``standard`` retry mode, decided outside botocore.

Clients make one attempt each (``total_max_attempts: 1``);
:class:`~stackscaler.aws.clients.AwsCaller` runs the attempts on the event
loop, so the backoff between them, and the token each of them takes, are
awaited without holding a worker thread. Which failures are retried, and how
long to back off, are botocore's own standard-mode classifiers
(``botocore.retries.standard``): throttling error codes and HTTP 429,
transient error codes, HTTP 500/502/503/504, connection and read-timeout
errors, errors the service model marks retryable; truncated exponential
backoff with full jitter (base 1 s for throttling, 50 ms otherwise), capped
at 20 s, raised to an ``x-amz-retry-after`` header when there is one.
Not carried over: botocore's per-client retry quota; the token buckets
bound every attempt already.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from botocore.retries import standard

MAX_BACKOFF = 20.0
"""Seconds, as botocore's standard mode."""


@dataclass(frozen=True)
class _HttpResponse:
    """What botocore's classifiers read of an HTTP response, rebuilt from a ClientError."""

    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""


def _context(exc: BaseException, attempt: int, operation_model: Any) -> Any:
    """A ``botocore.retries.standard.RetryContext`` for the failure of attempt ``attempt``."""
    if isinstance(exc, ClientError):
        meta = exc.response.get("ResponseMetadata", {}) or {}
        headers = {str(k).lower(): str(v) for k, v in (meta.get("HTTPHeaders") or {}).items()}
        status = int(meta.get("HTTPStatusCode") or 0)
        return standard.RetryContext(
            attempt_number=attempt,
            operation_model=operation_model,
            parsed_response=exc.response,
            http_response=_HttpResponse(status, headers) if status else None,
        )
    return standard.RetryContext(
        attempt_number=attempt, operation_model=operation_model, caught_exception=exc
    )


NOT_RETRIED = frozenset({("dynamodb", "UpdateTable", "LimitExceededException")})
"""(service, operation, error code) that botocore would retry and retrying cannot fix:
DynamoDB refuses a decrease beyond the UTC day's budget with LimitExceededException,
a throttling code to botocore; the budget comes back in an hour at the earliest."""


def _final(exc: BaseException, operation_model: Any) -> bool:
    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    service = getattr(getattr(operation_model, "service_model", None), "service_name", None)
    return (service, getattr(operation_model, "name", None), code) in NOT_RETRIED


class RetryPolicy:
    """Whether a failed attempt is retried, and after how long (standard mode).

    ``random`` is the jitter source (``random.random``), injectable for tests.
    """

    def __init__(
        self,
        max_attempts: int,
        *,
        random: Callable[[], float] = random.random,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self._conditions = standard.StandardRetryConditions(max_attempts=max_attempts)
        self._throttling = standard.ThrottlingErrorDetector(standard.RetryEventAdapter())
        self._random, self._max_backoff = random, max_backoff

    def delay(self, exc: BaseException, attempt: int, operation_model: Any) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``; None: raise ``exc`` now.

        ``attempt`` is 1-based. Without the operation's model (the failure came
        before there was a client), nothing is retried.
        """
        if operation_model is None or _final(exc, operation_model):
            return None
        context = _context(exc, attempt, operation_model)
        if not self._conditions.is_retryable(context):
            return None
        backoff = standard.ExponentialBackoff(
            max_backoff=self._max_backoff,
            random=self._random,
            service_name=operation_model.service_model.service_id.hyphenize(),
            throttling_detector=self._throttling,
        )
        return float(backoff.delay_amount(context))
