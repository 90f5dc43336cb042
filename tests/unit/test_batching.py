"""The Coalescer: a batch goes when full, when requests stop coming, or at its window's end."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from stackscaler.batching import Coalescer


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def flush(self, key: str, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        return [i * 10 for i in items]


async def test_a_wave_larger_than_a_call_goes_in_full_batches_at_once() -> None:
    rec = Recorder()
    co: Coalescer[str, int, int] = Coalescer(rec.flush, quiet=30.0, window=60.0, max_batch=100)
    tasks = [asyncio.create_task(co.submit("k", i)) for i in range(200)]
    # both full batches go without waiting for the (long) quiet time
    results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
    assert results == [i * 10 for i in range(200)]
    assert [len(b) for b in rec.batches] == [100, 100]


async def test_the_rest_of_a_wave_goes_once_requests_stop_coming() -> None:
    rec = Recorder()
    co: Coalescer[str, int, int] = Coalescer(rec.flush, quiet=0.05, window=5.0, max_batch=100)
    tasks = [asyncio.create_task(co.submit("k", i)) for i in range(250)]
    assert await asyncio.gather(*tasks) == [i * 10 for i in range(250)]
    assert [len(b) for b in rec.batches] == [100, 100, 50]


async def test_requests_that_keep_coming_stay_in_one_batch_until_the_window_ends() -> None:
    """Arrivals closer together than ``quiet`` keep the batch open (a wave that takes the
    loop a while to start), but never past ``window`` after the first one."""
    rec = Recorder()
    co: Coalescer[str, int, int] = Coalescer(rec.flush, quiet=2.0, window=4.0)
    first = [asyncio.create_task(co.submit("k", i)) for i in range(3)]
    for i in range(3, 6):  # later arrivals, well within the quiet time of each other
        await asyncio.sleep(0)
        first.append(asyncio.create_task(co.submit("k", i)))
    await asyncio.gather(*first)
    assert rec.batches == [[0, 1, 2, 3, 4, 5]]


async def test_a_stream_that_never_pauses_is_cut_at_the_window() -> None:
    rec = Recorder()
    co: Coalescer[str, int, int] = Coalescer(rec.flush, quiet=0.2, window=0.3)
    tasks = []
    for i in range(40):  # an arrival every 20 ms for about 0.8 s: never quiet for 0.2 s
        tasks.append(asyncio.create_task(co.submit("k", i)))
        await asyncio.sleep(0.02)
    await asyncio.gather(*tasks)
    assert len(rec.batches) >= 2
    assert sorted(i for b in rec.batches for i in b) == list(range(40))


async def test_keys_batch_apart() -> None:
    rec = Recorder()
    co: Coalescer[str, int, int] = Coalescer(rec.flush, quiet=0.01, window=1.0)
    await asyncio.gather(co.submit("a", 1), co.submit("b", 2), co.submit("a", 3))
    assert sorted(rec.batches) == [[1, 3], [2]]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="quiet <= window"):
        Coalescer(Recorder().flush, quiet=1.0, window=0.5)
    with pytest.raises(ValueError, match="max_batch"):
        Coalescer(Recorder().flush, max_batch=0)
