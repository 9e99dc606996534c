"""The refund pipeline on the real broker: a simulated corpus with faults gives records equal to a
plain batch computation (working-day counts exact), also across a restart mid-stream."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from services.taxrefund.simulator import simulate
from services.tools.simulate import Faults, Record, perturb
from tests.batch_customs import compare
from tests.batch_taxrefund import batch
from tests.integration.harness import StartWorker, WorkerProcess, caught_up, eventually, produce
from tests.integration.test_customs import latest

TOPIC = "taxrefund.events.v1"
START = datetime.fromisoformat("2025-09-01T00:00:00+08:00").timestamp()
FAST = {
    "TRADEPULSE_TAXREFUND_INDICATOR_INTERVAL_S": "0.5",
    "TRADEPULSE_TAXREFUND_IDLE_AFTER_S": "2",
    "TRADEPULSE_BATCH_MAX_EVENTS": "500",
}


def corpus(cases: int, seed: int) -> tuple[list[dict[str, Any]], list[Record]]:
    events = simulate(cases=cases, seed=seed, start_s=START, span_s=40 * 86400)
    faults = Faults(duplicates=0.05, shuffle=0.1, late=0.05, invalid=0.02, binary=0.5, rekey=0.1)
    return events, perturb(events, faults, random.Random(seed))


def consumed(workers: list[WorkerProcess]) -> float:
    return sum(w.metric("tradepulse_events_consumed_total", topic=TOPIC) for w in workers)


async def _settle(bootstrap: str, prefix: str) -> None:
    internal = [f"{prefix}tradepulse-taxrefund-{name}" for name in ("links", "partials")]
    await caught_up(bootstrap, f"{prefix}tradepulse-taxrefund", [prefix + TOPIC, *internal])


async def test_refund_indicators_equal_a_batch_computation(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    events, records = corpus(cases=300, seed=21)
    worker = start_worker("taxrefund", **FAST)
    await produce(kafka_bootstrap, prefix + TOPIC, records)
    assert await eventually(lambda: consumed([worker]) >= len(records), timeout_s=120)
    await _settle(kafka_bootstrap, prefix)
    got = await latest(kafka_bootstrap, prefix + "indicators.taxrefund.v1")
    expected = batch(events)
    assert len(expected) > 50
    assert compare(expected, got) == []
    assert worker.metric("tradepulse_taxrefund_processing_workdays_count") > 0
    assert worker.metric("tradepulse_taxrefund_issued_total", mgmt_category="2", within_limit="true") > 0


async def test_same_refund_records_after_a_restart_mid_stream(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    events, records = corpus(cases=250, seed=22)
    first = start_worker("taxrefund", **{**FAST, "TRADEPULSE_BATCH_MAX_EVENTS": "50"})
    await produce(kafka_bootstrap, prefix + TOPIC, records)
    assert await eventually(lambda: consumed([first]) >= len(records) // 3, timeout_s=60)
    assert first.stop() == 0
    start_worker("taxrefund", **FAST)
    await _settle(kafka_bootstrap, prefix)
    got = await latest(kafka_bootstrap, prefix + "indicators.taxrefund.v1")
    assert compare(batch(events), got) == []
