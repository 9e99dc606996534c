"""The batch transport on the real broker: nothing is lost and every offset is committed; a worker
joining mid-stream shares the work without losing or double-counting anything; a worker killed in
the middle of a batch is replaced without loss.

The corpora here are keyed by subject: deduplication is per partition, so a copy of an event
produced under another key is taken at its own partition as well (and changes nothing there);
counting taken events against unique ones needs every copy on one partition."""

from __future__ import annotations

import asyncio

from services.tools.simulate import Faults
from tests.integration.harness import StartWorker, eventually, lag, produce
from tests.integration.test_customs import CUSTOMS, TOPIC

KEYED = Faults(duplicates=0.05, shuffle=0.1, late=0.05, invalid=0.0, binary=0.5)


async def test_every_record_is_processed_and_every_offset_committed(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    events, records = CUSTOMS.corpus(300, 31, faults=KEYED)
    worker = start_worker("customs", **CUSTOMS.fast)
    await produce(kafka_bootstrap, prefix + TOPIC, records)
    await CUSTOMS.settle(kafka_bootstrap, prefix)
    assert await lag(kafka_bootstrap, f"{prefix}tradepulse-customs", prefix + TOPIC) == 0
    assert worker.metric("tradepulse_events_consumed_total", topic=TOPIC) == len(records)
    taken = worker.metric("tradepulse_events_accepted_total", topic=TOPIC)
    duplicates = worker.metric("tradepulse_events_duplicate_total", topic=TOPIC)
    assert taken + duplicates == len(records)
    assert taken == len({(e["source"], e["id"]) for e in events})
    assert await CUSTOMS.differences(kafka_bootstrap, prefix, CUSTOMS.oracle(events)) == []


async def test_a_worker_joining_mid_stream_shares_the_work_and_nothing_is_lost_or_counted_twice(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    events, records = CUSTOMS.corpus(900, 32, faults=KEYED)
    first = start_worker("customs", **CUSTOMS.fast)
    third = len(records) // 3
    await produce(kafka_bootstrap, prefix + TOPIC, records[:third])
    assert await eventually(lambda: CUSTOMS.consumed([first]) >= third, timeout_s=60)

    async def keep_producing() -> None:  # records keep coming while the group rebalances
        for i in range(third, len(records), 200):
            await produce(kafka_bootstrap, prefix + TOPIC, records[i : i + 200])
            await asyncio.sleep(0.05)

    producing = asyncio.create_task(keep_producing())
    second = start_worker("customs", **CUSTOMS.fast)
    await producing
    await CUSTOMS.settle(kafka_bootstrap, prefix)
    workers = [first, second]
    assert second.metric("tradepulse_events_consumed_total", topic=TOPIC) > 0, "no partition moved"
    taken = sum(w.metric("tradepulse_events_accepted_total", topic=TOPIC) for w in workers)
    assert taken == len({(e["source"], e["id"]) for e in events}), "an event was lost or taken twice"
    assert await CUSTOMS.differences(kafka_bootstrap, prefix, CUSTOMS.oracle(events)) == []


async def test_a_worker_killed_in_the_middle_of_a_batch_is_replaced_without_loss(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    events, records = CUSTOMS.corpus(900, 33)
    first = start_worker("customs", **{**CUSTOMS.fast, "TRADEPULSE_BATCH_MAX_EVENTS": "50"})
    await produce(kafka_bootstrap, prefix + TOPIC, records)
    assert await eventually(lambda: CUSTOMS.consumed([first]) >= len(records) // 3, timeout_s=60)
    first.kill()  # SIGKILL: batches in hand, staged state, unflushed outputs and all
    start_worker("customs", **CUSTOMS.fast)
    await CUSTOMS.settle(kafka_bootstrap, prefix)
    assert await CUSTOMS.differences(kafka_bootstrap, prefix, CUSTOMS.oracle(events)) == []
    assert await lag(kafka_bootstrap, f"{prefix}tradepulse-customs", prefix + TOPIC) == 0
