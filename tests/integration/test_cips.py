"""The CIPS pipeline on the real broker: records equal a batch computation (amounts summed as exact
decimals), also across a restart mid-stream; bad input goes to the dead-letter topic."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from services.cips.simulator import simulate
from services.tools.simulate import Faults, Record, perturb
from tests.batch_cips import batch
from tests.batch_customs import compare
from tests.integration.harness import StartWorker, WorkerProcess, caught_up, eventually, produce, read_all
from tests.integration.test_customs import latest

TOPIC = "cips.events.v1"
START = datetime.fromisoformat("2025-03-03T00:00:00+08:00").timestamp()
FAST = {
    "TRADEPULSE_CIPS_INDICATOR_INTERVAL_S": "0.5",
    "TRADEPULSE_CIPS_IDLE_AFTER_S": "2",
    "TRADEPULSE_BATCH_MAX_EVENTS": "500",
}


def corpus(cases: int, seed: int) -> tuple[list[dict[str, Any]], list[Record]]:
    events = simulate(cases=cases, seed=seed, start_s=START, span_s=2 * 86400)
    faults = Faults(duplicates=0.05, shuffle=0.1, late=0.05, invalid=0.02, binary=0.5, rekey=0.1)
    return events, perturb(events, faults, random.Random(seed))


def consumed(workers: list[WorkerProcess]) -> float:
    return sum(w.metric("tradepulse_events_consumed_total", topic=TOPIC) for w in workers)


async def _settle(bootstrap: str, prefix: str) -> None:
    internal = [f"{prefix}tradepulse-cips-{name}" for name in ("links", "partials")]
    await caught_up(bootstrap, f"{prefix}tradepulse-cips", [prefix + TOPIC, *internal])


async def test_cips_indicators_equal_a_batch_computation(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    events, records = corpus(cases=400, seed=31)
    worker = start_worker("cips", **FAST)
    await produce(kafka_bootstrap, prefix + TOPIC, records)
    assert await eventually(lambda: consumed([worker]) >= len(records), timeout_s=120)
    await _settle(kafka_bootstrap, prefix)
    got = await latest(kafka_bootstrap, prefix + "indicators.cips.v1")
    assert compare(batch(events), got) == []
    assert worker.metric("tradepulse_cips_credit_seconds_count") > 0
    assert worker.metric("tradepulse_cips_settled_cny_total") > 0
    assert worker.metric("tradepulse_cips_payments_total", status="credited") > 0
    invalid = worker.metric("tradepulse_events_invalid_total", topic=TOPIC)
    assert invalid > 0
    dead = await read_all(kafka_bootstrap, prefix + TOPIC + ".dlq", expect=int(invalid))
    assert len(dead) == invalid


async def test_same_cips_records_after_a_restart_mid_stream(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    events, records = corpus(cases=300, seed=32)
    first = start_worker("cips", **{**FAST, "TRADEPULSE_BATCH_MAX_EVENTS": "50"})
    await produce(kafka_bootstrap, prefix + TOPIC, records)
    assert await eventually(lambda: consumed([first]) >= len(records) // 3, timeout_s=60)
    assert first.stop() == 0
    start_worker("cips", **FAST)
    await _settle(kafka_bootstrap, prefix)
    got = await latest(kafka_bootstrap, prefix + "indicators.cips.v1")
    assert compare(batch(events), got) == []
