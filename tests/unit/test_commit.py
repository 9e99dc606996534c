"""The commit path's background flush (services/runtime/commit.py, step 5-6): every submitter gets
its turn. Under load the input agent always had a new batch ready, and the timers' work (partials,
indicator records) waited behind it for 11 s in a 12 s run: stage two saw three bundles in all."""

from __future__ import annotations

import asyncio

import pytest

from services.engine.state import MemoryStore
from services.runtime.commit import Flusher


class SlowStore(MemoryStore):
    """A store whose flush takes a broker round trip."""

    async def flush(self) -> None:
        await asyncio.sleep(0.005)
        await super().flush()


async def _busy_agent(flusher: Flusher, stop: asyncio.Event, acked: list[str], name: str) -> None:
    """An agent that always has its next batch at hand (processing takes no time)."""
    while not stop.is_set():

        async def ack() -> None:
            acked.append(name)

        await flusher.submit(ack, 1)


@pytest.mark.asyncio
async def test_a_timer_is_flushed_within_two_flushes_however_busy_the_agents() -> None:
    store = SlowStore()
    flusher = Flusher(store)
    stop, acked = asyncio.Event(), list[str]()
    agents = [asyncio.create_task(_busy_agent(flusher, stop, acked, f"agent{i}")) for i in range(3)]
    await asyncio.sleep(0.05)  # the agents are in full swing
    before = store.flushes
    await asyncio.wait_for(flusher.submit(None), timeout=5)
    waited = store.flushes - before
    stop.set()
    await asyncio.gather(*agents)
    await flusher.drain()
    assert waited <= 2, f"the timer's work waited for {waited} flushes"
    assert {"agent0", "agent1", "agent2"} <= set(acked)  # and no agent starved either


@pytest.mark.asyncio
async def test_nothing_is_acknowledged_before_the_flush_that_carried_it() -> None:
    store = SlowStore()
    flusher = Flusher(store)
    seen_flushes: list[int] = []

    async def ack() -> None:
        seen_flushes.append(store.flushes)

    store.add_outputs([])
    await flusher.submit(ack, 1)
    assert seen_flushes == []  # submit returned before the flush was done: it runs in the background
    await flusher.drain()
    assert seen_flushes == [1]
    assert flusher.acknowledged == 1
