"""The one error tree of stackscaler.

Every layer raises these; boundaries translate foreign errors into them
(``raise ... from exc``) and only the kopf handlers turn them into kopf's
``TemporaryError`` / ``PermanentError``. This module is pure and may be
imported from every layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class StackscalerError(Exception):
    """Base of every error stackscaler raises on purpose."""

    #: Whether retrying the same operation later can succeed.
    temporary: bool = False


class PermanentError(StackscalerError):
    """Retrying will not help until something (a spec, a permission) changes."""


class TemporaryError(StackscalerError):
    """Retrying later can succeed; ``delay`` is the suggested wait in seconds."""

    temporary = True

    def __init__(self, message: str, *, delay: float = 30.0) -> None:
        super().__init__(message)
        self.delay = delay


@dataclass(frozen=True)
class FieldError:
    """One problem in a user's document, located by its field path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidSpec(PermanentError):
    """A resource's spec is invalid. Carries every problem found, not just the first."""

    def __init__(self, errors: Sequence[FieldError], *, source: str = "") -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(str(e) for e in self.errors))


class TargetNotFound(PermanentError):
    """The scaled resource (ASG, DB instance, replication group, workload) does not exist."""


class TargetConflict(PermanentError):
    """Another, older resource manages the same target; this one does nothing."""


class AccessDenied(PermanentError):
    """The operator's identity lacks a permission; the message names the action."""


class MetricUnavailable(TemporaryError):
    """A metric could not be read (source down, empty result): its value is unknown."""


class MetricStale(MetricUnavailable):
    """A metric's newest sample is older than its staleness limit: unknown, never zero."""


class TierCycle(PermanentError):
    """Tier sources form a cycle (a resource that follows itself, directly or through
    others): the metric that closes it is unknown until one of the specs changes."""


class Throttled(TemporaryError):
    """The provider throttled us; retry after ``delay`` seconds."""


class NotOwner(TemporaryError):
    """This replica's lease on the resource's shard lapsed: it may write nothing more."""


class Deferred(TemporaryError):
    """A change was not sent: its turn in the client-side write limit would come
    after the tick's send-by time. Nothing was sent; the next tick decides again."""


class KubernetesUnavailable(TemporaryError):
    """The Kubernetes API server cannot be reached (connection, TLS, timeout) or answers
    with a server error."""


class NotInstalled(PermanentError):
    """The cluster does not serve a stackscaler kind: its CRD is not installed."""


class DecreaseRefused(PermanentError):
    """DynamoDB refused to lower a table's (or index's) provisioned capacity: it counts
    the UTC day's decreases as spent. Permanent until ``retry_at`` (epoch seconds), when
    the next decrease is earned; reported once, and no decrease is sent before then."""

    def __init__(self, message: str, *, retry_at: float) -> None:
        super().__init__(message)
        self.retry_at = retry_at
