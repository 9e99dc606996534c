"""The intake every input record crosses: decode, refuse, deduplicate (docs/contract.md sections 1-3).

:func:`screen` is pure and does the per-record work; :class:`Intake` binds it to durable
deduplication state. Deduplication remembers two kinds of keys per input partition: the
(``source``, ``id``) of every event taken, and the coordinates of every record refused. Both are
written with the batch's state, after its effects and its dead letters (the commit path), so after
a crash a redelivered event is not taken twice and a redelivered bad record is not dead-lettered
twice.
"""

from __future__ import annotations

import math
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import Counter

from services.contract.catalog import Catalog
from services.contract.codec import DecodeError, DlqReason, decode
from services.contract.envelope import Event
from services.engine.records import DeadLetter, Origin, RawRecord
from services.engine.state import StateStore
from services.runtime.dedup import DEDUP_KIND, DedupIndex, digest
from services.runtime.metrics import DEDUP_KEYS, EVENTS_ACCEPTED, EVENTS_CONSUMED, EVENTS_DUPLICATE

__all__ = ["DEDUP_KIND", "Intake", "Screened", "screen"]

_KEY_COUNT = ("meta", "dedup_keys")  # where a partition's number of deduplication keys is kept
EXPIRE_EVERY_S = 10.0  # how often a partition's chunks past the horizon are looked for


@dataclass(slots=True)
class Screened:
    """The outcome of screening one batch."""

    accepted: list[tuple[RawRecord, Event]] = field(default_factory=list)
    rejected: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0


def screen(
    records: Iterable[RawRecord],
    index_for: Callable[[int], DedupIndex],
    *,
    catalog: Catalog,
    max_bytes: int,
    now_s: float,
    max_skew_s: float,
    max_age_s: float = math.inf,
    deduplicate: bool = True,
) -> Screened:
    """Decode each record against ``catalog``, refuse events stamped further ahead of ``now_s``
    than ``max_skew_s`` or older than ``max_age_s`` (docs/contract.md section 1: one bad clock
    upstream must not move a watermark for everybody, and no measure may come from a milestone
    in 1970), and drop (source, id) seen before (unless ``deduplicate`` is off)."""
    out = Screened()
    reject = out.rejected.append
    not_after_s, not_before_s = now_s + max_skew_s, now_s - max_age_s
    valid: list[tuple[RawRecord, Event]] = []
    for record in records:
        try:
            event = decode(record.value, record.headers, catalog=catalog, max_bytes=max_bytes)
            if event.time_s > not_after_s:
                raise DecodeError(DlqReason.INVALID_ENVELOPE, _future(event, now_s, max_skew_s))
            if event.time_s < not_before_s:
                raise DecodeError(DlqReason.INVALID_ENVELOPE, too_old(event.time, now_s, max_age_s))
        except DecodeError as exc:
            reject(DeadLetter(record.origin, exc.reason, exc.detail, record.partition, record))
            continue
        valid.append((record, event))
    if not deduplicate:
        out.accepted = valid
        return out
    # one look-up in the store per partition and batch, not one per event
    by_partition: dict[int, list[tuple[RawRecord, Event]]] = {}
    for taken in valid:
        by_partition.setdefault(taken[0].partition, []).append(taken)
    new: set[int] = set()
    for p, pairs in by_partition.items():
        firsts = index_for(p).add_many([digest(e.source, e.id) for _, e in pairs])
        new.update(id(pair) for pair, first in zip(pairs, firsts, strict=True) if first)
    out.accepted = [t for t in valid if id(t) in new]  # in the order the records came
    out.duplicates = len(valid) - len(out.accepted)
    return out


def too_old(time: datetime, now_s: float, max_age_s: float) -> str:
    """The detail of an event older than the allowed age: its time, its age and the limit."""
    age_d = (now_s - time.timestamp()) / 86400
    return (
        f"time: {time.isoformat()} is {age_d:,.0f} days before this service's clock; the limit is "
        f"{max_age_s / 86400:,.0f} days (TRADEPULSE_MAX_EVENT_AGE_S)"
    )


def _future(event: Event, now_s: float, max_skew_s: float) -> str:
    ahead_s = event.time_s - now_s
    now = datetime.fromtimestamp(now_s, event.time.tzinfo).isoformat(timespec="seconds")
    return (
        f"time: {event.time.isoformat()} is {ahead_s:,.0f} s ahead of this service's clock ({now}); "
        f"the limit is {max_skew_s:,.0f} s (TRADEPULSE_MAX_CLOCK_SKEW_S)"
    )


def refusal_key(origin: Origin) -> bytes:
    """The deduplication key of a refused record: its coordinates (it may have no event id)."""
    return digest("\x00refused", f"{origin.topic}\x00{origin.partition}\x00{origin.offset}")


@dataclass(kw_only=True)
class Intake:
    """Screens batches of a domain's input topics with deduplication state that survives restarts.

    ``labels`` maps physical topic names (prefixed in tests) to the contract names that label the
    metrics; a topic not in it is labelled with the catalog's topic.
    """

    catalog: Catalog
    store: StateStore
    horizon_s: float
    max_bytes: int
    max_skew_s: float = 300.0
    max_age_s: float = 400 * 86400.0
    clock: Callable[[], float] = time.time
    deduplicate: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.topic = self.catalog.topic
        self._indexes: dict[int, DedupIndex] = {}
        self._counts: dict[int, int] = {}  # keys held per partition, as stored
        self._expired_at: dict[int, float] = {}  # when each partition's old chunks were last looked for
        self._keys = DEDUP_KEYS.labels(topic=self.topic)

    def index_for(self, partition: int) -> DedupIndex:
        """The partition's index (its keys are in the store; only those since the last cut in memory)."""
        index = self._indexes.get(partition)
        if index is None:
            index = self._indexes[partition] = DedupIndex(self.store, partition, self.horizon_s)
            raw = self.store.get(partition, *_KEY_COUNT)
            self._counts[partition] = int(raw) if raw is not None else 0
        return index

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop what is held of revoked partitions; their keys stay in the store."""
        for p in partitions:
            self._indexes.pop(p, None)
            self._counts.pop(p, None)
            self._expired_at.pop(p, None)

    def label(self, physical: str) -> str:
        """The contract name of an input topic, for metric labels."""
        return self.labels.get(physical, self.topic)

    def take(self, records: Sequence[RawRecord]) -> Screened:
        """Screen one batch; the caller dead-letters what was rejected and applies what was taken."""
        self._count(EVENTS_CONSUMED, records)
        result = screen(
            records,
            self.index_for,
            catalog=self.catalog,
            max_bytes=self.max_bytes,
            now_s=self.clock(),
            max_skew_s=self.max_skew_s,
            max_age_s=self.max_age_s,
            deduplicate=self.deduplicate,
        )
        if result.duplicates:  # only domains that read one topic deduplicate
            EVENTS_DUPLICATE.labels(topic=self.topic).inc(result.duplicates)
        self._count(EVENTS_ACCEPTED, [r for r, _ in result.accepted])
        return result

    def by_topic(self, records: Sequence[RawRecord]) -> dict[str, int]:
        """How many of ``records`` came from each input topic, by contract name."""
        if len(self.labels) <= 1:  # one input topic: no need to look at each record
            return {self.topic: len(records)}
        return {self.label(physical): n for physical, n in Tally(r.topic for r in records).items()}

    def _count(self, metric: Counter, records: Sequence[RawRecord]) -> None:
        for topic, n in self.by_topic(records).items():
            metric.labels(topic=topic).inc(n)

    def first_refusal(self, partition: int, origin: Origin) -> bool:
        """True the first time the record at ``origin`` is refused while processing ``partition``;
        False when it was refused before (and its dead letter written) by an earlier delivery."""
        return self.index_for(partition).add(refusal_key(origin))

    def checkpoint(self, partitions: Iterable[int]) -> None:
        """Stage keys added since the last checkpoint, and deletions of expired chunks, in the store.

        The caller stages the batch's effects and dead letters in the same step and flushes the
        store once per batch, which writes these keys last, and only then acknowledges the batch.
        """
        now = self.clock()
        for p in partitions:
            if not self.store.owns(p):
                continue
            index = self.index_for(p)
            count = self._counts[p]
            chunk = index.cut(now)
            if chunk is not None:
                count += len(chunk.keys)
            if now - self._expired_at.get(p, 0.0) >= EXPIRE_EVERY_S:  # chunks expire by the second
                self._expired_at[p] = now
                _, expired = index.expire(now)
                count -= expired
            if count != self._counts[p]:
                self._counts[p] = count
                self.store.put(p, *_KEY_COUNT, str(count).encode())
        self._keys.set(sum(self._counts.values()))
