"""``tradepulse bench customs``: throughput of the customs pipeline against Faust's own ceiling.

Against one broker and the same records it measures (a) a raw aiokafka consumer decoding them,
(b) a Faust agent that only iterates them, (c) ``tradepulse worker customs`` (the whole pipeline:
intake, lifecycle tracking, windows, partials, merge, indicator records). Then the end-to-end
latency at a fixed offered load. Ratios are taken within one run: the machines are shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from services.contract.codec import DecodeError, decode
from services.devstack.process import free_port
from services.registry import DOMAINS
from services.runtime.security import kafka_client
from services.tools.bench_latency import latency_run
from services.tools.bench_memory import bytes_per_open_order
from services.tools.bench_quix import quix_available
from services.tools.measure import (
    REPO,
    bench_broker,
    customs_records,
    interleaved,
    percentile,
    prepare_topic,
    rates,
    save,
    timed_worker,
    worker_env,
)
from services.tools.simulate import Record

__all__ = ["run_bench"]

TOPIC = "customs.events.v1"


async def _raw(bootstrap: str, topic: str, n: int, contract_topic: str = TOPIC) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_client(bootstrap),
        group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen, started = 0, 0.0
    try:
        while seen < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                if not started:
                    started = time.perf_counter()
                catalog = DOMAINS[contract_topic.split(".")[0]].catalog
                for r in records:
                    with contextlib.suppress(DecodeError):
                        decode(r.value, r.headers, catalog=catalog)
                seen += len(records)
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def _faust_empty(
    bootstrap: str, prefix: str, n: int, partitions: int, mode: str = "iterate", topic: str = TOPIC
) -> float:
    env = worker_env(bootstrap, prefix, partitions, free_port())
    return _measured_by("services.tools.bench_agent", [str(n)], [mode, topic], env)


def _quix(bootstrap: str, n: int, topic: str) -> float:
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    return _measured_by("services.tools.bench_quix", [str(n)], [topic], env)


def _measured_by(module: str, head: list[str], tail: list[str], env: dict[str, str]) -> float:
    """Run ``python -m module *head OUT *tail`` and read the events/s it writes to OUT."""
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *head, str(out), *tail],
        cwd=REPO,
        env={**os.environ, **env},  # KAFKA_* security settings too
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not out.read_text():
            if proc.poll() is not None:
                msg = f"{module} exited with {proc.returncode}"
                raise RuntimeError(msg)
            time.sleep(0.2)
        result = json.loads(out.read_text())
        return float(result["events_per_s"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        out.unlink(missing_ok=True)


def _variant(name: str, bootstrap: str, partitions: int, records: list[Record], target: str) -> float:
    """Events/s of one variant on a fresh copy of the records (a topic of its own)."""
    topic = f"{target}.events.v1"
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    asyncio.run(prepare_topic(bootstrap, prefix + topic, partitions, records))
    if name == "raw_aiokafka_decode":
        return asyncio.run(_raw(bootstrap, prefix + topic, len(records), topic))
    if name == "faust_empty_agent":
        return _faust_empty(bootstrap, prefix, len(records), partitions, topic=topic)
    if name == "faust_batch_agent":
        return _faust_empty(bootstrap, prefix, len(records), partitions, "batch", topic)
    if name == "quix_streams":
        return _quix(bootstrap, len(records), prefix + topic)
    return timed_worker(target, bootstrap, prefix, len(records), partitions=partitions)[0]


def run_bench(
    *,
    events: int,
    partitions: int,
    out: Path,
    seed: int = 7,
    rate: float = 500.0,
    latency_s: float = 30.0,
    target: str = "customs",
    rounds: int = 3,
    span_h: float = 24.0,
    late: float = 0.0,
) -> dict[str, Any]:
    """Throughput of (a), (b), (c) on the same records, ``rounds`` times (the medians are
    reported), then (customs) latency at a fixed offered load, or (cbec) the memory an open
    order takes."""
    records = customs_records(events, seed, target, span_h=span_h, late=late)
    pipeline = f"{target}_pipeline"
    names = ["raw_aiokafka_decode", "faust_empty_agent", "faust_batch_agent", pipeline]
    if quix_available():
        names.append("quix_streams")
    else:
        print("quix_streams left out: install the bench extra, pip install -e '.[bench]'", flush=True)
    with bench_broker("bench") as (bootstrap, kafka, _):
        variants = {
            name: functools.partial(_variant, name, bootstrap, partitions, records, target) for name in names
        }
        runs = interleaved(rounds, variants, lambda rate: f"{rate:>10,.0f} events/s")
        latencies = latency_run(bootstrap, partitions, rate, latency_s, seed) if target == "customs" else []
    results = {name: statistics.median(xs) for name, xs in runs.items()}
    report = {
        "benchmark": target,
        "events": len(records),
        "workload": {"span_h": span_h, "late": late},
        "partitions": partitions,
        "rounds": rounds,
        **rates(runs),
        "events_per_s_per_worker": round(results[pipeline], 1),
        "ratio_c_over_a": round(results[pipeline] / results["raw_aiokafka_decode"], 3),
        "ratio_c_over_b": round(results[pipeline] / results["faust_empty_agent"], 3),
        "ratio_c_over_b_by_round": _by_round(runs, pipeline, "faust_empty_agent"),
        "ratio_over_quix": _ratio(results, pipeline, "quix_streams"),
        "ratio_over_quix_by_round": _by_round(runs, pipeline, "quix_streams"),
        "bytes_per_open_order": bytes_per_open_order() if target == "cbec" else None,
        "latency": {
            "offered_events_per_s": rate,
            # the worker's settings: the defaults unless the environment overrides them
            "partials_interval_s": DOMAINS["customs"].settings().partials_interval_s,
            "indicator_interval_s": DOMAINS["customs"].settings().indicator_interval_s,
            "probes": len(latencies),
            "p50_s": _round(percentile(latencies, 0.5)),
            "p99_s": _round(percentile(latencies, 0.99)),
        },
    }
    save(out, report, kafka)
    print(json.dumps(report, indent=2))
    return report


def _ratio(results: dict[str, float], top: str, bottom: str) -> float | None:
    return round(results[top] / results[bottom], 3) if bottom in results else None


def _by_round(runs: dict[str, list[float]], top: str, bottom: str) -> list[float] | None:
    if bottom not in runs:
        return None
    return [round(c / b, 3) for c, b in zip(runs[top], runs[bottom], strict=True)]


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)
