"""Durable per-partition state in a compacted Kafka topic, written in batches.

Faust tables write one changelog record per update (and a persisted offset with each), and their
recovery is where Faust's long-standing bugs live (hangs and gaps around rebalances,
faust-streaming issues #21, #74, #175). TradePulse keeps its state the same way Kafka Streams does,
but under its own control:

- every input partition ``p`` owns partition ``p`` of ``<app>-state`` (compacted, same count);
- the service changes values in memory and :meth:`KafkaStateStore.flush` sends each changed key
  once, in record batches on the store's own producer, and waits until the broker has them; only
  then is the input batch acknowledged, so committed input is always covered by state;
- when partitions are assigned (start-up, rebalance) their state is read back from the topic,
  and the agent waits (:meth:`wait_ready`) before it processes their events; revoked partitions
  are dropped and late writes to them are refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.contract.topics import partition_for
from services.engine.records import Out

__all__ = ["KafkaStateStore", "MemoryStore", "NotOwned", "StateStore"]

log = logging.getLogger(__name__)


class StateStore(Protocol):
    """Per-partition byte values of the partitions this worker owns, written with the outputs that
    belong to them; what the intake and the engine keep their state in."""

    def put(self, partition: int, kind: str, name: str, value: bytes) -> None: ...

    def delete(self, partition: int, kind: str, name: str) -> None: ...

    def items(self, partition: int, kind: str) -> Iterator[tuple[str, bytes]]: ...

    def owns(self, partition: int) -> bool: ...

    def add_outputs(self, outputs: Sequence[Out]) -> None:
        """Records to write with the next flush, before the state (they belong together)."""

    async def flush(self) -> None:
        """Write the pending outputs, then every changed value, each acknowledged by the broker."""

    def owned(self) -> set[int]: ...

    async def wait_ready(self, partitions: Iterable[int]) -> set[int]:
        """Wait until the state of ``partitions`` is restored; returns those this worker owns."""


class NotOwned(LookupError):
    """State of a partition this worker does not own (any more) was asked for."""


Record = tuple[bytes | None, bytes | None, int | None, list[Any]]
"""(key, value, timestamp in milliseconds, headers) of a record to send. Milliseconds, although
aiokafka's ``BatchBuilder.append`` documents seconds: its record builder takes the value as
milliseconds, so seconds stamped dead letters in January 1970, and the dead-letter topic's time
retention deleted them at the broker's next check (tests/integration/test_dead_letters.py)."""


def _key(kind: str, name: str) -> bytes:
    return f"{kind}|{name}".encode()


def kept(value: bytes) -> bytes:
    """A right-sized copy of a value the store keeps: orjson (3.12 and later) returns bytes whose
    buffer is at least 4 KB whatever their length, so a case of 500 bytes kept as it came held
    4 KB (home-assistant/core#181240 trims them the same way). About 0.2 us per put."""
    return bytes(memoryview(value))


class KafkaStateStore:
    """State of the partitions this worker owns, backed by one compacted topic."""

    def __init__(
        self,
        *,
        topic: str,
        bootstrap: list[str],
        restore_timeout_s: float = 300.0,
        last_kinds: frozenset[str] = frozenset({"dedup"}),
        before_restore: Callable[[], Awaitable[None]] | None = None,
        partition_counts: Mapping[str, int] | None = None,
        client: Mapping[str, Any] | None = None,
    ) -> None:
        self.topic = topic
        self._bootstrap = bootstrap
        self._client = dict(client or {})
        self.partition_counts = dict(partition_counts or {})
        self._producer: AIOKafkaProducer | None = None
        self._closed = False
        self._restore_timeout_s = restore_timeout_s
        self._last = tuple(f"{kind}|".encode() for kind in last_kinds)
        self._before_restore = before_restore
        self._flushing = asyncio.Lock()
        self._data: dict[int, dict[bytes, bytes]] = {}
        self._dirty: dict[int, dict[bytes, bytes | None]] = {}
        self._outputs: list[Out] = []
        self._ready: dict[int, asyncio.Event] = {}
        self._owned: set[int] = set()
        self._on_revoke: list[Callable[[set[int]], None]] = []

    # -- values -----------------------------------------------------------------------------

    def put(self, partition: int, kind: str, name: str, value: bytes) -> None:
        """Set a value; sent on the next flush. Refused (logged) for a partition not owned."""
        if self._writable(partition):
            key, value = _key(kind, name), kept(value)
            self._data[partition][key] = value
            self._dirty.setdefault(partition, {})[key] = value

    def delete(self, partition: int, kind: str, name: str) -> None:
        """Delete a value; a tombstone is sent on the next flush."""
        if self._writable(partition):
            key = _key(kind, name)
            self._data[partition].pop(key, None)
            self._dirty.setdefault(partition, {})[key] = None

    def owns(self, partition: int) -> bool:
        return partition in self._owned

    def items(self, partition: int, kind: str) -> Iterator[tuple[str, bytes]]:
        """(name, value) of every item of one kind on an owned partition (NotOwned otherwise)."""
        if partition not in self._owned:
            msg = f"partition {partition} is not owned by this worker"
            raise NotOwned(msg)
        prefix = f"{kind}|".encode()
        cut = len(prefix)
        for key, value in list(self._data.get(partition, {}).items()):
            if key.startswith(prefix):
                yield key[cut:].decode(), value

    def add_outputs(self, outputs: Sequence[Out]) -> None:
        """Records to write with the next flush, before any state staged so far or later.

        Whoever stages state stages the outputs that go with it in the same step (no await in
        between): a case stored without the join messages its change sent would never send them
        again, since folding the redelivered event changes nothing."""
        self._outputs.extend(outputs)

    async def flush(self) -> None:
        """Write the pending outputs, then every changed key once, and wait until the broker has
        them all.

        The order is the commit path's guarantee: outputs (links, partials, records, dead letters)
        before the state that says they were produced, and within the state the keys of
        ``last_kinds`` (deduplication) last: if the process dies half-way, the state never claims
        an event as seen whose effects were not written. Outputs of partitions revoked meanwhile
        are dropped with their state (the new owner redoes them). Flushes are serialised: two at
        once could write an older value of a key after a newer one.
        """
        async with self._flushing:
            outputs, self._outputs = self._outputs, []
            dirty, self._dirty = self._dirty, {}
            try:
                owned = [o for o in outputs if o.source is None or o.source in self._owned]
                if owned:
                    await asyncio.gather(*await self._send_outputs(owned))
                pending = []
                for partition, changes in dirty.items():
                    if partition not in self._owned or not changes:
                        continue  # revoked meanwhile: the new owner has the authoritative state
                    ordered = sorted(changes.items(), key=lambda kv: kv[0].startswith(self._last))
                    records: Iterator[Record] = ((k, v, None, []) for k, v in ordered)
                    pending.extend(await self._send_batches(self.topic, partition, records))
                if pending:
                    await asyncio.gather(*pending)
            except BaseException:
                # Nothing is lost: put it back, under what was staged meanwhile (which is newer),
                # so the next flush writes it again (records written twice are harmless).
                self._outputs[:0] = outputs
                for partition, changes in dirty.items():
                    self._dirty[partition] = {**changes, **self._dirty.get(partition, {})}
                raise

    async def _send_outputs(self, outputs: Sequence[Out]) -> list[Any]:
        """Send outputs in record batches per topic partition (a keyed record goes where Kafka's
        default partitioner would put it; on a topic of unknown layout the producer decides)."""
        producer = await self._ensure_producer()
        groups: dict[tuple[str, int], list[Record]] = {}
        futures = []
        for out in outputs:
            partition, ts = out.partition, out.timestamp_ms
            if partition is None:
                count = self.partition_counts.get(out.topic)
                if count is None or out.key is None:
                    futures.append(
                        await producer.send(
                            out.topic, out.value, key=out.key, headers=list(out.headers), timestamp_ms=ts
                        )
                    )
                    continue
                partition = partition_for(out.key, count)
            record = (out.key, out.value, ts, list(out.headers))
            groups.setdefault((out.topic, partition), []).append(record)
        for (topic, partition), records in groups.items():
            futures.extend(await self._send_batches(topic, partition, records))
        return futures

    async def _send_batches(
        self,
        topic: str,
        partition: int,
        records: Iterable[Record],
    ) -> list[Any]:
        """(key, value, timestamp, headers) records to one partition, in as few batches as fit."""
        producer = await self._ensure_producer()
        futures = []
        batch = producer.create_batch()
        for key, value, ts, headers in records:
            if batch.append(key=key, value=value, timestamp=ts, headers=headers) is None:  # full: send it
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=ts, headers=headers)
        futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._closed:
            msg = "state store is closed (worker shutting down)"
            raise RuntimeError(msg)
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                acks="all",
                max_batch_size=512 * 1024,
                linger_ms=0,
                **self._client,
            )
            await producer.start()
            self._producer = producer
        return self._producer

    async def close(self) -> None:
        """Stop the store's producer (pending writes are delivered first)."""
        self._closed = True
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def _writable(self, partition: int) -> bool:
        if partition in self._owned:
            return True
        log.warning("state write for a partition this worker does not own", extra={"partition": partition})
        return False

    # -- ownership --------------------------------------------------------------------------

    def owned(self) -> set[int]:
        """Partitions whose state this worker holds."""
        return set(self._owned)

    def on_revoke(self, callback: Callable[[set[int]], None]) -> None:
        """Call ``callback(partitions)`` when partitions are taken away (to drop derived caches)."""
        self._on_revoke.append(callback)

    async def wait_ready(self, partitions: Iterable[int]) -> set[int]:
        """Wait until the state of ``partitions`` is restored; returns those this worker owns."""
        owned = set()
        for p in set(partitions):
            await self._ready.setdefault(p, asyncio.Event()).wait()
            if p in self._owned:
                owned.add(p)
        return owned

    def revoked(self, partitions: set[int]) -> None:
        """Forget revoked partitions; pending writes to them are dropped."""
        gone = partitions & self._owned
        self._owned -= partitions
        for p in partitions:
            self._data.pop(p, None)
            self._dirty.pop(p, None)
            event = self._ready.pop(p, None)
            if event is not None:
                event.set()  # release a waiter; it will see the partition is not owned
        if gone:
            for callback in self._on_revoke:
                callback(gone)

    async def assigned(self, partitions: set[int]) -> None:
        """Restore partitions newly assigned; those already owned keep their live state."""
        new = partitions - self._owned
        for p in partitions - new:
            self._ready.setdefault(p, asyncio.Event()).set()
        if not new:
            return
        for p in new:
            self._ready.setdefault(p, asyncio.Event())
        for callback in self._on_revoke:
            callback(new)  # no cache derived from an earlier ownership may survive
        if self._before_restore is not None:
            await self._before_restore()  # our own last writes must be in the topic we read
        started = time.monotonic()
        restored = await self._read(new)
        for p in new:
            self._data[p] = restored.get(p, {})
            self._owned.add(p)
            self._ready[p].set()
        log.info(
            "state restored",
            extra={
                "partitions": sorted(new),
                "keys": sum(len(v) for v in restored.values()),
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    async def _read(self, partitions: set[int]) -> dict[int, dict[bytes, bytes]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            **self._client,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        await asyncio.sleep(0)  # see aiokafka: let the no-group routine start before any stop()
        out: dict[int, dict[bytes, bytes]] = {p: {} for p in partitions}
        try:
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            await consumer.seek_to_beginning(*tps)
            remaining = {tp for tp in tps if ends[tp] > 0}
            deadline = time.monotonic() + self._restore_timeout_s
            while remaining:
                if time.monotonic() > deadline:
                    msg = (
                        f"state restore of {self.topic} {sorted(partitions)} "
                        f"took over {self._restore_timeout_s}s"
                    )
                    raise TimeoutError(msg)
                batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=10_000)
                for tp, records in batches.items():
                    data = out[tp.partition]
                    for r in records:
                        if r.key is None:
                            continue
                        if r.value is None:
                            data.pop(r.key, None)
                        else:
                            data[r.key] = r.value
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await consumer.stop()
        return out


class MemoryStore:
    """A :class:`StateStore` in memory that owns every partition: the engine without Kafka, for the
    in-memory wiring of the tests and the memory benchmark. ``written`` collects flushed outputs."""

    def __init__(self, partitions: int = 1) -> None:
        self.partitions = partitions
        self.data: dict[tuple[int, str, str], bytes] = {}
        self.pending: list[Out] = []
        self.written: list[Out] = []
        self.writes = 0
        self.flushes = 0

    def put(self, partition: int, kind: str, name: str, value: bytes) -> None:
        self.data[(partition, kind, name)] = kept(value)
        self.writes += 1

    def delete(self, partition: int, kind: str, name: str) -> None:
        self.data.pop((partition, kind, name), None)
        self.writes += 1

    def items(self, partition: int, kind: str) -> Iterator[tuple[str, bytes]]:
        for (p, k, n), v in list(self.data.items()):
            if p == partition and k == kind:
                yield n, v

    def owns(self, partition: int) -> bool:
        return True

    def owned(self) -> set[int]:
        return set(range(self.partitions))

    async def wait_ready(self, partitions: Iterable[int]) -> set[int]:
        return set(partitions)

    def add_outputs(self, outputs: Sequence[Out]) -> None:
        self.pending.extend(outputs)

    async def flush(self) -> None:
        self.written.extend(self.pending)
        self.pending = []
        self.flushes += 1
