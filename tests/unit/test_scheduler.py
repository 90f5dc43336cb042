"""The per-resource scheduler: aligned ticks, wake-ups on spec changes, isolation."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from stackscaler.handlers.operator import parse_selector
from stackscaler.scheduler import Scheduler


def _body(uid: str, generation: int = 1, paused: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"uid": uid, "generation": generation, "name": uid}
    if paused is not None:
        meta["annotations"] = {"stackscaler.dev/paused": paused}
    return {"kind": "WebTier", "metadata": meta}


def test_next_delay_is_aligned_to_the_interval() -> None:
    s = Scheduler(lambda b: asyncio.sleep(0, 30.0), jitter=0.0, clock=lambda: 1_000_007.5)
    assert s.next_delay(30) == pytest.approx(12.5)  # next multiple of 30 is 1_000_020
    assert s.next_delay(0.1) == pytest.approx(0.5)  # never below one second


async def test_ticks_repeat_and_spec_changes_wake_at_once() -> None:
    seen: list[tuple[str, int]] = []

    async def tick(body: Mapping[str, Any]) -> float:
        seen.append((body["metadata"]["uid"], body["metadata"]["generation"]))
        return 3600.0  # far away: only a wake-up brings the next tick

    s = Scheduler(tick, jitter=0.0)
    s.upsert(_body("a"))
    await asyncio.sleep(0.05)
    assert seen == [("a", 1)]
    s.upsert(_body("a", generation=1))  # a status update: no wake-up
    await asyncio.sleep(0.05)
    assert seen == [("a", 1)]
    s.upsert(_body("a", generation=2))  # a new spec: at once
    await asyncio.sleep(0.05)
    assert seen == [("a", 1), ("a", 2)]
    s.upsert(_body("a", generation=2, paused="true"))  # pausing wakes it too
    await asyncio.sleep(0.05)
    assert len(seen) == 3
    await s.close()


async def test_a_failing_resource_does_not_stop_others_and_removal_cancels() -> None:
    calls: dict[str, int] = {"bad": 0, "good": 0}
    forgotten: list[str] = []

    async def tick(body: Mapping[str, Any]) -> float:
        uid = body["metadata"]["uid"]
        calls[uid] += 1
        if uid == "bad":
            raise RuntimeError("bug in one resource")
        return 3600.0

    s = Scheduler(tick, jitter=0.0, on_forget=lambda uid, body: forgotten.append(uid))
    s.upsert(_body("bad"))
    s.upsert(_body("good"))
    await asyncio.sleep(0.05)
    assert calls == {"bad": 1, "good": 1}
    assert len(s) == 2
    s.remove("good")
    assert forgotten == ["good"] and len(s) == 1
    await s.close()
    assert len(s) == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("app=web", (("app", "web"),)),
        ("app=web, tier", (("app", "web"), ("tier", None))),
    ],
)
def test_parse_selector(text: str, expected: tuple[tuple[str, str | None], ...]) -> None:
    assert parse_selector(text) == expected


@pytest.mark.parametrize("text", ["app!=web", "!tier"])
def test_unsupported_selectors_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="only key=value"):
        parse_selector(text)
