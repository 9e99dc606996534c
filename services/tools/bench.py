"""``tradepulse bench customs``: throughput of the customs pipeline against Faust's own ceiling.

Against one broker and the same records it measures (a) a raw aiokafka consumer decoding them,
(b) a Faust agent that only iterates them, (c) ``tradepulse worker customs`` (the whole pipeline:
intake, lifecycle tracking, windows, partials, merge, indicator records). Then the end-to-end
latency at a fixed offered load. Ratios are taken within one run: the machines are shared.
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
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.common.codec import DecodeError, decode
from services.devstack.kafka import KafkaNode
from services.devstack.probe import web_get, web_ready
from services.devstack.process import free_port
from services.tools.simulate import Record

__all__ = ["run_bench"]

TOPIC = "customs.events.v1"
REPO = Path(__file__).resolve().parents[2]


def _customs_records(n: int, seed: int, target: str = "customs") -> list[Record]:
    """A realistic stream of ``target``: whole lifecycles, 2 % duplicates, a little disorder."""
    import importlib

    from services.tools.simulate import Faults, perturb

    simulate = importlib.import_module(f"services.{target}.simulator").simulate
    cases = max(1, n // 5)
    events = simulate(cases=cases, seed=seed, start_s=time.time() - 3 * 86400, span_s=86400)
    records = perturb(events, Faults(duplicates=0.02, shuffle=0.02, binary=0.5), random.Random(seed))
    return records[:n]


async def _prepare(bootstrap: str, topic: str, partitions: int, records: list[Record]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=k, headers=h) for k, v, h in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _raw(bootstrap: str, topic: str, n: int, contract_topic: str = TOPIC) -> float:
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
                        decode(r.value, r.headers, topic=contract_topic)
                seen += len(records)
        return n / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def _faust_empty(
    bootstrap: str, prefix: str, n: int, partitions: int, mode: str = "iterate", topic: str = TOPIC
) -> float:
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
        [sys.executable, "-m", "services.tools.bench_agent", str(n), str(out), mode, topic],
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


def _env(bootstrap: str, prefix: str, partitions: int, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "TRADEPULSE_TOPIC_PREFIX": prefix,
        "TRADEPULSE_TOPIC_PARTITIONS": str(partitions),
        "TRADEPULSE_WEB_PORT": str(port),
        "TRADEPULSE_LOG_LEVEL": "warning",
        "TRADEPULSE_CUSTOMS_INDICATOR_INTERVAL_S": "1",
    }


def _start_worker(bootstrap: str, prefix: str, partitions: int, service: str) -> tuple[Any, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "worker", service],
        cwd=REPO,
        env=_env(bootstrap, prefix, partitions, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, port


def _worker(bootstrap: str, prefix: str, n: int, partitions: int, service: str) -> float:
    proc, port = _start_worker(bootstrap, prefix, partitions, service)
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
    _, text = web_get(port, "/metrics")
    for line in text.splitlines():
        if line.startswith("tradepulse_events_consumed_total{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


PROBE_ENTRY = "9999{year}0{serial:09d}"


def _probe_case(serial: int, base_s: float) -> list[Record]:
    """A tiny export declaration at customs office 9999: lodged then released 60 s later, both at
    event times inside one fixed hour, so each probe adds one to one indicator key's count."""
    from datetime import datetime

    from services.common.windows import SHANGHAI
    from services.tools.simulate import encode

    entry = PROBE_ENTRY.format(year=datetime.fromtimestamp(base_s, SHANGHAI).year, serial=serial)
    at = base_s + serial * 0.001
    common = {"specversion": "1.0", "source": "/bench/probe", "subject": entry}
    lodged = {
        **common,
        "id": f"p{serial}-l",
        "type": "customs.declaration.lodged",
        "time": _iso(at),
        "data": {
            "entry_id": entry,
            "customs_code": "9999",
            "ie_flag": "E",
            "trade_mode": "0110",
            "transport_mode": "5",
            "credit_class": "aeo",
            "declared_value": {"amount": "1.00", "currency": "CNY"},
            "consignee_uscc": "91440101MA5C000001",
        },
    }
    released = {
        **common,
        "id": f"p{serial}-r",
        "type": "customs.declaration.released",
        "time": _iso(at + 60),
        "data": {"entry_id": entry},
    }
    return [encode(lodged, binary=False), encode(released, binary=False)]


def _iso(at_s: float) -> str:
    from datetime import datetime

    from services.common.windows import SHANGHAI

    return datetime.fromtimestamp(at_s, SHANGHAI).isoformat(timespec="milliseconds")


async def _latency(bootstrap: str, prefix: str, rate: float, seconds: float, seed: int) -> list[float]:
    """Offer ``rate`` events/s of simulated traffic plus a probe case every 0.5 s; the latency of a
    probe is from sending its release to the first indicator record that counts it."""
    from services.common.windows import indicator_key, window_start

    hour = window_start(time.time() - 86400, 3600)  # inside the traffic's time range and retention
    base = hour + 600.0
    dims = (("customs_code", "9999"), ("ie_flag", "E"), ("transport_mode", "5"))
    key = indicator_key("customs.release_time", "PT1H", hour, dims)
    load = _customs_records(int(rate * seconds) + 1, seed)
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    consumer = AIOKafkaConsumer(
        prefix + "indicators.customs.v1",
        bootstrap_servers=bootstrap,
        auto_offset_reset="latest",
        group_id=f"bench-lat-{uuid.uuid4().hex[:6]}",
    )
    await producer.start()
    await consumer.start()
    await asyncio.sleep(2)  # let the consumer join before probes are counted

    async def offer() -> None:
        started = time.monotonic()
        probes = 0
        for i, (k, v, h) in enumerate(load):
            await producer.send(prefix + TOPIC, v, key=k, headers=h)
            if time.monotonic() - started >= probes * 0.5:
                probes += 1
                for pk, pv, ph in _probe_case(probes, base):
                    await producer.send(prefix + TOPIC, pv, key=pk, headers=ph)
                sent_at[probes] = time.monotonic()
            ahead = started + (i + 1) / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()

    async def watch() -> None:
        counted = 0
        deadline = time.monotonic() + seconds + 30
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for r in records:
                    if r.key and r.key.decode() == key:
                        count = json.loads(r.value)["data"]["count"]
                        now = time.monotonic()
                        while counted < count:
                            counted += 1
                            if counted in sent_at:
                                latencies.append(now - sent_at[counted])
            if sent_at and counted >= max(sent_at) and time.monotonic() > deadline - 30:
                return

    try:
        await asyncio.gather(offer(), watch())
    finally:
        await producer.stop()
        await consumer.stop()
    return latencies


def _percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    return sorted(xs)[min(len(xs) - 1, int(q * (len(xs) - 1)))]


def run_bench(
    *,
    events: int,
    partitions: int,
    out: Path,
    seed: int = 7,
    rate: float = 500.0,
    latency_s: float = 30.0,
    target: str = "customs",
) -> dict[str, Any]:
    """Throughput of (a), (b), (c) on the same records, then (customs) latency at a fixed offered
    load, or (cbec) the memory an open order takes."""
    topic = f"{target}.events.v1"
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
    records = _customs_records(events, seed, target)
    pipeline = f"{target}_pipeline"
    try:
        results: dict[str, float] = {}
        for name in ("raw_aiokafka_decode", "faust_empty_agent", "faust_batch_agent", pipeline):
            prefix = f"bench{uuid.uuid4().hex[:8]}."
            asyncio.run(_prepare(bootstrap, prefix + topic, partitions, records))
            if name == "raw_aiokafka_decode":
                results[name] = asyncio.run(_raw(bootstrap, prefix + topic, len(records), topic))
            elif name == "faust_empty_agent":
                results[name] = _faust_empty(bootstrap, prefix, len(records), partitions, topic=topic)
            elif name == "faust_batch_agent":
                results[name] = _faust_empty(bootstrap, prefix, len(records), partitions, "batch", topic)
            else:
                results[name] = _worker(bootstrap, prefix, len(records), partitions, target)
            print(f"{name:<22} {results[name]:>10,.0f} events/s", flush=True)
        latencies = _latency_run(bootstrap, partitions, rate, latency_s, seed) if target == "customs" else []
    finally:
        if node is not None:
            node.stop()
    report = {
        "benchmark": target,
        "events": len(records),
        "partitions": partitions,
        "events_per_s": {k: round(v, 1) for k, v in results.items()},
        "events_per_s_per_worker": round(results[pipeline], 1),
        "ratio_c_over_a": round(results[pipeline] / results["raw_aiokafka_decode"], 3),
        "ratio_c_over_b": round(results[pipeline] / results["faust_empty_agent"], 3),
        "bytes_per_open_order": _bytes_per_open_order() if target == "cbec" else None,
        "latency": {
            "offered_events_per_s": rate,
            "indicator_interval_s": 1.0,
            "probes": len(latencies),
            "p50_s": _round(_percentile(latencies, 0.5)),
            "p99_s": _round(_percentile(latencies, 0.99)),
        },
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


def _bytes_per_open_order(orders: int = 20_000) -> float:
    """Memory one open CBEC order takes in the tracker (state, index entries, its aggregates'
    share), measured with tracemalloc over ``orders`` orders that have a list but no release."""
    import tracemalloc

    import orjson

    from services.cbec.simulator import simulate
    from services.cbec.tracker import OrderTracker
    from services.common.codec import decode
    from services.common.state import StateStore

    class _Null:
        def put(self, partition: int, kind: str, name: str, value: bytes) -> None: ...
        def delete(self, partition: int, kind: str, name: str) -> None: ...
        def items(self, partition: int, kind: str) -> Any:
            return iter(())

        def owns(self, partition: int) -> bool:
            return True

        async def flush(self) -> None: ...

    store: StateStore = _Null()
    events = simulate(cases=orders, seed=3, start_s=time.time() - 86400, span_s=86400)
    open_events = [e for e in events if not (e["type"].endswith("status") and e["data"]["status"] != 120)]
    decoded = [decode(orjson.dumps(e), [], topic="cbec.events.v1") for e in open_events]
    tracker = OrderTracker(store=store, partitions=1)
    tracker.state(0)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for ev in decoded:
        tracker.on_event(0, ev)
    tracker.stage({0})
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return round(used / max(1, len(tracker.states[0].cases)), 1)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _latency_run(bootstrap: str, partitions: int, rate: float, seconds: float, seed: int) -> list[float]:
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    proc, port = _start_worker(bootstrap, prefix, partitions, "customs")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not web_ready(port):
            time.sleep(0.2)
        return asyncio.run(_latency(bootstrap, prefix, rate, seconds, seed))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
