"""The lease fence: every write of a tick asks whether this replica still owns it.

The operator sets :data:`OWNER` for each tick's task (a ``contextvars`` value,
so every coroutine the tick awaits sees it and no other tick does). The AWS
caller checks it right before each attempt is sent, and the status and Event
writers before each write; a replica whose lease lapsed mid-tick (a pause, a
lost API server) raises :class:`NotOwner` there instead of acting on a
resource another replica may already own. Without leases nothing is set and
every check passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from stackscaler.errors import NotOwner

Owner = Callable[[], bool]

OWNER: ContextVar[tuple[str, Owner] | None] = ContextVar("stackscaler_owner", default=None)
"""(what is being reconciled, does this replica still own it?) for the current tick."""


def current() -> tuple[str, Owner] | None:
    """The fence of the running tick (capture it on the loop; check it anywhere)."""
    return OWNER.get()


def check(fence: tuple[str, Owner] | None, action: str) -> None:
    """Raise :class:`NotOwner` when the tick's replica no longer owns its resource."""
    if fence is not None and not fence[1]():
        raise NotOwner(
            f"{fence[0]}: this replica's lease on its shard lapsed; not sending {action} "
            "(another replica owns it now)",
            delay=2.0,
        )


class SendBy:
    """When the first write of a tick's apply must be sent at the latest.

    A change whose rate-limit token would come later is not sent at all
    (:class:`~stackscaler.errors.Deferred`): the tick ends before its
    resource's next slot and the next tick decides again with fresh data,
    instead of the late tick making its resource skip a slot. Only the first
    write can be deferred: once one is under way (``sent``), the rest of the
    same change waits its turn, so a change is never left half done.
    """

    def __init__(self, until: float, clock: Callable[[], float]) -> None:
        self.until, self._clock = until, clock
        self.sent = False

    def budget(self) -> float | None:
        """Seconds the next write may wait for its token; None once one was sent."""
        return None if self.sent else self.until - self._clock()


SEND_BY: ContextVar[SendBy | None] = ContextVar("stackscaler_send_by", default=None)
"""The send-by time of the running tick's apply phase (None: writes wait their turn)."""


@contextmanager
def sending_by(until: float, clock: Callable[[], float]) -> Iterator[SendBy]:
    """Writes made inside the block are deferred rather than sent after ``until``
    (a time on ``clock``)."""
    send_by = SendBy(until, clock)
    token = SEND_BY.set(send_by)
    try:
        yield send_by
    finally:
        SEND_BY.reset(token)
