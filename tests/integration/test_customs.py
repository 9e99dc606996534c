"""The customs pipeline on the real broker: a simulated corpus with duplicates, shuffling, late
events, invalid records and records not keyed by subject gives indicator records equal to a plain
batch computation; also across a restart, and with two workers."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from typing import Any

import orjson

from services.customs.simulator import simulate
from services.tools.simulate import Faults, Record, perturb
from tests.batch_customs import batch, compare
from tests.integration.harness import StartWorker, WorkerProcess, caught_up, eventually, produce, read_to_end

TOPIC = "customs.events.v1"
START = datetime.fromisoformat("2025-03-01T00:00:00+08:00").timestamp()
FAULTS = Faults(duplicates=0.05, shuffle=0.1, late=0.05, invalid=0.02, binary=0.5, rekey=0.1)
FAST = {
    "TRADEPULSE_CUSTOMS_INDICATOR_INTERVAL_S": "0.5",
    "TRADEPULSE_CUSTOMS_IDLE_AFTER_S": "2",
    "TRADEPULSE_BATCH_MAX_EVENTS": "500",
}


def corpus(cases: int, seed: int) -> tuple[list[dict[str, Any]], list[Record]]:
    events = simulate(cases=cases, seed=seed, start_s=START, span_s=86400)
    return events, perturb(events, FAULTS, random.Random(seed))


async def latest(bootstrap: str, topic: str) -> dict[str, dict[str, Any]]:
    """The latest revision of every indicator key, once the topic has stopped growing."""
    seen = -1
    records: list[Any] = []
    for _ in range(30):
        records = await read_to_end(bootstrap, topic)
        if len(records) == seen:
            break
        seen = len(records)
        await asyncio.sleep(1.5)  # longer than the test's publish interval
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        event = orjson.loads(r.value)
        assert event["subject"] == r.key.decode()
        data = event["data"]
        if data["revision"] >= out.get(r.key.decode(), {}).get("revision", 0):
            out[r.key.decode()] = data
    return out


def consumed(workers: list[WorkerProcess]) -> float:
    return sum(w.metric("tradepulse_events_consumed_total", topic=TOPIC) for w in workers)


async def _run(bootstrap: str, prefix: str, workers: list[WorkerProcess], records: list[Record]) -> None:
    """Publish, then wait until every input and internal record has been processed and committed."""
    if records:
        await produce(bootstrap, prefix + TOPIC, records)
        assert await eventually(lambda: consumed(workers) >= len(records), timeout_s=120), consumed(workers)
    internal = [f"{prefix}tradepulse-customs-{name}" for name in ("links", "partials")]
    await caught_up(bootstrap, f"{prefix}tradepulse-customs", [prefix + TOPIC, *internal])


async def test_indicators_equal_a_batch_computation_despite_faulty_input(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    events, records = corpus(cases=400, seed=11)
    worker = start_worker("customs", **FAST)
    await _run(kafka_bootstrap, prefix, [worker], records)
    got = await latest(kafka_bootstrap, prefix + "indicators.customs.v1")
    expected = batch(events)
    assert len(expected) > 100
    assert compare(expected, got) == []
    assert worker.metric("tradepulse_events_invalid_total", topic=TOPIC) > 0
    assert worker.metric("tradepulse_events_duplicate_total", topic=TOPIC) > 0
    assert worker.metric("tradepulse_late_events_total") >= 0
    assert worker.metric("tradepulse_customs_release_seconds_count") > 0
    assert worker.metric("tradepulse_customs_risk_decisions_total") > 0


async def test_same_records_after_a_restart_mid_stream(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    """The worker is stopped (SIGTERM) while it is still working through the stream."""
    events, records = corpus(cases=300, seed=12)
    first = start_worker("customs", **{**FAST, "TRADEPULSE_BATCH_MAX_EVENTS": "50"})
    await produce(kafka_bootstrap, prefix + TOPIC, records)
    assert await eventually(lambda: consumed([first]) >= len(records) // 3, timeout_s=60)
    seen = consumed([first])
    assert first.stop() == 0
    assert seen < len(records), "the first worker finished before it was stopped"
    second = start_worker("customs", **FAST)
    await _run(kafka_bootstrap, prefix, [second], [])
    got = await latest(kafka_bootstrap, prefix + "indicators.customs.v1")
    assert compare(batch(events), got) == []


async def test_two_workers_give_the_same_records_as_one(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    events, records = corpus(cases=300, seed=13)
    one = start_worker("customs", **FAST)
    two = start_worker("customs", **FAST)
    await _run(kafka_bootstrap, prefix, [one, two], records)
    got = await latest(kafka_bootstrap, prefix + "indicators.customs.v1")
    assert compare(batch(events), got) == []
    assert one.metric("tradepulse_events_consumed_total", topic=TOPIC) > 0
    assert two.metric("tradepulse_events_consumed_total", topic=TOPIC) > 0
