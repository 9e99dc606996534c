"""``tradepulse bench gateway``: events/s accepted and request latency through the HTTP gateway,
against producing the same events to Kafka directly, in the same run (JSON result).

Both routes send the same customs events with the same concurrency and wait for Kafka's
acknowledgement (``acks=all``) before counting an event: the gateway answers 202 only then, and
the direct producer awaits each batch's futures. Two shapes per route: one event per request
(what a back office posting events one by one does) and batches of ``batch`` events. Latency is
per request (per batch for the direct route). Rounds are interleaved; medians are reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson
import yaml

from services.contract.codec import STRUCTURED_HEADER
from services.devstack.probe import web_get
from services.devstack.process import free_port
from services.gateway.credentials import new_key
from services.registry import SOURCES
from services.runtime.kafka_admin import TopicSpec, ensure_topics
from services.runtime.security import kafka_client
from services.tools.measure import bench_broker, interleaved, percentile, rates, save

__all__ = ["run_gateway_bench"]

TOPIC = "customs.events.v1"


def _events(n: int, seed: int) -> list[dict[str, Any]]:
    from services.customs.simulator import simulate
    from services.tools.simulate import happened

    events: list[dict[str, Any]] = []
    cases = max(1, n // 6)
    start_s = time.time() - 10 * 86400  # recent: the gateway refuses events older than 400 days
    while len(events) < n:
        simulated = simulate(cases=cases, seed=seed + len(events), start_s=start_s, span_s=86400)
        events += happened(simulated)[0]  # and events in the future
    return events[:n]


async def _via_gateway(
    url: str, key: str, events: list[dict[str, Any]], batch: int, concurrency: int
) -> tuple[float, list[float]]:
    import aiohttp

    if batch == 1:
        bodies = [(orjson.dumps(e), "application/cloudevents+json") for e in events]
    else:
        bodies = [(orjson.dumps(events[i : i + batch]), "application/cloudevents-batch+json")
                  for i in range(0, len(events), batch)]  # fmt: skip
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    headers = {"Authorization": f"Bearer {key}"}

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body, content_type = queue.get_nowait()
            started = time.perf_counter()
            async with session.post(
                url, data=body, headers={**headers, "Content-Type": content_type}
            ) as answer:
                await answer.read()
                if answer.status != 202:
                    msg = f"gateway answered {answer.status}"
                    raise RuntimeError(msg)
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(events) / elapsed, latencies


async def _direct(
    bootstrap: str, topic: str, events: list[dict[str, Any]], batch: int, concurrency: int
) -> tuple[float, list[float]]:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2)
    await producer.start()
    headers = [STRUCTURED_HEADER]
    chunks = [events[i : i + batch] for i in range(0, len(events), batch)]
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)
    latencies: list[float] = []

    async def client() -> None:
        while not queue.empty():
            chunk = queue.get_nowait()
            started = time.perf_counter()
            futures = [await producer.send(topic, orjson.dumps(e), key=e["subject"].encode(), headers=headers)
                       for e in chunk]  # fmt: skip
            await asyncio.gather(*futures)
            latencies.append(time.perf_counter() - started)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return len(events) / elapsed, latencies


def run_gateway_bench(
    *, events: int, out: Path, rounds: int = 3, batch: int = 100, concurrency: int = 8
) -> dict[str, Any]:
    """Start a gateway of the benchmark's own, run both routes ``rounds`` times."""
    key, digest = new_key()
    corpus = _events(events, 11)
    with bench_broker("bench-gw") as (bootstrap, kafka, home):
        credentials = home / "credentials.yaml"
        entry = {"name": "bench", "key_sha256": digest, "sources": ["/"], "types": ["*"],
                 "rate_per_s": 1e9, "burst": 10**9}  # fmt: skip
        credentials.write_text(yaml.safe_dump({"credentials": [entry]}))
        specs = [TopicSpec(d.topic, 4) for d in SOURCES.values()]
        asyncio.run(ensure_topics(kafka_client(bootstrap), specs, replication=1, timeout_s=20))
        port = free_port()
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TRADEPULSE_GATEWAY_PORT": str(port),
               "TRADEPULSE_GATEWAY_CREDENTIALS_FILE": str(credentials),
               "TRADEPULSE_LOG_LEVEL": "warning"}  # fmt: skip
        with (home / "gateway.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "gateway"], env=env, stdout=log, stderr=log
            )
        try:
            deadline = time.monotonic() + 60
            while web_get(port, "/ready")[0] != 200:
                if proc.poll() is not None or time.monotonic() > deadline:
                    msg = f"the gateway did not start; see {home / 'gateway.log'}"
                    raise RuntimeError(msg)
                time.sleep(0.2)
            url = f"http://127.0.0.1:{port}/events"
            routes: dict[str, Callable[[], Coroutine[Any, Any, tuple[float, list[float]]]]] = {
                "gateway_single": lambda: _via_gateway(url, key, corpus, 1, concurrency),
                "direct_single": lambda: _direct(bootstrap, TOPIC, corpus, 1, concurrency),
                "gateway_batch": lambda: _via_gateway(url, key, corpus, batch, concurrency),
                "direct_batch": lambda: _direct(bootstrap, TOPIC, corpus, batch, concurrency),
            }
            variants = {name: _rate_and_p99(route) for name, route in routes.items()}
            runs = interleaved(
                rounds, variants, lambda m: f"{m[0]:>9,.0f} events/s  p99 {m[1] * 1000:7.1f} ms"
            )
        finally:
            proc.terminate()
            proc.wait(30)
    rate = {name: [r for r, _ in measured] for name, measured in runs.items()}
    median = {name: statistics.median(v) for name, v in rate.items()}
    report = {
        "benchmark": "gateway",
        "events": len(corpus),
        "rounds": rounds,
        "batch": batch,
        "concurrency": concurrency,
        **rates(rate),
        "p99_ms": {name: round(statistics.median(p for _, p in m) * 1000, 2) for name, m in runs.items()},
        "ratio_gateway_over_direct": {
            "single": round(median["gateway_single"] / median["direct_single"], 3),
            "batch": round(median["gateway_batch"] / median["direct_batch"], 3),
        },
    }
    save(out, report, kafka)
    print(json.dumps(report["events_per_s"]), json.dumps(report["p99_ms"]))
    return report


def _rate_and_p99(
    route: Callable[[], Coroutine[Any, Any, tuple[float, list[float]]]],
) -> Callable[[], tuple[float, float]]:
    def measure() -> tuple[float, float]:
        rate, latencies = asyncio.run(route())
        return rate, percentile(latencies, 0.99) or float("nan")

    return measure
