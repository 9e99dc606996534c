"""The export cycle on the real broker: customs, CIPS and refund workers publish their case topics
from one linked corpus (with duplicates, disorder, late and re-keyed records); the cycle worker,
killed with SIGKILL in the middle of the stream and started again, publishes records equal to a
batch computation over the raw events."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

from services.cips.simulator import simulate as simulate_cips
from services.customs.simulator import simulate as simulate_customs
from services.taxrefund.simulator import simulate as simulate_refunds
from services.tools.simulate import perturb
from tests.batch_cycle import batch
from tests.integration.domain import VALID_ONLY, DomainCase, differences
from tests.integration.harness import StartWorker, caught_up, eventually, latest, produce
from tests.integration.test_customs import CUSTOMS
from tests.integration.test_domains import CIPS, REFUNDS

START = datetime.fromisoformat("2025-04-07T00:00:00+08:00").timestamp()
SPAN = 3 * 86400.0
SEED = 71
CORPUS = ((CUSTOMS, simulate_customs, 150), (CIPS, simulate_cips, 100), (REFUNDS, simulate_refunds, 30))
INPUTS = ("cases.customs.v1", "cases.cips.v1", "cases.taxrefund.v1")
FAST = {"TRADEPULSE_CYCLE_INDICATOR_INTERVAL_S": "0.5", "TRADEPULSE_CYCLE_IDLE_AFTER_S": "2",
        "TRADEPULSE_BATCH_MAX_EVENTS": "200"}  # fmt: skip


async def _settle_upstream(bootstrap: str, prefix: str, services: list[DomainCase]) -> None:
    for d in services:
        await d.settle(bootstrap, prefix)


async def test_cycle_records_equal_a_batch_computation_across_a_kill_mid_stream(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    events: list[dict[str, Any]] = []
    for d, _, _ in CORPUS:
        start_worker(d.service, **d.fast)
    cycle = start_worker("cycle", **FAST)
    for d, simulate, cases in CORPUS:
        mine = simulate(cases=cases, seed=SEED, start_s=START, span_s=SPAN)
        events += mine
        await produce(kafka_bootstrap, prefix + d.topic, perturb(mine, VALID_ONLY, random.Random(SEED)))

    def consumed() -> float:
        return sum(cycle.metric("tradepulse_events_consumed_total", topic=t) for t in INPUTS)

    assert await eventually(lambda: consumed() >= 300, timeout_s=120), consumed()
    cycle.kill()  # mid-stream: the upstream workers are still publishing
    restarted = start_worker("cycle", **FAST)
    await _settle_upstream(kafka_bootstrap, prefix, [d for d, _, _ in CORPUS])
    internal = [f"{prefix}tradepulse-cycle-{n}" for n in ("links", "partials")]
    await caught_up(kafka_bootstrap, f"{prefix}tradepulse-cycle", [prefix + t for t in INPUTS] + internal)

    expected = batch(events)
    assert sum(1 for k in expected if k.startswith("cycle.export_to_cash|P1D|")) >= 3
    assert any(v.get("numerator") for k, v in expected.items() if k.startswith("cycle.prepaid_rate"))
    assert any(k.startswith("cycle.export_to_refund|P1D|") for k in expected)
    assert await differences(expected, lambda: latest(kafka_bootstrap, f"{prefix}indicators.cycle.v1")) == []
    assert sum(restarted.metric("tradepulse_events_consumed_total", topic=t) for t in INPUTS) > 0
    assert restarted.metric("tradepulse_events_invalid_total") == 0
