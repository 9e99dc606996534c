"""The customs pipeline on the real broker: a simulated corpus with duplicates, shuffling, late
events, invalid records and records not keyed by subject gives indicator records equal to a plain
batch computation; also across a restart, and with two workers."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from services.customs.domain import DOMAIN as CUSTOMS_DOMAIN
from services.customs.simulator import simulate
from services.devstack.kafka import KafkaNode
from services.devstack.process import tail
from services.registry import DOMAINS
from tests.batch_customs import batch
from tests.factories import accepted_event, structured
from tests.integration.domain import (
    VALID_ONLY,
    DomainCase,
    all_invalid_dead_lettered,
    batch_equality,
    restart_mid_stream,
)
from tests.integration.harness import (
    StartWorker,
    WorkerProcess,
    eventually,
    new_prefix,
    produce,
    read_to_end,
    worker_env,
)
from tests.sdk_events import VARIANTS, sdk_record

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
    # a rebalance is no alarm: Faust's "Task timed out!" (a rebalance step past the session
    # timeout) and its livelock ERRORs stay out of both logs
    assert one.stop() == 0
    assert two.stop() == 0
    for worker in (one, two):
        assert {line["msg"] for line in worker.loud()} <= {"record dead-lettered"}, worker.loud()


async def test_an_event_from_the_far_future_is_refused_and_moves_no_watermark(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    """Contract section 1: a producer with a bad clock may not close windows for everybody."""
    events, records = CUSTOMS.corpus(300, 14, faults=VALID_ONLY)
    entry = next(e["data"]["entry_id"] for e in events if "entry_id" in e["data"])  # a partition in use
    bad = accepted_event(time="9999-12-31T23:59:59+08:00", subject=entry, data={"entry_id": entry})
    headers, value = structured(bad)
    worker = start_worker("customs", **CUSTOMS.fast)
    await produce(kafka_bootstrap, prefix + TOPIC, [(entry.encode(), value, headers), *records])
    assert await eventually(lambda: CUSTOMS.consumed([worker]) >= len(records) + 1, timeout_s=120)
    await CUSTOMS.settle(kafka_bootstrap, prefix)
    assert await CUSTOMS.differences(kafka_bootstrap, prefix, CUSTOMS.oracle(events)) == []
    dead = await read_to_end(kafka_bootstrap, prefix + TOPIC + ".dlq")
    assert [(r.value, dict(r.headers)["dlq_reason"]) for r in dead] == [(value, b"invalid_envelope")]
    assert b"9999-12-31T23:59:59+08:00" in dict(dead[0].headers)["dlq_detail"]


async def test_records_written_by_the_cloudevents_sdk_are_all_taken(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    """Structured and binary records of the official SDK, with and without datacontenttype, give
    the same indicators as our own encoder's."""
    events = CUSTOMS.simulate(cases=60, seed=15, start_s=CUSTOMS.start_s, span_s=CUSTOMS.span_s)
    records = [sdk_record(e, VARIANTS[i % len(VARIANTS)][0]) for i, e in enumerate(events)]
    worker = start_worker("customs", **CUSTOMS.fast)
    await produce(kafka_bootstrap, prefix + TOPIC, records)
    assert await eventually(lambda: CUSTOMS.consumed([worker]) >= len(records), timeout_s=120)
    await CUSTOMS.settle(kafka_bootstrap, prefix)
    assert worker.metric("tradepulse_events_invalid_total", topic=TOPIC) == 0
    assert worker.metric("tradepulse_events_accepted_total", topic=TOPIC) == len(events)
    assert await CUSTOMS.differences(kafka_bootstrap, prefix, CUSTOMS.oracle(events)) == []


async def test_the_indicator_gauges_show_the_numbers_of_the_indicator_records(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    """One number per KPI: /metrics mirrors the latest and the latest final window of each series."""
    (worker,), _ = await batch_equality(CUSTOMS, kafka_bootstrap, prefix, start_worker, cases=300, seed=16)
    records = await CUSTOMS.latest(kafka_bootstrap, prefix)
    # no wait: stage two sets a record's gauges before the record is written (Pipeline.publish)
    by_series: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[dict[str, Any]]] = {}
    for data in records.values():
        series = (data["indicator"], data["window"], tuple(sorted(data["dimensions"].items())))
        by_series.setdefault(series, []).append(data)
    samples = worker.metrics()
    checked = 0
    for (indicator, window, dims), datas in by_series.items():
        name = f"tradepulse_indicator_{indicator.replace('.', '_')}_seconds"
        if not indicator.endswith("_time"):
            name = f"tradepulse_indicator_{indicator.replace('.', '_')}_ratio"
        spec = next(s for s in CUSTOMS_DOMAIN.indicators if s.name == indicator)
        labels = {d: dict(dims).get(d, "all") for d in spec.dimensions}
        finals = [d for d in datas if d["final"]]
        for phase, chosen in (("current", datas), ("final", finals)):
            if not chosen:
                continue
            want = max(chosen, key=lambda d: d["window_start"])
            stats = ("count", "mean", "p90") if spec.kind == "duration" else ("count", "value")
            for stat in stats:
                key = (
                    name,
                    tuple(sorted({"window": window, "phase": phase, "stat": stat, **labels}.items())),
                )
                expected = want.get(stat)  # a window whose cases all moved away has no mean or value
                got = samples[key]
                assert math.isnan(got) if expected is None else got == pytest.approx(expected), (key, want)
            start = datetime.fromisoformat(want["window_start"]).timestamp()
            start_key = (
                name,
                tuple(sorted({"window": window, "phase": phase, "stat": "window_start", **labels}.items())),
            )
            assert samples[start_key] == start
            checked += 1
    assert checked > 50
    # only this service's own metrics: another's unlabelled gauge would be a wrong 0 on this target
    families = {name for name, _ in samples}
    assert any(n.startswith("tradepulse_customs_") for n in families)
    foreign = sorted(
        n for n in families for d in DOMAINS if d != "customs" and n.startswith(f"tradepulse_{d}_")
    )
    assert foreign == []


async def test_a_broker_outage_mid_stream_loses_nothing(private_kafka: KafkaNode, tmp_path: Path) -> None:
    """The broker goes away while the worker is working through the stream and comes back 50 s
    later: the worker rides it out (failed flushes keep what they had staged and are retried,
    nothing is acknowledged meanwhile), and the records still equal the batch computation. Checked:
    with a flush that drops what it had staged on failure, 78 records differ."""
    bootstrap, prefix = private_kafka.bootstrap, new_prefix()
    events, records = CUSTOMS.corpus(1500, seed=17)
    env = worker_env(bootstrap, prefix, **{**CUSTOMS.fast, "TRADEPULSE_BATCH_MAX_EVENTS": "50"})
    worker = WorkerProcess("customs", env, tmp_path / "w.log").start().wait_ready()
    try:
        await produce(bootstrap, prefix + TOPIC, records)
        assert await eventually(lambda: CUSTOMS.consumed([worker]) >= len(records) // 10, timeout_s=60)
        private_kafka.stop()
        assert CUSTOMS.consumed([worker]) < len(records), "the worker finished before the outage"
        # past the 10 s session timeout (the group forgets the worker) and the producer's 40 s
        # request timeout (flushes fail, and are retried with what they had staged)
        await asyncio.sleep(50)
        assert worker.proc is not None
        assert worker.proc.poll() is None, tail(worker.log, 30)
        await asyncio.to_thread(private_kafka.start)  # it probes the broker with its own event loop
        await CUSTOMS.settle(bootstrap, prefix)
        assert await CUSTOMS.differences(bootstrap, prefix, CUSTOMS.oracle(events)) == []
        assert worker.proc.poll() is None, tail(worker.log, 30)
    finally:
        worker.stop()
