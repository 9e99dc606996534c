"""Batches taken from an agent's channel queue (services/runtime/batches.py).

The channel here is a stand-in with the two things :func:`batches` uses of a Faust channel
iterator: ``queue`` and ``__anext__``; the real one is exercised by every integration test.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.runtime import batches as batches_module
from services.runtime.batches import batches
from services.runtime.worker import tune_gc


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


async def test_a_batch_closes_when_the_source_goes_quiet() -> None:
    stream = _Stream()
    stream.channel.queue.put_nowait("a")
    it = batches(stream, 100, within_s=30.0)
    started = time.monotonic()
    assert await _first(it) == ["a"]  # not held for within_s: nothing else was coming
    assert time.monotonic() - started < 1.0


async def _trickle(stream: _Stream, every_s: float, n: int) -> None:
    for i in range(n):
        await asyncio.sleep(every_s)
        stream.channel.queue.put_nowait(i)


async def test_a_steady_stream_is_cut_after_within_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batches_module, "QUIET_S", 0.1)  # wide enough for a busy test machine
    stream = _Stream()
    stream.channel.queue.put_nowait("first")
    task = asyncio.create_task(_trickle(stream, 0.01, 100))  # an event every 10 ms for 1 s
    it = batches(stream, 1000, within_s=0.3)
    started = time.monotonic()
    batch = await _first(it)
    elapsed = time.monotonic() - started
    task.cancel()
    assert batch[0] == "first"
    assert len(batch) > 5, "events that kept coming joined the batch"
    assert 0.25 <= elapsed < 0.9, "the batch left at within_s, not when the events stopped"


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


async def test_events_taken_before_the_channel_closes_are_still_handed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batches_module, "QUIET_S", 0.2)  # the batch is still open when it closes
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
