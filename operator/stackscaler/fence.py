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

from collections.abc import Callable
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
