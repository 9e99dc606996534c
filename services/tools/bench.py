"""``tradepulse bench intake``: throughput of the intake path against Faust's own ceiling.

Against one broker and the same records it measures (a) a raw aiokafka consumer decoding them,
(b) a Faust agent that only iterates them, (c) ``tradepulse worker customs`` (intake: decode,
deduplicate, state, ack). Ratios are taken within one run, because the machines are shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.common.codec import DecodeError, decode
from services.devstack.kafka import KafkaNode
from services.devstack.process import free_port

__all__ = ["run_bench"]

TOPIC = "customs.events.v1"
REPO = Path(__file__).resolve().parents[2]


def _records(n: int, seed: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        entry = f"5141{2025}0{rng.randrange(10**9):09d}"
        event = {
            "specversion": "1.0",
            "id": f"b-{i}",
            "source": "/singlewindow/5141",
            "type": "customs.declaration.accepted",
            "time": "2025-03-01T08:30:00+08:00",
            "subject": entry,
            "data": {"entry_id": entry},
        }
        if i % 2:
            headers = [("content-type", b"application/cloudevents+json")]
            value = json.dumps(event).encode()
        else:
            headers = [("content-type", b"application/json")]
            headers += [(f"ce_{k}", str(v).encode()) for k, v in event.items() if k != "data"]
            value = json.dumps(event["data"]).encode()
        out.append((entry.encode(), value, headers))
    return out


async def _prepare(bootstrap: str, topic: str, partitions: int, n: int, seed: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=k, headers=h) for k, v, h in _records(n, seed)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _raw(bootstrap: str, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
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
                for r in records:
                    with contextlib.suppress(DecodeError):
                        decode(r.value, r.headers, topic=TOPIC)
                seen += len(records)
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def _faust_empty(bootstrap: str, prefix: str, n: int, partitions: int) -> float:
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TRADEPULSE_TOPIC_PREFIX": prefix,
        "TRADEPULSE_TOPIC_PARTITIONS": str(partitions),
        "TRADEPULSE_WEB_PORT": str(free_port()),
        "TRADEPULSE_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.tools.bench_agent", str(n), str(out)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not out.read_text():
            if proc.poll() is not None:
                msg = f"bench agent exited with {proc.returncode}"
                raise RuntimeError(msg)
            time.sleep(0.2)
        result = json.loads(out.read_text())
        return float(result["events_per_s"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        out.unlink(missing_ok=True)


def _worker(bootstrap: str, prefix: str, n: int, partitions: int) -> float:
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TRADEPULSE_TOPIC_PREFIX": prefix,
        "TRADEPULSE_TOPIC_PARTITIONS": str(partitions),
        "TRADEPULSE_WEB_PORT": str(port),
        "TRADEPULSE_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "worker", "customs"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        first = last = 0.0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                msg = f"worker exited with {proc.returncode}"
                raise RuntimeError(msg)
            done = _consumed(port)
            now = time.perf_counter()
            if done and not first:
                first = now
            if done >= n:
                last = now
                break
            time.sleep(0.02)
        # the first poll that saw events is up to one poll interval late: small against seconds
        return n / (last - first) if last > first else float("nan")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _consumed(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith("tradepulse_events_consumed_total{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def run_bench(*, events: int, partitions: int, out: Path, seed: int = 7) -> dict[str, Any]:
    """Run (a), (b), (c) on the same records and write the JSON result to ``out``."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    node = None
    if external:
        bootstrap = external
    else:
        node = KafkaNode(
            Path(tempfile.mkdtemp(prefix="tradepulse-bench-")),
            port=free_port(),
            controller_port=free_port(),
            heap="1g",
        )
        node.start()
        bootstrap = node.bootstrap
    try:
        results: dict[str, float] = {}
        for name in ("raw_aiokafka_decode", "faust_empty_agent", "intake_worker"):
            prefix = f"bench{uuid.uuid4().hex[:8]}."
            asyncio.run(_prepare(bootstrap, prefix + TOPIC, partitions, events, seed))
            if name == "raw_aiokafka_decode":
                results[name] = asyncio.run(_raw(bootstrap, prefix + TOPIC, events))
            elif name == "faust_empty_agent":
                results[name] = _faust_empty(bootstrap, prefix, events, partitions)
            else:
                results[name] = _worker(bootstrap, prefix, events, partitions)
            print(f"{name:<22} {results[name]:>10,.0f} events/s", flush=True)
    finally:
        if node is not None:
            node.stop()
    report = {
        "benchmark": "intake",
        "events": events,
        "partitions": partitions,
        "events_per_s": {k: round(v, 1) for k, v in results.items()},
        "ratio_c_over_a": round(results["intake_worker"] / results["raw_aiokafka_decode"], 3),
        "ratio_c_over_b": round(results["intake_worker"] / results["faust_empty_agent"], 3),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "kafka": node.version_line() if node else bootstrap,
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report
