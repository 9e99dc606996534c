"""The CBEC pipeline on the real broker: records equal a batch computation, also across a restart
mid-stream; bad input goes to the dead-letter topic."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from services.cbec.simulator import simulate
from services.tools.simulate import Faults, Record, perturb
from tests.batch_cbec import batch
from tests.batch_customs import compare
from tests.integration.harness import StartWorker, WorkerProcess, caught_up, eventually, produce, read_all
from tests.integration.test_customs import latest

TOPIC = "cbec.events.v1"
START = datetime.fromisoformat("2025-11-10T00:00:00+08:00").timestamp()
FAST = {
    "TRADEPULSE_CBEC_INDICATOR_INTERVAL_S": "0.5",
    "TRADEPULSE_CBEC_IDLE_AFTER_S": "2",
    "TRADEPULSE_CBEC_WINDOW_RETENTION_S": str(90 * 86400),
    "TRADEPULSE_BATCH_MAX_EVENTS": "500",
}


def corpus(cases: int, seed: int) -> tuple[list[dict[str, Any]], list[Record]]:
    events = simulate(cases=cases, seed=seed, start_s=START, span_s=2 * 86400)
    faults = Faults(duplicates=0.05, shuffle=0.1, late=0.05, invalid=0.02, binary=0.5, rekey=0.1)
    return events, perturb(events, faults, random.Random(seed))


def consumed(workers: list[WorkerProcess]) -> float:
    return sum(w.metric("tradepulse_events_consumed_total", topic=TOPIC) for w in workers)


async def _settle(bootstrap: str, prefix: str) -> None:
    internal = [f"{prefix}tradepulse-cbec-{name}" for name in ("links", "partials")]
    await caught_up(bootstrap, f"{prefix}tradepulse-cbec", [prefix + TOPIC, *internal])


async def test_cbec_indicators_equal_a_batch_computation(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    events, records = corpus(cases=400, seed=51)
    worker = start_worker("cbec", **FAST)
    await produce(kafka_bootstrap, prefix + TOPIC, records)
    assert await eventually(lambda: consumed([worker]) >= len(records), timeout_s=120)
    await _settle(kafka_bootstrap, prefix)
    got = await latest(kafka_bootstrap, prefix + "indicators.cbec.v1")
    assert compare(batch(events), got) == []
    assert worker.metric("tradepulse_cbec_release_seconds_count") > 0
    assert worker.metric("tradepulse_cbec_doc_match_total", result="match") > 0
    invalid = worker.metric("tradepulse_events_invalid_total", topic=TOPIC)
    assert invalid > 0
    assert len(await read_all(kafka_bootstrap, prefix + TOPIC + ".dlq", expect=int(invalid))) == invalid


async def test_same_cbec_records_after_a_restart_mid_stream(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    events, records = corpus(cases=300, seed=52)
    first = start_worker("cbec", **{**FAST, "TRADEPULSE_BATCH_MAX_EVENTS": "50"})
    await produce(kafka_bootstrap, prefix + TOPIC, records)
    assert await eventually(lambda: consumed([first]) >= len(records) // 3, timeout_s=60)
    assert first.stop() == 0
    start_worker("cbec", **FAST)
    await _settle(kafka_bootstrap, prefix)
    got = await latest(kafka_bootstrap, prefix + "indicators.cbec.v1")
    assert compare(batch(events), got) == []
