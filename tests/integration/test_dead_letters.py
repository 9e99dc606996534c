"""Dead letters on the real broker: the original record on every path (also for an event the
service had forwarded to its case's partition), and each refused record once, also when a worker
dies between writing a dead letter and committing its input."""

from __future__ import annotations

from typing import Any

import orjson

from services.contract.topics import partition_for
from tests.factories import accepted_event, lodged_event, structured
from tests.integration.harness import StartWorker, eventually, produce, read_all, read_to_end
from tests.integration.test_customs import CUSTOMS, TOPIC

DAY = 86400


def _entry(n: int, partition: int | None = None, *, other_than: int | None = None) -> str:
    """An export entry number of office 5141 whose partition (of 4) is, or is not, the one given."""
    for i in range(n, n + 10_000):
        entry = f"514120250000{i:06d}"
        p = partition_for(entry, 4)
        if (partition is None or p == partition) and (other_than is None or p != other_than):
            return entry
    raise AssertionError("no such entry")


def _event(type_: str, entry: str, at: str, n: int) -> dict[str, Any]:
    if type_ == "customs.declaration.lodged":
        lodged = lodged_event(entry_id=entry, customs_code="5141", ie_flag="E", bill_no=None)
        return {**lodged, "id": f"{entry}-{n}", "time": at}
    return accepted_event(type=type_, subject=entry, data={"entry_id": entry}, id=f"{entry}-{n}", time=at)


def _keyed(event: dict[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    headers, value = structured(event)
    return event["subject"].encode(), value, headers


async def test_a_forwarded_event_too_late_for_its_windows_is_dead_lettered_as_produced(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    worker = start_worker("customs", **CUSTOMS.fast, TRADEPULSE_CUSTOMS_WINDOW_RETENTION_S=str(DAY))
    old = _entry(1)
    home = partition_for(old, 4)
    later = _entry(500, home)  # on the same partition: moves its watermark ten days on
    day0, day10 = "2025-03-01T08:00:00+08:00", "2025-03-11T08:00:00+08:00"
    first = [
        _event("customs.declaration.lodged", old, day0, 0),
        _event("customs.declaration.released", old, "2025-03-01T09:00:00+08:00", 1),
        _event("customs.declaration.lodged", later, day10, 0),
    ]
    await produce(kafka_bootstrap, prefix + TOPIC, [_keyed(e) for e in first])
    worker.wait_metric("tradepulse_events_processed_total", 3, topic=TOPIC)
    # an acceptance of the old declaration, keyed so that it lands on another partition
    late = _event("customs.declaration.accepted", old, "2025-03-01T08:10:00+08:00", 2)
    headers, value = structured(late)
    key = _entry(900, other_than=home).encode()
    ((partition, offset),) = await produce(kafka_bootstrap, prefix + TOPIC, [(key, value, headers)])
    assert partition != home
    (letter,) = await read_all(kafka_bootstrap, prefix + TOPIC + ".dlq", expect=1)
    got = dict(letter.headers)
    assert (letter.key, letter.value) == (key, value), "not the record as it was produced"
    assert got["content-type"] == headers[0][1]
    assert got["dlq_reason"] == b"processing_error"
    assert b"older than the retention" in got["dlq_detail"]
    assert got["dlq_topic"].decode() == prefix + TOPIC
    assert (int(got["dlq_partition"]), int(got["dlq_offset"])) == (partition, offset)
    (original,) = [
        r
        for r in await read_to_end(kafka_bootstrap, prefix + TOPIC)
        if r.offset == offset and r.partition == partition
    ]
    assert letter.timestamp == original.timestamp, "the original's timestamp (time retention counts from it)"
    worker.wait_metric("tradepulse_events_invalid_total", 1, topic=TOPIC, reason="processing_error")


async def test_each_refused_record_is_dead_lettered_once_across_a_kill_before_the_commit(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    never = {"TRADEPULSE_COMMIT_INTERVAL_S": "60"}  # nothing is committed before the kill
    first = start_worker("customs", **CUSTOMS.fast, **never)
    good = [
        _event("customs.declaration.accepted", _entry(i * 7), "2025-03-01T08:00:00+08:00", 0)
        for i in range(1, 6)
    ]
    bad = [orjson.dumps({**e, "data": {}}) for e in good[:3]]  # data.entry_id missing
    records: list[Any] = [_keyed(e) for e in good]
    records += [
        (b"bad-%d" % i, value, [("content-type", b"application/cloudevents+json")])
        for i, value in enumerate(bad)
    ]
    await produce(kafka_bootstrap, prefix + TOPIC, records)
    first.wait_metric("tradepulse_events_processed_total", len(records), topic=TOPIC)  # dead letters flushed
    first.kill()

    second = start_worker("customs", **CUSTOMS.fast)  # reads everything again: nothing was committed
    assert await eventually(lambda: CUSTOMS.consumed([second]) >= len(records), timeout_s=60)
    second.wait_metric("tradepulse_events_processed_total", len(records), topic=TOPIC)
    assert second.metric("tradepulse_events_duplicate_total", topic=TOPIC) == len(good)
    assert second.metric("tradepulse_events_invalid_total", topic=TOPIC) == 0, "counted again"
    dead = await read_to_end(kafka_bootstrap, prefix + TOPIC + ".dlq")
    assert sorted(r.value for r in dead) == sorted(bad), "a refused record is on the dead-letter topic twice"
