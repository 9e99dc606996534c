"""The customs pipeline on the real broker: a simulated corpus with duplicates, shuffling, late
events, invalid records and records not keyed by subject gives indicator records equal to a plain
batch computation; also across a restart, and with two workers."""

from __future__ import annotations

from datetime import datetime

from services.customs.simulator import simulate
from tests.batch_customs import batch
from tests.integration.domain import DomainCase, all_invalid_dead_lettered, batch_equality, restart_mid_stream
from tests.integration.harness import StartWorker

CUSTOMS = DomainCase(
    "customs", simulate, batch, datetime.fromisoformat("2025-03-01T00:00:00+08:00").timestamp(), 86400
)
TOPIC = CUSTOMS.topic


async def test_indicators_equal_a_batch_computation_despite_faulty_input(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    (worker,), expected = await batch_equality(
        CUSTOMS, kafka_bootstrap, prefix, start_worker, cases=400, seed=11
    )
    assert len(expected) > 100
    await all_invalid_dead_lettered(CUSTOMS, kafka_bootstrap, prefix, worker)
    assert worker.metric("tradepulse_events_duplicate_total", topic=TOPIC) > 0
    assert worker.metric("tradepulse_late_events_total") > 0  # held-back events reach final windows
    assert worker.metric("tradepulse_customs_release_seconds_count") > 0
    assert worker.metric("tradepulse_customs_risk_decisions_total") > 0


async def test_same_records_after_a_restart_mid_stream(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    """The worker is stopped (SIGTERM) while it is still working through the stream."""
    await restart_mid_stream(CUSTOMS, kafka_bootstrap, prefix, start_worker, cases=700, seed=12)


async def test_two_workers_give_the_same_records_as_one(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    (one, two), _ = await batch_equality(
        CUSTOMS, kafka_bootstrap, prefix, start_worker, cases=300, seed=13, workers=2
    )
    assert one.metric("tradepulse_events_consumed_total", topic=TOPIC) > 0
    assert two.metric("tradepulse_events_consumed_total", topic=TOPIC) > 0
