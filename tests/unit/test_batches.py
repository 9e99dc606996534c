"""The agent side of the batch transport (services/runtime/transport.py): how record batches taken
from an agent's queue are grouped. The channel and app here are stand-ins with only what
:func:`record_batches` reads; the transport itself runs against the real broker in
tests/integration/test_transport.py."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from services.runtime import transport
from services.runtime.transport import RecordBatch, record_batches
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
        self.tracked: list[RecordBatch] = []
        self.flow = True
        self.app = SimpleNamespace(
            consumer=SimpleNamespace(track_message=self.tracked.append),
            flow_control=SimpleNamespace(is_active=lambda: self.flow),
            consumer_generation_id=1,
            monitor=SimpleNamespace(stream_inbound_time={}),  # what Faust's livelock check reads
        )

    def put(self, n: int, *, generation: int = 1) -> RecordBatch:
        records = [SimpleNamespace(offset=i) for i in range(n)]
        batch = RecordBatch(TP("t", 0), records, generation, None)  # type: ignore[arg-type]
        self.channel.queue.put_nowait(batch)
        return batch


async def _first(it: AsyncIterator[list[RecordBatch]]) -> list[RecordBatch]:
    return await asyncio.wait_for(it.__anext__(), timeout=5)


async def test_batches_are_grouped_up_to_max_records_and_the_rest_follows() -> None:
    stream = _Stream()
    a, b, c = stream.put(2), stream.put(2), stream.put(2)
    it = record_batches(stream, 3, within_s=0.5)
    started = time.monotonic()
    assert await _first(it) == [a, b]  # a group is closed once it holds max_records
    assert time.monotonic() - started < 0.4  # a full group does not wait for within_s
    d = stream.put(1)
    assert await _first(it) == [c, d]
    assert stream.tracked == [a, b, c, d]  # each is tracked (rebalances wait for it) when taken


async def test_a_group_closes_when_the_source_goes_quiet() -> None:
    stream = _Stream()
    a = stream.put(1)
    it = record_batches(stream, 100, within_s=30.0)
    started = time.monotonic()
    assert await _first(it) == [a]  # not held for within_s: nothing else was coming
    assert time.monotonic() - started < 1.0


async def _trickle(stream: _Stream, every_s: float, n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(every_s)
        stream.put(1)


async def test_a_steady_stream_is_cut_after_within_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "QUIET_S", 0.1)  # wide enough for a busy test machine
    stream = _Stream()
    stream.put(1)
    task = asyncio.create_task(_trickle(stream, 0.01, 100))  # a batch every 10 ms for 1 s
    it = record_batches(stream, 1000, within_s=0.3)
    started = time.monotonic()
    taken = await _first(it)
    elapsed = time.monotonic() - started
    task.cancel()
    assert len(taken) > 5, "batches that kept coming joined the group"
    assert 0.25 <= elapsed < 0.9, "the group left at within_s, not when the batches stopped"


async def test_batches_of_an_old_generation_or_while_flow_is_stopped_are_dropped_untracked() -> None:
    stream = _Stream()
    stream.put(1, generation=0)
    current = stream.put(1)
    it = record_batches(stream, 10, within_s=0.05)
    assert await _first(it) == [current]
    stream.flow = False  # a rebalance under way
    stream.put(1)
    pending = asyncio.ensure_future(_first(it))
    await asyncio.sleep(0.05)  # taken and dropped
    stream.flow = True
    later = stream.put(1)
    assert await pending == [later]
    assert stream.tracked == [current, later]


async def test_a_closed_channel_ends_the_groups() -> None:
    stream = _Stream()
    stream.channel.closed = True
    assert [g async for g in record_batches(stream, 10, within_s=0.01)] == []


class _ClosingQueue(asyncio.Queue[Any]):
    """Like Faust's queue when the channel is closed: ``get_nowait`` raises what was thrown in."""

    closing = False

    def get_nowait(self) -> Any:
        if self.closing:
            raise StopAsyncIteration
        return super().get_nowait()


async def test_batches_taken_before_the_channel_closes_are_still_handed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transport, "QUIET_S", 0.2)  # the group is still open when it closes
    stream = _Stream()
    queue = stream.channel.queue = _ClosingQueue()
    a, b = stream.put(1), stream.put(1)
    it = record_batches(stream, 10, within_s=5.0)
    first = asyncio.ensure_future(_first(it))
    await asyncio.sleep(0.02)  # the group holds a and b and waits for more
    stream.put(1)
    queue.closing = True
    assert await first == [a, b]
    assert [g async for g in it] == []


def test_tune_gc_sets_the_young_generation_threshold() -> None:
    before = gc.get_threshold()
    try:
        tune_gc(12_345)
        assert gc.get_threshold()[0] == 12_345
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
