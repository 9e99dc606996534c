"""Publish CloudEvents by hand and read topics with their headers (``tradepulse publish|tail``)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.contract.catalog import Catalog
from services.contract.codec import STRUCTURED_HEADER, DecodeError, decode, encode
from services.registry import SOURCES
from services.runtime.kafka_admin import READ, WRITE, Access, require_access, require_topic
from services.runtime.permissions import Operation
from services.runtime.settings import Settings

__all__ = ["existing_topic", "publish_file", "tail_topic"]


def _read_events(path: str) -> list[Any]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        # Not one JSON document: JSON lines, and a line that is not JSON is sent as it is.
        return [line for line in text.splitlines() if line.strip()]
    return doc if isinstance(doc, list) else [doc]


def _encode(item: Any, *, binary: bool) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    if isinstance(item, str):  # a raw line that is not JSON, sent unchanged (to try the DLQ)
        return None, item.encode(), []
    if not isinstance(item, dict):
        return None, orjson.dumps(item), [STRUCTURED_HEADER]
    key = str(item["subject"]).encode() if isinstance(item.get("subject"), str) else None
    headers, value = encode(item, binary=binary)
    return key, value, headers


def _verdict(catalog: Catalog | None, value: bytes, headers: list[tuple[str, bytes]]) -> str:
    """What the topic's service will make of a record: nothing to say when it takes it; else the
    reason it will dead-letter it (publish sends what it is given, so that the dead-letter path
    can be tried by hand, but says so)."""
    if catalog is None:
        return ""
    try:
        decode(value, headers, catalog=catalog)
    except DecodeError as exc:
        return f"; not a valid event, the service will dead-letter it ({exc.reason.value}: {exc.detail})"
    return ""


async def publish_file(settings: Settings, topic: str, path: str, *, binary: bool) -> int:
    """Send each event of the file; prints partition and offset of each, and why an event the
    service will refuse is refused."""
    items = _read_events(path)  # a missing file is said before the broker is asked anything
    await existing_topic(settings, topic, WRITE)
    catalog = next((d.catalog for d in SOURCES.values() if d.topic == topic), None)
    producer = AIOKafkaProducer(**settings.kafka_client(), acks="all")
    await producer.start()
    try:
        for item in items:
            key, value, headers = _encode(item, binary=binary)
            meta = await producer.send_and_wait(settings.topic(topic), value, key=key, headers=headers)
            print(f"sent to {meta.topic}[{meta.partition}]@{meta.offset}{_verdict(catalog, value, headers)}")
    finally:
        await producer.stop()
    return 0


async def tail_topic(
    settings: Settings, topic: str, *, limit: int, timeout_s: float, everything: bool = False, grep: str = ""
) -> int:
    """Print the last ``limit`` records of each partition of a topic (``everything``: all of them):
    key, headers, value; with ``grep``, only the records whose printed line holds that text, found
    in the whole topic. Says on stderr what it showed and how to see more."""
    everything = everything or bool(grep)
    name = settings.topic(topic)
    count = await existing_topic(settings, topic, READ)
    consumer = AIOKafkaConsumer(
        **settings.kafka_client(),
        group_id=None,
        client_id=f"tradepulse-tail-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    await asyncio.sleep(0)  # let aiokafka's no-group routine start, or stop() re-raises its cancel
    try:
        tps = [TopicPartition(name, p) for p in range(count)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, 0 if everything else max(0, ends[tp] - limit))
        shown = read = 0
        deadline = asyncio.get_running_loop().time() + timeout_s
        cut_short = False
        while [tp for tp in tps if await _behind(consumer, tp, ends[tp])]:
            if asyncio.get_running_loop().time() > deadline:
                cut_short = True
                break
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    headers = {k: v.decode(errors="replace") for k, v in r.headers}
                    value = (r.value or b"").decode(errors="replace")
                    line = orjson.dumps(
                        {
                            "partition": r.partition,
                            "offset": r.offset,
                            "key": r.key.decode(errors="replace") if r.key else None,
                            "headers": headers,
                            "value": value,
                        }
                    ).decode()
                    read += 1
                    if grep in line:
                        print(line)
                        shown += 1
        total = sum(ends.values())
        if grep:
            said = f"{shown} of the {read:,} records of {name} hold {grep!r}"
        elif everything:
            said = f"all {shown:,} records of {name}"
        else:
            said = (f"{shown:,} records: the last {limit} of each of its {count} partitions ({total:,} in "
                    "all); --limit N for more, --all for every one, --grep TEXT to search them")  # fmt: skip
        if cut_short:
            said += f"; stopped after {timeout_s:g} s before the end, --timeout S for longer"
        print(f"({said})", file=sys.stderr)
    finally:
        await consumer.stop()
    return 0


async def existing_topic(settings: Settings, topic: str, ops: frozenset[Operation]) -> int:
    """The partition count of a topic the tools read or write; StartupError naming the fix if the
    broker is unreachable, the topic does not exist, or ``ops`` are not granted on it."""
    parts = topic.split(".")
    service = parts[1] if parts[0] in ("indicators", "cases") and len(parts) > 1 else parts[0]
    client, name = settings.kafka_client(), settings.topic(topic)
    count = await require_topic(
        client,
        name,
        timeout_s=settings.startup_timeout_s,
        fix=f"start its service (`tradepulse worker {service}` creates its topics) or create it",
    )
    access = Access({name: ops}, principal=settings.kafka.principal())
    await require_access(client, access, timeout_s=settings.startup_timeout_s)
    return count


async def _behind(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int) -> bool:
    return bool(await consumer.position(tp) < end)
