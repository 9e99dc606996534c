"""``tradepulse bench state``: what keeping N CBEC orders costs one ``tradepulse worker cbec``.

For each N the state topic of a fresh prefix is filled with N released orders as the engine
stores them (a sample of simulated orders is run through the engine in process, and each stored
order is copied under new order numbers), with their due-index entries and a week of
deduplication keys (six per order, the horizon's share). Then, against that topic:

1. rebuild: a worker starts without a local copy; records restored per second;
2. workload: returns for random kept orders (each one a read of a case not in memory) and new
   orders; the worker's RSS once they are processed (its caches full);
3. housekeeping: the duration of its passes (``tradepulse_housekeeping_seconds``);
4. restart: the worker is killed (SIGKILL) and started again on its local copy; the time from the
   start to its first processed event;
5. disk: bytes of the local copy per order.

RSS growth per order between the smallest and the largest N is what memory a kept order costs.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from services.contract.topics import partition_for
from services.devstack.probe import web_get
from services.devstack.process import free_port
from services.runtime.dedup import DEDUP_KIND, Chunk
from services.runtime.security import kafka_client
from services.tools.measure import REPO, bench_broker, save

__all__ = ["run_state_bench"]

PARTITIONS = 4
SAMPLE = 2000  # simulated orders run through the engine; stored orders are copies of these
DAY = 86400.0
KEEP_S = 30 * DAY  # final orders are kept 31 days: spread the kept ones over 30
DEDUP_HORIZON_S = 7 * DAY
EVENTS_PER_ORDER = 6
CHUNK_KEYS = 5000


def _templates(now_s: float) -> tuple[list[tuple[bytes, bytes]], dict[int, list[tuple[bytes, bytes]]]]:
    """(stored released orders as (doc, due name pattern)) and the other state of each partition
    (aggregates, tallies, watermark), from ``SAMPLE`` simulated orders run through the engine."""
    from services.cbec.domain import DOMAIN
    from services.cbec.simulator import simulate
    from services.contract.codec import decode
    from services.engine.cases import CaseEngine
    from services.engine.domain import Observer
    from services.engine.state import MemoryStore

    events = simulate(cases=SAMPLE, seed=5, start_s=now_s - KEEP_S, span_s=KEEP_S - DAY)
    events = [e for e in events if e["type"] != "cbec.return.requested"]
    settings = DOMAIN.settings()
    store = MemoryStore(PARTITIONS)
    engine = CaseEngine(DOMAIN, settings=settings, context=None, store=store, observer=Observer())
    for raw in events:
        event = decode(orjson.dumps(raw), [], catalog=DOMAIN.catalog)
        routed = DOMAIN.route(event)
        if routed is not None:
            engine.apply_event(partition_for(routed[1], PARTITIONS), *routed, event)
    engine.stage(set(range(PARTITIONS)))
    orders: list[tuple[bytes, bytes]] = []
    other: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in range(PARTITIONS)}
    for (p, kind, name), value in store.data.items():
        if kind == "order":
            entry = engine.entry(p, kind, name)
            if entry is not None and entry.case.completed:
                orders.append((name.encode(), value))
        elif kind != "due":
            other[p].append((f"{kind}|{name}".encode(), value))
    return orders, other


def _order_records(orders: list[tuple[bytes, bytes]], n: int) -> Any:
    """(partition, key, value) of ``n`` kept orders: copies of the templates under new numbers."""
    for i in range(n):
        name, doc = orders[i % len(orders)]
        ebp = name.split(b":", 1)[0]
        key = ebp + b":SO" + f"{i:014d}".encode()
        value = doc.replace(b'"' + name + b'"', b'"' + key + b'"', 1)
        due = orjson.loads(value)["d"]
        p = partition_for(key.decode(), PARTITIONS)
        yield p, b"order|" + key, value
        yield p, f"due|{due:010d}|order|".encode() + key, b""


def _chunk_records(n: int, now_s: float, rng: random.Random) -> Any:
    """(partition, key, value) of the deduplication keys of the orders within the horizon."""
    keys = int(n * DEDUP_HORIZON_S / KEEP_S) * EVENTS_PER_ORDER
    per_partition = keys // PARTITIONS
    for p in range(PARTITIONS):
        for c in range(0, per_partition, CHUNK_KEYS):
            created = now_s - DEDUP_HORIZON_S * (1 - c / max(1, per_partition)) + 60
            digests = tuple(rng.randbytes(16) for _ in range(min(CHUNK_KEYS, per_partition - c)))
            chunk = Chunk(f"{int(created * 1000):013d}-bench{p}-{c}", created, digests)
            yield p, f"{DEDUP_KIND}|{chunk.name}".encode(), chunk.encode()


async def _fill(bootstrap: str, topic: str, records: Any) -> int:
    """Send (partition, key, value) records to ``topic`` in large batches; returns how many."""
    producer = AIOKafkaProducer(**kafka_client(bootstrap), acks="all", max_request_size=40 << 20)
    await producer.start()
    count, pending = 0, []
    batches: dict[int, Any] = {}
    try:
        for p, key, value in records:
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = BatchBuilder(4 << 20, 0)
            if batch.append(key=key, value=value, timestamp=None, headers=[]) is None:
                pending.append(await producer.send_batch(batch, topic, partition=p))
                batch = batches[p] = BatchBuilder(4 << 20, 0)
                batch.append(key=key, value=value, timestamp=None, headers=[])
            count += 1
            if len(pending) > 64:
                await asyncio.gather(*pending)
                pending = []
        for p, batch in batches.items():
            pending.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count


async def _create_topics(bootstrap: str, prefix: str) -> str:
    """The cbec worker's topics, as it creates them; returns the state topic."""
    from services.registry import DOMAINS
    from services.runtime.kafka_admin import ensure_topics
    from services.runtime.settings import Settings
    from services.runtime.worker import worker_topics

    settings = Settings(KAFKA_BOOTSTRAP_SERVERS=bootstrap, topic_prefix=prefix, topic_partitions=PARTITIONS)
    specs = worker_topics(settings, DOMAINS["cbec"])
    await ensure_topics(kafka_client(bootstrap), specs, replication=1, timeout_s=30)
    return settings.topic("tradepulse-cbec-state")


def _workload(n: int, count: int, now_s: float, rng: random.Random) -> list[tuple[bytes, bytes, list[Any]]]:
    """Returns for random kept orders (half) and new orders' first events (half), as records."""
    from services.contract.envelope import cloud_event
    from services.simulation import iso

    out = []
    for i in range(count):
        at = iso(now_s - rng.uniform(0, 600))
        ebp = "4401986ABC"
        data: dict[str, Any]
        if i % 2 == 0:
            order = f"SO{rng.randrange(n):014d}"
            data = {"order_no": order, "ebp_code": ebp, "invt_no": "514120261000000001"}
            kind = "cbec.return.requested"
        else:
            order = f"SN{i:014d}"
            data = {"order_no": order, "ebp_code": ebp, "ebc_code": "4401960ABC", "ie_flag": "E",
                    "goods_value": {"amount": "100.00", "currency": "CNY"}}  # fmt: skip
            kind = "cbec.order.declared"
        subject = f"{ebp}:{order}"
        event = cloud_event(f"bench-{uuid.uuid4().hex}", f"/ceb/{ebp}", kind, at, subject, data)
        out.append(
            (subject.encode(), orjson.dumps(event), [("content-type", b"application/cloudevents+json")])
        )
    return out


class _Worker:
    """``tradepulse worker cbec`` for the benchmark, its log in the benchmark's folder."""

    def __init__(self, bootstrap: str, prefix: str, state_dir: Path, log: Path) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "TRADEPULSE_TOPIC_PREFIX": prefix,
            "TRADEPULSE_TOPIC_PARTITIONS": str(PARTITIONS),
            "TRADEPULSE_WEB_PORT": str(self.port),
            "TRADEPULSE_STATE_DIR": str(state_dir),
            "TRADEPULSE_LOG_FORMAT": "json",
            "TRADEPULSE_CBEC_HOUSEKEEPING_INTERVAL_S": "5",
        }
        self.log = log
        self.started = time.monotonic()
        with log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.cli", "worker", "cbec"], cwd=REPO,
                                         env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip

    def metric(self, name: str) -> float:
        status, text = web_get(self.port, "/metrics")
        if status != 200:
            return 0.0
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def wait(self, what: str, condition: Any, timeout_s: float = 3600.0) -> float:
        """Seconds from the start until ``condition()`` holds."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                msg = f"worker exited with {self.proc.returncode} waiting for {what}; see {self.log}"
                raise RuntimeError(msg)
            try:
                if condition():
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.05)
        msg = f"worker: no {what} within {timeout_s:.0f} s; see {self.log}"
        raise RuntimeError(msg)

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            line = next(line for line in f if line.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def restores(self) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("msg") == "state restored"]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


def _ready(worker: _Worker) -> bool:
    return web_get(worker.port, "/ready")[0] == 200


async def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, list[Any]]]) -> None:
    producer = AIOKafkaProducer(**kafka_client(bootstrap), acks="all", linger_ms=5)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, v, key=k, headers=h) for k, v, h in records])
    finally:
        await producer.stop()


async def fill_state(bootstrap: str, prefix: str, *, orders: int, now_s: float | None = None) -> int:
    """Fill the cbec state topic of ``prefix`` (created as the worker creates it) with ``orders``
    kept orders as the engine stores them, their due-index entries and a week of deduplication
    keys; returns how many records were written."""
    now_s = time.time() if now_s is None else now_s
    rng = random.Random(orders)
    topic = await _create_topics(bootstrap, prefix)
    stored, other = _templates(now_s)
    records = await _fill(bootstrap, topic, _order_records(stored, orders))
    records += await _fill(bootstrap, topic, _chunk_records(orders, now_s, rng))
    records += await _fill(bootstrap, topic, ((p, k, v) for p, kv in other.items() for k, v in kv))
    return records


def _measure(n: int, bootstrap: str, home: Path, workload: int) -> dict[str, Any]:
    rng = random.Random(n)
    now_s = time.time()
    prefix = f"state{uuid.uuid4().hex[:8]}."
    started = time.monotonic()
    records = asyncio.run(fill_state(bootstrap, prefix, orders=n, now_s=now_s))
    fill_s = time.monotonic() - started
    state_dir = home / f"state-{n}"
    log = home / f"worker-{n}.log"
    # 1. rebuild from the topic
    worker = _Worker(bootstrap, prefix, state_dir, log)
    try:
        ready_s = worker.wait("readiness", lambda: _ready(worker))
        restored = worker.restores()
        restored_records = sum(int(r["records"]) for r in restored)
        restore_s = max(float(r["seconds"]) for r in restored)
        # 2. workload
        asyncio.run(_produce(bootstrap, prefix + "cbec.events.v1", _workload(n, workload, now_s, rng)))
        worker.wait("the workload", lambda: worker.metric("tradepulse_events_processed_total") >= workload)
        rss = worker.rss_mb()
        # 3. housekeeping
        worker.wait(
            "a housekeeping pass", lambda: worker.metric("tradepulse_housekeeping_seconds_count") >= 2
        )
        passes = worker.metric("tradepulse_housekeeping_seconds_count")
        housekeeping_s = worker.metric("tradepulse_housekeeping_seconds_sum") / passes
        worker.kill()
        # 4. restart on the local copy
        asyncio.run(_produce(bootstrap, prefix + "cbec.events.v1", _workload(n, 1, now_s, rng)))
        worker = _Worker(bootstrap, prefix, state_dir, home / f"worker-{n}-restart.log")
        first_s = worker.wait(
            "a first event", lambda: worker.metric("tradepulse_events_processed_total") >= 1
        )
        local = worker.restores()
    finally:
        worker.stop()
    disk = sum(f.stat().st_size for f in state_dir.rglob("*") if f.is_file())
    return {
        "orders": n,
        "state_records": records,
        "fill_s": round(fill_s, 1),
        "rebuild": {
            "records": restored_records,
            "seconds": round(restore_s, 2),
            "records_per_s": round(restored_records / restore_s, 1) if restore_s else None,
            "ready_after_start_s": round(ready_s, 2),
        },
        "rss_mb_after_workload": round(rss, 1),
        "workload_events": workload,
        "housekeeping_pass_s": round(housekeeping_s, 4),
        "restart": {
            "first_processed_event_after_start_s": round(first_s, 2),
            "records_read_from_topic": sum(int(r["records"]) for r in local),
            "rebuilt": [r["rebuilt"] for r in local if r["rebuilt"]],
        },
        "disk_bytes": disk,
        "disk_bytes_per_order": round(disk / n, 1),
    }


def run_state_bench(*, orders: list[int], out: Path, workload: int = 20_000) -> dict[str, Any]:
    results = []
    with bench_broker("state") as (bootstrap, kafka, home):
        for n in orders:
            print(f"{n:,} kept orders ...", flush=True)
            result = _measure(n, bootstrap, home, workload)
            print(json.dumps(result), flush=True)
            results.append(result)
    small, large = results[0], results[-1]
    growth = None
    if large["orders"] > small["orders"]:
        growth = (large["rss_mb_after_workload"] - small["rss_mb_after_workload"]) * 1024 * 1024
        growth = round(growth / (large["orders"] - small["orders"]), 1)
    report = {
        "benchmark": "state",
        "service": "cbec",
        "partitions": PARTITIONS,
        "results": results,
        "rss_bytes_per_kept_order": growth,
    }
    save(out, report, kafka)
    print(json.dumps(report, indent=2))
    return report
