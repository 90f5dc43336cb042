"""The per-resource scheduler: aligned ticks, wake-ups on spec changes, isolation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from stackscaler.handlers.operator import parse_selector
from stackscaler.scheduler import Scheduler
from stackscaler.sharding import fraction_of


def _body(uid: str, generation: int = 1, paused: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"uid": uid, "generation": generation, "name": uid}
    if paused is not None:
        meta["annotations"] = {"stackscaler.dev/paused": paused}
    return {"kind": "WebTier", "metadata": meta}


def test_next_delay_is_aligned_to_the_interval() -> None:
    s = Scheduler(lambda b: asyncio.sleep(0, 30.0), jitter=0.0, clock=lambda: 1_000_007.5)
    assert s.next_delay(30) == pytest.approx(12.5)  # next multiple of 30 is 1_000_020
    assert s.next_delay(0.1) == pytest.approx(0.5)  # never below one second


def test_next_delay_adds_the_phase() -> None:
    s = Scheduler(lambda b: asyncio.sleep(0, 30.0), jitter=0.2, clock=lambda: 1_000_007.5)
    assert s.next_delay(30, 0.15) == pytest.approx(12.65)


def test_next_delay_to_a_sub_slot() -> None:
    s = Scheduler(lambda b: asyncio.sleep(0, 30.0), jitter=0.2, clock=lambda: 1_000_007.5)
    # slots at 1_000_020 + k * 30; now is 17.5 s after one
    assert s.next_delay(30, 0.15, offset=7.5) == pytest.approx(20.15)
    assert s.next_delay(30, 0.0, offset=15.0) == pytest.approx(27.5)
    assert s.next_delay(30, 0.0, offset=22.5) == pytest.approx(5.0)


async def test_a_fleet_above_the_wave_size_is_split_into_equal_sub_waves_by_rank() -> None:
    """2,000 resources on a 30 s poll tick 500 at a time at :00, :07.5, :15 and :22.5
    (here: wave size 2); a resource keeps its sub-wave while the fleet is the same."""
    s = Scheduler(lambda b: asyncio.sleep(0, 3600.0), jitter=0.0, wave_size=2)
    uids = [f"uid-{i}" for i in range(7)]
    for uid in uids[:2]:
        s.upsert(_body(uid))
    assert {s.offset(u, 30) for u in uids[:2]} == {0.0}  # one wave: everyone at the slot
    for uid in uids[2:6]:
        s.upsert(_body(uid))
    ranked = sorted(uids[:6], key=fraction_of)
    assert [s.offset(u, 30) for u in ranked] == [0.0, 0.0, 10.0, 10.0, 20.0, 20.0]
    s.upsert(_body(uids[6]))  # seven: four sub-waves of at most two
    offsets = [s.offset(u, 30) for u in sorted(uids, key=fraction_of)]
    assert offsets == sorted(offsets) and set(offsets) == {0.0, 7.5, 15.0, 22.5}
    assert max(offsets.count(o) for o in set(offsets)) == 2
    s.remove(uids[6])
    assert [s.offset(u, 30) for u in ranked] == [0.0, 0.0, 10.0, 10.0, 20.0, 20.0]
    # sub-slots at least MIN_SUBSLOT (2 s) apart: a 5 s poll has at most two
    assert {s.offset(u, 5) for u in uids[:6]} == {0.0, 2.5}
    await s.close()


async def test_every_wave_starts_the_resources_in_the_same_order_by_their_phase() -> None:
    """The phase comes from the uid: a resource lands in the same read batch every wave
    (a random jitter per wave reshuffled the batches, and so the decisions' ages)."""
    uids = [f"uid-{i:02}" for i in range(16)]
    slots: dict[int, list[str]] = {}

    async def tick(body: Mapping[str, Any]) -> float:
        # every phase is below 0.1 s: an aligned wave's ticks share one 0.25 s window
        slots.setdefault(int(time.time() // 0.25), []).append(body["metadata"]["uid"])
        return 0.25

    def waves() -> list[list[str]]:
        """Full aligned waves (the first ticks are unaligned and may span two windows)."""
        return [w for _, w in sorted(slots.items())[2:] if len(w) == len(uids)]

    s = Scheduler(tick, jitter=0.1, min_delay=0.001)
    for uid in reversed(uids):
        s.upsert(_body(uid))
    await _until(lambda: len(waves()) >= 3, "three full waves")
    await s.close()
    by_phase = sorted(uids, key=fraction_of)
    assert by_phase != uids  # the phase, not the order they came in or their names
    assert all(w == by_phase for w in waves()), waves()


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


async def _until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait until ``condition`` holds: a bounded poll, never a timing assert."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_a_failing_resource_is_retried_does_not_stop_others_and_removal_cancels() -> None:
    calls: dict[str, int] = {"bad": 0, "good": 0}
    forgotten: list[str] = []

    async def tick(body: Mapping[str, Any]) -> float:
        uid = body["metadata"]["uid"]
        calls[uid] += 1
        if uid == "bad":
            raise RuntimeError("bug in one resource")
        return 3600.0  # far away: only a wake-up brings the good one's next tick

    s = Scheduler(
        tick,
        jitter=0.0,
        on_forget=lambda uid, body: forgotten.append(uid),
        error_delay=0.001,
        max_error_delay=0.002,
    )
    s.upsert(_body("bad"))
    s.upsert(_body("good"))
    # the failing resource is retried, again and again (its task did not die) ...
    await _until(lambda: calls["bad"] >= 5, "the failing resource to be retried")
    # ... while the good one still ticks: a new spec wakes it at once, twice
    await _until(lambda: calls["good"] == 1, "the good resource's first tick")
    s.upsert(_body("good", generation=2))
    await _until(lambda: calls["good"] == 2, "the good resource's second tick")
    s.upsert(_body("good", generation=3))
    await _until(lambda: calls["good"] == 3, "the good resource's third tick")
    assert len(s) == 2
    s.remove("good")
    assert forgotten == ["good"] and len(s) == 1
    s.upsert(_body("good", generation=4))  # a new resource with the uid: not the old task
    await _until(lambda: calls["good"] == 4, "the re-added resource's tick")
    s.remove("bad")
    retries = calls["bad"]
    await asyncio.sleep(0.02)  # ten retry delays: a removed resource is not retried
    assert calls["bad"] == retries
    await s.close()
    assert len(s) == 0


def test_error_delay_doubles_up_to_the_cap() -> None:
    s = Scheduler(lambda b: asyncio.sleep(0, 30.0), error_delay=30.0, max_error_delay=300.0)
    assert [s.error_delay(n) for n in range(1, 7)] == [30.0, 60.0, 120.0, 240.0, 300.0, 300.0]
    assert s.error_delay(10_000) == 300.0  # no overflow


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_error_delays_must_be_positive_and_ordered(base: float, cap: float) -> None:
    with pytest.raises(ValueError, match="error_delay"):
        Scheduler(lambda b: asyncio.sleep(0, 30.0), error_delay=base, max_error_delay=cap)


async def test_repeated_failures_back_off_and_a_success_resets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The retry delay the loop picks doubles per failure in a row up to the cap and
    starts over after a successful tick (read from its log: through the real loop,
    without measuring time)."""
    outcomes = iter(["fail"] * 4 + ["ok"] + ["fail"] * 2)
    calls = 0

    async def tick(body: Mapping[str, Any]) -> float:
        nonlocal calls
        calls += 1
        outcome = next(outcomes, "done")
        if outcome == "fail":
            raise RuntimeError("AWS is down")
        return 0.0 if outcome == "ok" else 3600.0  # ok: the next tick at once

    s = Scheduler(tick, jitter=0.0, min_delay=0.001, error_delay=0.001, max_error_delay=0.004)
    with caplog.at_level("ERROR", logger="stackscaler.scheduler"):
        s.upsert(_body("a"))
        await _until(lambda: calls == 8, "eight ticks")
    await s.close()
    delays = [r.args[-1] for r in caplog.records]  # type: ignore[index]
    assert delays == [0.001, 0.002, 0.004, 0.004, 0.001, 0.002]
    assert all(r.exc_info and "AWS is down" in str(r.exc_info[1]) for r in caplog.records)


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
