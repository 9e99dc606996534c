"""The engine's view of Kafka records: what it reads, what it writes, and dead letters to write.

Nothing here talks to Kafka: the runtime fills :class:`RawRecord` s from the consumer and sends
:class:`Out` records with the state store's producer (or, in tests, an in-memory wiring does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from services.contract.codec import DlqReason

__all__ = ["DeadLetter", "Headers", "Origin", "Out", "RawRecord", "dead_letter"]

Headers = Sequence[tuple[str, bytes]]


class Origin(NamedTuple):
    """Where an input record was read: its physical topic, partition and offset."""

    topic: str
    partition: int
    offset: int


class RawRecord(NamedTuple):
    """One Kafka record as consumed, before any decoding."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int | None = None

    @property
    def origin(self) -> Origin:
        return Origin(self.topic, self.partition, self.offset)


class Out(NamedTuple):
    """A record to write. ``source`` is the input partition whose processing produced it: if that
    partition is taken away before the flush, its outputs are dropped with its state."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: Headers = ()
    timestamp_ms: int | None = None
    source: int | None = None


class DeadLetter(NamedTuple):
    """An input record to dead-letter, refused while processing ``partition``. ``record`` is the
    original when it is at hand (the intake); a record whose effect was refused later (a forwarded
    event, a message between cases) names its ``origin`` only, and the runtime reads the original
    back from the input topic; ``copy`` is TradePulse's own copy (without personal data) for when
    the original is gone (retention)."""

    origin: Origin
    reason: DlqReason
    detail: str
    partition: int
    record: RawRecord | None = None
    copy: bytes | None = None


def dead_letter(dlq: str, record: RawRecord, reason: DlqReason, detail: str, *, source: int) -> Out:
    """The one way a dead letter is built (docs/contract.md section 3): the original key, value,
    headers and timestamp, plus ``dlq_reason``, ``dlq_detail`` and the original coordinates."""
    headers = [
        *record.headers,
        ("dlq_reason", reason.value.encode()),
        ("dlq_detail", detail.encode()),
        ("dlq_topic", record.topic.encode()),
        ("dlq_partition", str(record.partition).encode()),
        ("dlq_offset", str(record.offset).encode()),
    ]
    return Out(dlq, record.key, record.value, None, headers, record.timestamp_ms, source)
