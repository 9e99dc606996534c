"""End-to-end latency for `tradepulse bench customs`: probe cases among simulated traffic at a
fixed offered load; a probe's latency runs from sending its release to the first indicator
record that counts it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.devstack.probe import web_ready
from services.tools.measure import customs_records, start_worker
from services.tools.simulate import Record

__all__ = ["latency_run"]

TOPIC = "customs.events.v1"


PROBE_ENTRY = "9999{year}0{serial:09d}"


def _probe_case(serial: int, base_s: float) -> list[Record]:
    """A tiny export declaration at customs office 9999: lodged then released 60 s later, both at
    event times inside one fixed hour, so each probe adds one to one indicator key's count."""
    from datetime import datetime

    from services.contract.envelope import cloud_event
    from services.engine.windows import SHANGHAI
    from services.simulation import iso
    from services.tools.simulate import encode

    entry = PROBE_ENTRY.format(year=datetime.fromtimestamp(base_s, SHANGHAI).year, serial=serial)
    at, source = base_s + serial * 0.001, "/bench/probe"
    lodging = {"entry_id": entry, "customs_code": "9999", "ie_flag": "E", "trade_mode": "0110",
               "transport_mode": "5", "credit_class": "aeo", "consignee_uscc": "91440101MA5C000001",
               "declared_value": {"amount": "1.00", "currency": "CNY"}}  # fmt: skip
    lodged = cloud_event(f"p{serial}-l", source, "customs.declaration.lodged", iso(at), entry, lodging)
    released = cloud_event(
        f"p{serial}-r", source, "customs.declaration.released", iso(at + 60), entry, {"entry_id": entry}
    )
    return [encode(lodged, binary=False), encode(released, binary=False)]


async def _latency(bootstrap: str, prefix: str, rate: float, seconds: float, seed: int) -> list[float]:
    """Offer ``rate`` events/s of simulated traffic plus a probe case every 0.5 s; the latency of a
    probe is from sending its release to the first indicator record that counts it."""
    from services.engine.windows import WindowKey, window_start

    hour = window_start(time.time() - 86400, 3600)  # inside the traffic's time range and retention
    base = hour + 600.0
    dims = (("customs_code", "9999"), ("ie_flag", "E"), ("transport_mode", "5"))
    key = WindowKey("customs.release_time", "PT1H", hour, dims).text
    from services.runtime.security import kafka_client

    load = customs_records(int(rate * seconds) + 1, seed)
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    producer = AIOKafkaProducer(**kafka_client(bootstrap), linger_ms=5)
    consumer = AIOKafkaConsumer(
        prefix + "indicators.customs.v1",
        **kafka_client(bootstrap),
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


def latency_run(bootstrap: str, partitions: int, rate: float, seconds: float, seed: int) -> list[float]:
    prefix = f"bench{uuid.uuid4().hex[:8]}."

    proc, port = start_worker(bootstrap, prefix, partitions, "customs")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not web_ready(port):
            time.sleep(0.2)
        return asyncio.run(_latency(bootstrap, prefix, rate, seconds, seed))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
