"""The intake path against the real broker: every class of bad input reaches the DLQ with its
reason while the worker keeps running; duplicates count once, across restarts and rebalances."""

from __future__ import annotations

from typing import Any

import orjson

from services.contract.codec import DlqReason
from tests.factories import accepted_event, binary, lodged_event, structured
from tests.integration.harness import Headers, StartWorker, eventually, produce, read_all

TOPIC = "customs.events.v1"
CE_JSON = [("content-type", b"application/cloudevents+json")]


def _without(event: dict[str, Any], attribute: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != attribute}


def _bad_cases() -> list[tuple[str, Headers, bytes, DlqReason, str]]:
    """(name, headers, value, expected reason, text the detail must contain)."""
    cases: list[tuple[str, Headers, bytes, DlqReason, str]] = [
        ("not json", CE_JSON, b"{this is not json", DlqReason.INVALID_JSON, "not JSON"),
        ("json array", CE_JSON, b"[1,2,3]", DlqReason.INVALID_ENVELOPE, "an array"),
        ("binary data not json", binary(accepted_event())[0], b"<xml/>", DlqReason.INVALID_JSON, "not JSON"),
        (
            "bad time",
            *structured(accepted_event(time="01/03/2025 08:30")),
            DlqReason.INVALID_ENVELOPE,
            "time",
        ),
        (
            "unknown type",
            *structured(accepted_event(type="customs.goods.teleported")),
            DlqReason.UNKNOWN_TYPE,
            "type",
        ),
        ("data field missing", *structured(accepted_event(data={})), DlqReason.INVALID_DATA, "data.entry_id"),
        (
            "data field wrong type",
            *structured(lodged_event(credit_class=3)),
            DlqReason.INVALID_DATA,
            "data.credit_class",
        ),
        (
            "over size limit",
            *structured(accepted_event(data={"entry_id": "x", "pad": "y" * 3000})),
            DlqReason.INVALID_ENVELOPE,
            "over the limit",
        ),
    ]
    for attribute in ("specversion", "id", "source", "type", "time", "subject"):
        headers, value = structured(_without(accepted_event(), attribute))
        cases.append((f"missing {attribute}", headers, value, DlqReason.INVALID_ENVELOPE, attribute))
        headers, value = binary(_without(accepted_event(), attribute))
        cases.append((f"binary missing {attribute}", headers, value, DlqReason.INVALID_ENVELOPE, attribute))
    return cases


async def test_every_class_of_bad_input_lands_in_the_dlq_and_the_worker_keeps_running(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    worker = start_worker("customs", TRADEPULSE_MAX_RECORD_BYTES="2048")
    cases = _bad_cases()
    good = accepted_event()
    records = [(name.encode(), value, headers) for name, headers, value, _, _ in cases]
    records.append((b"good", *reversed(structured(good))))  # type: ignore[arg-type]
    names = [*(name for name, *_ in cases), "good"]
    coordinates = dict(zip(names, await produce(kafka_bootstrap, prefix + TOPIC, records), strict=True))

    dead = await read_all(kafka_bootstrap, prefix + TOPIC + ".dlq", expect=len(cases))
    by_key = {r.key.decode(): r for r in dead if r.key}
    assert sorted(by_key) == sorted(name for name, *_ in cases)
    for name, headers, value, reason, detail in cases:
        rec = by_key[name]
        got = dict(rec.headers)
        assert rec.value == value, f"{name}: value changed on its way to the DLQ"
        assert got["dlq_reason"].decode() == reason.value, f"{name}: {got}"
        assert detail in got["dlq_detail"].decode(), f"{name}: {got['dlq_detail']!r}"
        assert got["dlq_topic"].decode() == prefix + TOPIC
        assert (int(got["dlq_partition"]), int(got["dlq_offset"])) == coordinates[name]
        for k, v in headers:
            assert got[k] == v, f"{name}: original header {k} lost"

    worker.wait_metric("tradepulse_events_accepted_total", 1, topic=TOPIC)
    assert worker.metric("tradepulse_events_consumed_total", topic=TOPIC) == len(cases) + 1
    assert worker.metric("tradepulse_events_invalid_total", topic=TOPIC) == len(cases)
    assert worker.metric("tradepulse_events_invalid_total", topic=TOPIC, reason="unknown_type") == 1
    # every record, dead-lettered or taken, counts as processed once its batch is acknowledged
    worker.wait_metric("tradepulse_events_processed_total", len(cases) + 1, topic=TOPIC)
    assert worker.get("/health")[0] == 200


async def test_both_content_modes_are_one_event_to_deduplication(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    worker = start_worker("customs")
    event = lodged_event()
    await produce(
        kafka_bootstrap,
        prefix + TOPIC,
        [
            (b"k", *reversed(structured(event))),  # type: ignore[list-item]
            (b"k", *reversed(binary(event))),  # type: ignore[list-item]
        ],
    )
    worker.wait_metric("tradepulse_events_consumed_total", 2, topic=TOPIC)
    assert worker.metric("tradepulse_events_accepted_total", topic=TOPIC) == 1
    assert worker.metric("tradepulse_events_duplicate_total", topic=TOPIC) == 1


async def test_duplicates_count_once_across_a_worker_restart(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    first, second, third = accepted_event(), accepted_event(), accepted_event()

    def rec(event: dict[str, Any], mode: Any = structured) -> tuple[bytes, bytes, Headers]:
        headers, value = mode(event)
        return event["subject"].encode(), value, headers

    worker = start_worker("customs")
    await produce(kafka_bootstrap, prefix + TOPIC, [rec(first), rec(second, binary), rec(first, binary)])
    worker.wait_metric("tradepulse_events_consumed_total", 3, topic=TOPIC)
    assert worker.metric("tradepulse_events_accepted_total", topic=TOPIC) == 2
    assert worker.metric("tradepulse_events_duplicate_total", topic=TOPIC) == 1
    assert worker.stop() == 0

    restarted = start_worker("customs")
    await produce(kafka_bootstrap, prefix + TOPIC, [rec(first), rec(second), rec(third)])
    restarted.wait_metric("tradepulse_events_consumed_total", 3, topic=TOPIC)
    assert restarted.metric("tradepulse_events_accepted_total", topic=TOPIC) == 1
    assert restarted.metric("tradepulse_events_duplicate_total", topic=TOPIC) == 2


async def test_dedup_state_follows_partitions_to_a_second_worker(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    events = [
        accepted_event(subject=f"51412025000000{i:04d}", data={"entry_id": f"51412025000000{i:04d}"})
        for i in range(40)
    ]
    records = [(e["subject"].encode(), orjson.dumps(e), CE_JSON) for e in events]
    one = start_worker("customs")
    await produce(kafka_bootstrap, prefix + TOPIC, records)
    one.wait_metric("tradepulse_events_accepted_total", 40, topic=TOPIC)

    two = start_worker("customs")  # the group rebalances: two takes over some partitions
    await produce(kafka_bootstrap, prefix + TOPIC, records)

    def duplicates() -> float:
        return sum(w.metric("tradepulse_events_duplicate_total", topic=TOPIC) for w in (one, two))

    await eventually(lambda: duplicates() >= 40, timeout_s=30)
    report = {
        f"worker{i}": {
            m: w.metric(f"tradepulse_events_{m}_total", topic=TOPIC)
            for m in ("consumed", "accepted", "duplicate")
        }
        for i, w in enumerate((one, two))
    }
    assert duplicates() == 40, (report, one.log, two.log)
    accepted = sum(w.metric("tradepulse_events_accepted_total", topic=TOPIC) for w in (one, two))
    assert accepted == 40, "an event was taken twice after the rebalance"
    assert two.metric("tradepulse_events_consumed_total", topic=TOPIC) > 0, "no partition moved"
    said = [orjson.loads(line)["msg"] for line in one.log.read_text().splitlines()]
    assert "partitions revoked" in said  # the rebalance shows in the first worker's log
    assert said.count("state restored") >= 2  # ... and so does what it kept (never held back)
