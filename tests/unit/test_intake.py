"""The intake path: screening, dead-letter headers, durable dedup across a simulated restart."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest

from services.contract.codec import DlqReason
from services.contract.envelope import Event
from services.customs.events import CATALOG
from services.engine.records import DeadLetter, Origin, RawRecord, dead_letter
from services.engine.state import MemoryStore
from services.runtime.intake import Intake
from tests.factories import TOPIC, accepted_event, binary, record, structured
from tests.wiring import memory_store

NOW = datetime.fromisoformat("2025-03-02T12:00:00+08:00").timestamp()  # a day after the factories' events


class _Intake:
    """The intake, collecting what it rejects (the commit path dead-letters it)."""

    def __init__(self, store: MemoryStore, sent: list[DeadLetter], now: list[float]) -> None:
        self.intake = Intake(
            catalog=CATALOG, store=store, horizon_s=3600, max_bytes=4096, clock=lambda: now[0]
        )
        self.sent = sent

    async def take(self, records: list[RawRecord]) -> list[tuple[RawRecord, Event]]:
        result = self.intake.take(records)
        self.sent.extend(result.rejected)
        self.intake.checkpoint({r.partition for r in records})
        return result.accepted

    def checkpoint(self, partitions: list[int]) -> None:
        self.intake.checkpoint(partitions)


def _chunks(store: MemoryStore) -> int:
    """Deduplication chunks in the store."""
    return sum(1 for _, kind, _ in store.data if kind == "dedup")


def _intake(store: MemoryStore, sent: list[DeadLetter], *, now: list[float] | None = None) -> _Intake:
    return _Intake(store, sent, now or [NOW])


async def test_batch_splits_into_accepted_rejected_and_duplicates() -> None:
    store, sent = memory_store(), list[DeadLetter]()
    intake = _intake(store, sent)
    good = accepted_event()
    records = [
        record(structured(good)[1], structured(good)[0]),
        record(b"{oops", [("content-type", b"application/cloudevents+json")], offset=1),
        record(binary(good)[1], binary(good)[0], offset=2),
    ]
    accepted = await intake.take(records)
    assert [e.id for _, e in accepted] == [good["id"]]
    assert [(r.reason, r.origin.offset) for r in sent] == [(DlqReason.INVALID_JSON, 1)]


async def test_state_is_written_once_per_partition_per_batch_not_per_event() -> None:
    store, sent = memory_store(), list[DeadLetter]()
    intake = _intake(store, sent)
    records = [record(structured(accepted_event())[1], partition=i % 2, offset=i) for i in range(100)]
    await intake.take(records)
    assert _chunks(store) == 2


def test_a_refused_record_is_refused_once_also_after_a_restart_from_the_store() -> None:
    store = memory_store()
    origin = Origin(TOPIC, 0, 7)
    first = Intake(catalog=CATALOG, store=store, horizon_s=3600, max_bytes=4096, clock=lambda: NOW)
    assert first.first_refusal(0, origin)
    assert not first.first_refusal(0, origin)
    first.checkpoint([0])
    again = Intake(catalog=CATALOG, store=store, horizon_s=3600, max_bytes=4096, clock=lambda: NOW)
    assert not again.first_refusal(0, origin)
    assert again.first_refusal(0, Origin(TOPIC, 0, 8))


async def test_duplicates_are_recognised_after_a_restart_from_the_store() -> None:
    store, sent = memory_store(), list[DeadLetter]()
    event = accepted_event()
    first = _intake(store, sent)
    assert len(await first.take([record(structured(event)[1])])) == 1
    restarted = _intake(store, sent)
    again = await restarted.take([record(binary(event)[1], binary(event)[0], offset=1)])
    assert again == []


async def test_keys_expire_after_the_horizon_and_their_chunks_are_deleted() -> None:
    store, sent = memory_store(), list[DeadLetter]()
    now = [NOW]
    intake = _intake(store, sent, now=now)
    event = accepted_event()
    await intake.take([record(structured(event)[1])])
    assert _chunks(store) == 1
    now[0] += 3601
    intake.checkpoint([0])
    await store.flush()
    assert _chunks(store) == 0
    assert len(await intake.take([record(structured(event)[1], offset=1)])) == 1


def test_a_dead_letter_keeps_the_original_and_adds_the_contract_headers() -> None:
    rec = record(b"x", [("content-type", b"application/json")], partition=3, offset=42)
    letter = dead_letter(
        TOPIC + ".dlq", rec, DlqReason.INVALID_DATA, "data.entry_id: Field required", source=3
    )
    assert (letter.topic, letter.key, letter.value) == (TOPIC + ".dlq", rec.key, b"x")
    headers = dict(letter.headers)
    assert headers == {
        "content-type": b"application/json",
        "dlq_reason": b"invalid_data",
        "dlq_detail": b"data.entry_id: Field required",
        "dlq_topic": TOPIC.encode(),
        "dlq_partition": b"3",
        "dlq_offset": b"42",
    }


@pytest.mark.parametrize("size", [4096, 4097])
async def test_size_limit_is_inclusive(size: int) -> None:
    store, sent = memory_store(), list[DeadLetter]()
    intake = _intake(store, sent)
    event = accepted_event()
    value = orjson.dumps(event)
    padded = value[:-1] + b" " * (size - len(value)) + b"}"
    await intake.take([record(padded, [("content-type", b"application/cloudevents+json")])])
    assert len(sent) == (0 if size == 4096 else 1)


@pytest.mark.parametrize(("ahead_s", "refused"), [(300, False), (301, True), (10**11, True)])
async def test_events_stamped_beyond_the_clock_skew_are_invalid(ahead_s: int, refused: bool) -> None:
    store, sent = memory_store(), list[DeadLetter]()
    intake = _intake(store, sent)
    at = datetime.fromtimestamp(NOW + ahead_s, datetime.fromisoformat("2026-01-01T00:00:00+08:00").tzinfo)
    event = accepted_event(time=at.isoformat())
    accepted = await intake.take([record(structured(event)[1])])
    assert (len(sent), len(accepted)) == ((1, 0) if refused else (0, 1))
    if refused:
        assert sent[0].reason is DlqReason.INVALID_ENVELOPE
        assert sent[0].detail.startswith(f"time: {at.isoformat()} is ")
        assert "the limit is 300 s (TRADEPULSE_MAX_CLOCK_SKEW_S)" in sent[0].detail


async def test_the_year_9999_is_refused_with_its_time_named() -> None:
    store, sent = memory_store(), list[DeadLetter]()
    event = accepted_event(time="9999-12-31T23:59:59+08:00")
    assert await _intake(store, sent).take([record(structured(event)[1])]) == []
    assert "9999-12-31T23:59:59+08:00" in sent[0].detail


@pytest.mark.parametrize(("days", "refused"), [(399, False), (401, True), (20_513, True)])
async def test_events_older_than_the_allowed_age_are_invalid(days: int, refused: bool) -> None:
    """Contract section 1: a declaration 'lodged' in 1970 and released today is not a 56-year
    release time; it is refused as invalid_envelope, naming its time and the limit."""
    store, sent = memory_store(), list[DeadLetter]()
    at = datetime.fromtimestamp(
        NOW - days * 86400, datetime.fromisoformat("2026-01-01T00:00:00+08:00").tzinfo
    )
    event = accepted_event(time=at.isoformat())
    accepted = await _intake(store, sent).take([record(structured(event)[1])])
    assert (len(sent), len(accepted)) == ((1, 0) if refused else (0, 1))
    if refused:
        assert sent[0].reason is DlqReason.INVALID_ENVELOPE
        assert sent[0].detail.startswith(f"time: {at.isoformat()} is {days:,} days before")
        assert "the limit is 400 days (TRADEPULSE_MAX_EVENT_AGE_S)" in sent[0].detail


@pytest.mark.parametrize(
    ("attribute", "value", "rule"),
    [
        ("id", "evt\x00-1", "control characters"),
        ("id", "evt\x1b[31m-1", "control characters"),
        ("source", "/singlewindow/5141\r\nX-Injected: 1", "control characters"),
        ("source", "/singlewindow/../etax/4401", "'..' path segment"),
        ("source", "/singlewindow/%2e%2e/etax", "percent-encoded"),
        ("source", "/singlewindow%2Fetax", "percent-encoded"),
    ],
)
async def test_control_characters_and_dot_segments_are_refused(attribute: str, value: str, rule: str) -> None:
    store, sent = memory_store(), list[DeadLetter]()
    event = accepted_event(**{attribute: value})
    assert await _intake(store, sent).take([record(structured(event)[1])]) == []
    assert sent[0].reason is DlqReason.INVALID_ENVELOPE
    assert sent[0].detail.startswith(f"{attribute}: ")
    assert rule in sent[0].detail


async def test_a_detail_quotes_at_most_200_characters_of_a_value() -> None:
    """A 10,000-character subject was repeated whole in the dead letter's dlq_detail."""
    store, sent = memory_store(), list[DeadLetter]()
    event = accepted_event(subject="5" * 1000)
    assert await _intake(store, sent).take([record(structured(event)[1])]) == []
    assert "5" * 201 not in sent[0].detail
    assert "more characters" in sent[0].detail
