"""The CBEC, CIPS and refund pipelines on the real broker, one parametrised test each: records equal
a batch computation (CIPS amounts summed as exact decimals, refund working-day counts exact), also
across a restart mid-stream; bad input goes to the dead-letter topic. Customs, with its join of
arrivals, has tests of its own (test_customs.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from services.cbec.simulator import simulate as simulate_cbec
from services.cips.simulator import simulate as simulate_cips
from services.taxrefund.simulator import simulate as simulate_refunds
from tests.batch_cbec import batch as batch_cbec
from tests.batch_cips import batch as batch_cips
from tests.batch_taxrefund import batch as batch_refunds
from tests.integration.domain import DomainCase, all_invalid_dead_lettered, batch_equality, restart_mid_stream
from tests.integration.harness import StartWorker


def _day(date: str) -> float:
    return datetime.fromisoformat(f"{date}T00:00:00+08:00").timestamp()


# all on the defaults: CBEC returns, weeks after the release, must find their orders as in production
CBEC = DomainCase("cbec", simulate_cbec, batch_cbec, _day("2025-11-10"), 2 * 86400)
CIPS = DomainCase("cips", simulate_cips, batch_cips, _day("2025-03-03"), 2 * 86400)
REFUNDS = DomainCase("taxrefund", simulate_refunds, batch_refunds, _day("2025-09-01"), 40 * 86400)


@dataclass(frozen=True)
class Run:
    """One domain's runs: (cases, seed) of the batch comparison and of the restart, and the metrics
    its observer must have moved."""

    d: DomainCase
    corpus: tuple[int, int]
    restart: tuple[int, int]
    metrics: list[tuple[str, dict[str, Any]]]


RUNS = [
    Run(CBEC, (400, 51), (700, 52), [
        ("tradepulse_cbec_release_seconds_count", {}),
        ("tradepulse_cbec_doc_match_total", {"result": "match"}),
    ]),
    Run(CIPS, (400, 31), (800, 32), [
        ("tradepulse_cips_credit_seconds_count", {}),
        ("tradepulse_cips_settled_cny_total", {}),
        ("tradepulse_cips_payments_total", {"status": "credited"}),
    ]),
    Run(REFUNDS, (300, 21), (800, 22), [
        ("tradepulse_taxrefund_processing_workdays_count", {}),
        ("tradepulse_taxrefund_issued_total", {"mgmt_category": "2", "within_limit": "true"}),
    ]),
]  # fmt: skip
by_service = pytest.mark.parametrize("run", RUNS, ids=[r.d.service for r in RUNS])


@by_service
async def test_indicators_equal_a_batch_computation(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker, run: Run
) -> None:
    cases, seed = run.corpus
    (worker,), _ = await batch_equality(run.d, kafka_bootstrap, prefix, start_worker, cases=cases, seed=seed)
    for name, labels in run.metrics:
        assert worker.metric(name, **labels) > 0, name
    await all_invalid_dead_lettered(run.d, kafka_bootstrap, prefix, worker)


@by_service
async def test_same_records_after_a_restart_mid_stream(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker, run: Run
) -> None:
    """The second worker starts without the first's local copy of the state (another machine): it
    rebuilds it from the state topic. (Customs restarts on the local copy, test_customs.py.)"""
    cases, seed = run.restart
    await restart_mid_stream(
        run.d, kafka_bootstrap, prefix, start_worker, cases=cases, seed=seed, local_copy=False
    )
