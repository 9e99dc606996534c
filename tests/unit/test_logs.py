"""Structured logs: one JSON object per line; a storm of one client error is held back."""

from __future__ import annotations

import logging

import orjson

from services.runtime.logs import JsonFormatter, Quieter, RepeatFilter


def _record(msg: str, at: float, name: str = "aiokafka") -> logging.LogRecord:
    record = logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (), None)
    record.created = at
    return record


def test_the_same_message_passes_once_per_period_and_then_says_how_often_it_came() -> None:
    repeats = RepeatFilter(every_s=30)
    passed = [repeats.filter(_record("Unable connect to node %s", at)) for at in (0, 0.1, 0.2, 29.9, 30.5)]
    assert passed == [True, False, False, False, True]
    last = _record("Unable connect to node %s", 61)
    assert repeats.filter(last)
    assert getattr(last, "repeated", 0) == 0  # nothing was held back since 30.5


def test_the_count_of_held_back_records_is_logged_with_the_next_one() -> None:
    repeats = RepeatFilter(every_s=30)
    for at in (0, 1, 2, 3):
        repeats.filter(_record("Failed fetch messages", at))
    record = _record("Failed fetch messages", 40)
    assert repeats.filter(record)
    assert orjson.loads(JsonFormatter().format(record))["repeated"] == 3


def test_different_messages_and_loggers_are_counted_apart() -> None:
    repeats = RepeatFilter(every_s=30)
    assert repeats.filter(_record("a", 0))
    assert repeats.filter(_record("b", 0))
    assert repeats.filter(_record("a", 0, name="services.worker"))


def test_audit_records_are_never_held_back() -> None:
    """The gateway logs every refusal with its credential, however many come."""
    repeats = RepeatFilter(every_s=30)
    records = [_record("request refused", at, name="tradepulse.gateway") for at in (0, 0.1, 0.2)]
    for record in records:
        record.audit = True
    assert all(repeats.filter(r) for r in records)


def test_mode_service_lifecycle_and_the_false_alarms_of_a_rebalance_show_only_at_debug() -> None:
    quiet, debug = Quieter(), Quieter(debug=True)
    noise = [
        _record("[^--Web]: Starting...", 0, "faust.web.drivers.aiohttp"),
        _record("[^HistoryStore]: Stopping...", 0, "services.tools.history"),
        _record("[^-App]: Missing sensor state for rebalance #1", 0, "faust.app.base"),
        _record("Heartbeat failed for group %s because it is rebalancing", 0, "aiokafka.consumer"),
    ]
    assert not any(quiet.filter(r) for r in noise)
    assert all(debug.filter(r) for r in noise)
    kept = [
        _record("state restored", 0, "services.engine.state"),
        _record("[^--Consumer]: Starting... failed: broker gone", 0, "faust.transport"),
        _record("Heartbeat failed for group %s: generation id is not  current.", 0, "aiokafka.consumer"),
        _record("Heartbeat failed: %r", 0, "aiokafka.consumer"),
    ]
    assert all(quiet.filter(r) for r in kept)


def test_info_lines_are_never_held_back() -> None:
    """A second "state restored" within the period is a rebalance: it must show."""
    repeats = RepeatFilter(every_s=30)
    for at in (0, 1, 2):
        record = _record("state restored", at, "services.engine.state")
        record.levelno, record.levelname = logging.INFO, "INFO"
        assert repeats.filter(record)


def test_a_leader_being_elected_is_no_error_but_other_offset_failures_are() -> None:
    """Just after the release creates its topics, aiokafka logs an ERROR for each partition whose
    leader is not elected yet, and retries at once; any other cause still shows."""
    quiet = Quieter()
    electing = _record("Failed fetch offsets from %s: %s", 0, "aiokafka.consumer.fetcher")
    electing.args = (
        1,
        "[Error 6] NotLeaderForPartitionError: TopicPartition(topic='cases.cips.v1', partition=0)",
    )
    other = _record("Failed fetch offsets from %s: %s", 0, "aiokafka.consumer.fetcher")
    other.args = (1, "[Error 29] TopicAuthorizationFailedError: cases.cips.v1")
    assert not quiet.filter(electing)
    assert quiet.filter(other)
