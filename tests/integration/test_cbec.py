"""The CBEC pipeline on the real broker: records equal a batch computation, also across a restart
mid-stream; bad input goes to the dead-letter topic."""

from __future__ import annotations

from datetime import datetime

from services.cbec.simulator import simulate
from tests.batch_cbec import batch
from tests.integration.domain import DomainCase, all_invalid_dead_lettered, batch_equality, restart_mid_stream
from tests.integration.harness import StartWorker

# the defaults: returns, weeks after the release, must find their orders as in production
CBEC = DomainCase(
    "cbec", simulate, batch, datetime.fromisoformat("2025-11-10T00:00:00+08:00").timestamp(), 2 * 86400
)


async def test_cbec_indicators_equal_a_batch_computation(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    (worker,), _ = await batch_equality(CBEC, kafka_bootstrap, prefix, start_worker, cases=400, seed=51)
    assert worker.metric("tradepulse_cbec_release_seconds_count") > 0
    assert worker.metric("tradepulse_cbec_doc_match_total", result="match") > 0
    await all_invalid_dead_lettered(CBEC, kafka_bootstrap, prefix, worker)


async def test_same_cbec_records_after_a_restart_mid_stream(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    await restart_mid_stream(CBEC, kafka_bootstrap, prefix, start_worker, cases=700, seed=52)
