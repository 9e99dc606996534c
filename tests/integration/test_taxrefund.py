"""The refund pipeline on the real broker: a simulated corpus with faults gives records equal to a
plain batch computation (working-day counts exact), also across a restart mid-stream."""

from __future__ import annotations

from datetime import datetime

from services.taxrefund.simulator import simulate
from tests.batch_taxrefund import batch
from tests.integration.domain import DomainCase, batch_equality, restart_mid_stream
from tests.integration.harness import StartWorker

REFUNDS = DomainCase(
    "taxrefund", simulate, batch, datetime.fromisoformat("2025-09-01T00:00:00+08:00").timestamp(), 40 * 86400
)


async def test_refund_indicators_equal_a_batch_computation(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    (worker,), _ = await batch_equality(REFUNDS, kafka_bootstrap, prefix, start_worker, cases=300, seed=21)
    assert worker.metric("tradepulse_taxrefund_processing_workdays_count") > 0
    assert worker.metric("tradepulse_taxrefund_issued_total", mgmt_category="2", within_limit="true") > 0


async def test_same_refund_records_after_a_restart_mid_stream(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    await restart_mid_stream(REFUNDS, kafka_bootstrap, prefix, start_worker, cases=800, seed=22)
