"""The intake path every input record crosses: decode, deduplicate, route bad input to the DLQ.

:func:`screen` is pure and does the per-record work; :class:`Intake` binds it to durable
deduplication state and to the dead-letter producer. Throughput: one pass over the batch, a
dictionary lookup and a ~10 µs decode per record, one state write per partition per batch.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.common.codec import DecodeError, DlqReason, Headers, decode
from services.common.dedup import Chunk, DedupIndex, digest
from services.common.events import Event
from services.common.metrics import (
    DEDUP_KEYS,
    EVENTS_ACCEPTED,
    EVENTS_CONSUMED,
    EVENTS_DUPLICATE,
    EVENTS_INVALID,
)
from services.common.state import StateStore

__all__ = ["Intake", "RawRecord", "Rejected", "Screened", "dlq_headers", "screen"]

DEDUP_KIND = "dedup"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One Kafka record as consumed, before any decoding."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record for the dead-letter topic, with why."""

    record: RawRecord
    reason: DlqReason
    detail: str


@dataclass(slots=True)
class Screened:
    """The outcome of screening one batch."""

    accepted: list[tuple[RawRecord, Event]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    duplicates: int = 0


def screen(
    records: Iterable[RawRecord],
    index_for: Callable[[int], DedupIndex],
    *,
    topic: str,
    max_bytes: int,
    now_s: float,
    max_skew_s: float,
) -> Screened:
    """Decode each record against ``topic``'s catalog, refuse events stamped further ahead of
    ``now_s`` than ``max_skew_s`` (contract section 1: one bad clock upstream must not move a
    watermark for everybody), and drop (source, id) seen before."""
    out = Screened()
    accept = out.accepted.append
    reject = out.rejected.append
    not_after_s = now_s + max_skew_s
    for record in records:
        try:
            event = decode(record.value, record.headers, topic=topic, max_bytes=max_bytes)
            if event.time.timestamp() > not_after_s:
                raise DecodeError(DlqReason.INVALID_ENVELOPE, _future(event, now_s, max_skew_s))
        except DecodeError as exc:
            reject(Rejected(record, exc.reason, exc.detail))
            continue
        if index_for(record.partition).add(digest(event.source, event.id)):
            accept((record, event))
        else:
            out.duplicates += 1
    return out


def _future(event: Event, now_s: float, max_skew_s: float) -> str:
    ahead_s = event.time.timestamp() - now_s
    now = datetime.fromtimestamp(now_s, event.time.tzinfo).isoformat(timespec="seconds")
    return (
        f"time: {event.time.isoformat()} is {ahead_s:,.0f} s ahead of this service's clock ({now}); "
        f"the limit is {max_skew_s:,.0f} s (TRADEPULSE_MAX_CLOCK_SKEW_S)"
    )


def dlq_headers(rejected: Rejected) -> list[tuple[str, bytes]]:
    """The original headers plus those of docs/contract.md section 3."""
    r = rejected.record
    return [
        *r.headers,
        ("dlq_reason", rejected.reason.value.encode()),
        ("dlq_detail", rejected.detail.encode()),
        ("dlq_topic", r.topic.encode()),
        ("dlq_partition", str(r.partition).encode()),
        ("dlq_offset", str(r.offset).encode()),
    ]


SendDlq = Callable[[Rejected], Awaitable[None]]


class Intake:
    """Screens batches of one input topic with deduplication state that survives restarts.

    ``topic`` is the contract name (it selects the catalog and labels metrics); records may come
    from a prefixed physical topic in tests.
    """

    def __init__(
        self,
        *,
        topic: str,
        store: StateStore,
        send_dlq: SendDlq,
        horizon_s: float,
        max_bytes: int,
        max_skew_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topic = topic
        self._store = store
        self._send_dlq = send_dlq
        self._horizon_s = horizon_s
        self._max_bytes = max_bytes
        self._max_skew_s = max_skew_s
        self._clock = clock
        self._indexes: dict[int, DedupIndex] = {}
        self._consumed = EVENTS_CONSUMED.labels(topic=topic)
        self._duplicate = EVENTS_DUPLICATE.labels(topic=topic)
        self._accepted = EVENTS_ACCEPTED.labels(topic=topic)
        self._keys = DEDUP_KEYS.labels(topic=topic)

    def index_for(self, partition: int) -> DedupIndex:
        """The partition's index, rebuilt from the recovered table the first time it is needed."""
        index = self._indexes.get(partition)
        if index is None:
            now = self._clock()
            chunks = [Chunk.decode(n, v) for n, v in self._store.items(partition, DEDUP_KIND)]
            index = DedupIndex.restore(self._horizon_s, chunks, now)
            for name in index.stale_names(chunks, now):
                self._store.delete(partition, DEDUP_KIND, name)
            self._indexes[partition] = index
        return index

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop in-memory indexes of revoked partitions; they are rebuilt if assigned again."""
        for p in partitions:
            self._indexes.pop(p, None)

    async def take(self, records: Sequence[RawRecord]) -> list[tuple[RawRecord, Event]]:
        """Screen one batch, dead-letter bad records, persist new keys; returns the new events.

        Records of partitions revoked while the batch was in hand are left for the new owner.
        """
        records = [r for r in records if self._store.owns(r.partition)]
        self._consumed.inc(len(records))
        result = screen(
            records,
            self.index_for,
            topic=self.topic,
            max_bytes=self._max_bytes,
            now_s=self._clock(),
            max_skew_s=self._max_skew_s,
        )
        for rejected in result.rejected:
            EVENTS_INVALID.labels(topic=self.topic, reason=rejected.reason.value).inc()
            await self._send_dlq(rejected)
        if result.duplicates:
            self._duplicate.inc(result.duplicates)
        self._accepted.inc(len(result.accepted))
        self.checkpoint({r.partition for r in records})
        return result.accepted

    def checkpoint(self, partitions: Iterable[int]) -> None:
        """Stage keys added since the last checkpoint, and deletions of expired chunks, in the store.

        The caller flushes the store once per batch, after the service logic has staged its own
        changes, and only then acknowledges the batch.
        """
        now = self._clock()
        for p in partitions:
            if not self._store.owns(p):
                continue
            index = self.index_for(p)
            chunk = index.cut(now)
            if chunk is not None:
                self._store.put(p, DEDUP_KIND, chunk.name, chunk.encode())
            for name in index.expire(now):
                self._store.delete(p, DEDUP_KIND, name)
        self._keys.set(sum(len(i) for i in self._indexes.values()))
