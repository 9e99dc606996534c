"""The CIPS pipeline on the real broker: records equal a batch computation (amounts summed as exact
decimals), also across a restart mid-stream; bad input goes to the dead-letter topic."""

from __future__ import annotations

from datetime import datetime

from services.cips.simulator import simulate
from tests.batch_cips import batch
from tests.integration.domain import DomainCase, all_invalid_dead_lettered, batch_equality, restart_mid_stream
from tests.integration.harness import StartWorker

CIPS = DomainCase(
    "cips", simulate, batch, datetime.fromisoformat("2025-03-03T00:00:00+08:00").timestamp(), 2 * 86400
)


async def test_cips_indicators_equal_a_batch_computation(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    (worker,), _ = await batch_equality(CIPS, kafka_bootstrap, prefix, start_worker, cases=400, seed=31)
    assert worker.metric("tradepulse_cips_credit_seconds_count") > 0
    assert worker.metric("tradepulse_cips_settled_cny_total") > 0
    assert worker.metric("tradepulse_cips_payments_total", status="credited") > 0
    await all_invalid_dead_lettered(CIPS, kafka_bootstrap, prefix, worker)


async def test_same_cips_records_after_a_restart_mid_stream(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    await restart_mid_stream(CIPS, kafka_bootstrap, prefix, start_worker, cases=800, seed=32)
