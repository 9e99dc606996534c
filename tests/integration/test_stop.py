"""Stopping: a worker whose broker is gone still stops within an orchestrator's grace period."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from services.devstack.kafka import KafkaNode
from tests.factories import accepted_event, structured
from tests.integration.harness import WorkerProcess, new_prefix, produce, worker_env

TOPIC = "customs.events.v1"


async def test_worker_stops_within_10_s_when_its_broker_is_gone(
    private_kafka: KafkaNode, tmp_path: Path
) -> None:
    prefix = new_prefix()
    worker = WorkerProcess("customs", worker_env(private_kafka.bootstrap, prefix), tmp_path / "w.log")
    worker.start().wait_ready()
    headers, value = structured(accepted_event())
    await produce(private_kafka.bootstrap, prefix + TOPIC, [(b"k", value, headers)])
    worker.wait_metric("tradepulse_events_processed_total", 1, topic=TOPIC)
    private_kafka.stop()
    await asyncio.sleep(2)  # the worker notices: fetches and heartbeats fail
    started = time.monotonic()
    code = worker.stop(timeout_s=30)
    took = time.monotonic() - started
    assert took < 10, f"stopping took {took:.1f} s"
    assert code == 1  # the deadline, not a clean stop: nothing could be committed
    assert "stop overran its deadline" in worker.log.read_text()
