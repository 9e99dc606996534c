"""Batches taken from an agent's channel queue (services/common/batches.py).

The channel here is a stand-in with the two things :func:`batches` uses of a Faust channel
iterator: ``queue`` and ``__anext__``; the real one is exercised by every integration test.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

from services.common.batches import batches
from services.common.worker import tune_gc


class _Channel:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False

    def __aiter__(self) -> _Channel:
        return self

    async def __anext__(self) -> Any:
        if self.closed and self.queue.empty():
            raise StopAsyncIteration
        return await self.queue.get()


class _Stream:
    def __init__(self) -> None:
        self.channel = _Channel()


async def _first(it: AsyncIterator[list[Any]]) -> list[Any]:
    return await asyncio.wait_for(it.__anext__(), timeout=5)


async def test_a_batch_is_cut_at_max_events_and_the_rest_follows() -> None:
    stream = _Stream()
    for i in range(7):
        stream.channel.queue.put_nowait(i)
    it = batches(stream, 3, within_s=0.5)
    started = time.monotonic()
    assert await _first(it) == [0, 1, 2]
    assert await _first(it) == [3, 4, 5]
    assert time.monotonic() - started < 0.4  # full batches do not wait for within_s
    stream.channel.queue.put_nowait(7)
    assert await _first(it) == [6, 7]


async def test_a_batch_that_is_not_full_leaves_after_within_s() -> None:
    stream = _Stream()
    stream.channel.queue.put_nowait("a")
    it = batches(stream, 100, within_s=0.05)
    started = time.monotonic()
    assert await _first(it) == ["a"]
    assert 0.04 <= time.monotonic() - started < 2.0


async def test_events_arriving_while_a_batch_fills_join_it() -> None:
    stream = _Stream()
    stream.channel.queue.put_nowait(1)

    async def later() -> None:
        await asyncio.sleep(0.02)
        stream.channel.queue.put_nowait(2)

    task = asyncio.create_task(later())
    it = batches(stream, 100, within_s=0.2)
    assert await _first(it) == [1, 2]
    await task


async def test_a_closed_channel_ends_the_batches() -> None:
    stream = _Stream()
    stream.channel.closed = True
    it = batches(stream, 10, within_s=0.01)
    assert [b async for b in it] == []


class _ClosingQueue(asyncio.Queue[Any]):
    """Like Faust's queue when the channel is closed: ``get_nowait`` raises what was thrown in."""

    closing = False

    def get_nowait(self) -> Any:
        if self.closing:
            raise StopAsyncIteration
        return super().get_nowait()


async def test_events_taken_before_the_channel_closes_are_still_handed_out() -> None:
    stream = _Stream()
    queue = stream.channel.queue = _ClosingQueue()
    for i in range(3):
        queue.put_nowait(i)
    it = batches(stream, 10, within_s=5.0)
    first = asyncio.ensure_future(_first(it))
    await asyncio.sleep(0.02)  # the batch holds 0, 1, 2 and waits for more
    queue.put_nowait(3)
    queue.closing = True
    assert await first == [0, 1, 2]
    assert [b async for b in it] == []


def test_tune_gc_sets_the_young_generation_threshold() -> None:
    before = gc.get_threshold()
    try:
        tune_gc(12_345)
        assert gc.get_threshold()[0] == 12_345
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
