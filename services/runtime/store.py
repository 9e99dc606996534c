"""The state store of a worker: a compacted Kafka topic as the source of truth, a RocksDB copy of
each owned partition on local disk, and the flush that keeps the two in step.

Faust tables write one changelog record per update (and a persisted offset with each), and their
recovery is where Faust's long-standing bugs live (hangs and gaps around rebalances,
faust-streaming issues #21, #74, #175). TradePulse keeps state the way Kafka Streams does, under
its own control:

- every input partition ``p`` owns partition ``p`` of ``<app>-state`` (compacted, same count);
- a flush (the commit path's step 5) writes the pending outputs, then each partition's staged
  changes as **one record batch** (appended to the log whole or not at all: a crash never leaves
  half a batch's state, so a case and the aggregates it counts in never disagree), then the same
  changes into the local copy in one RocksDB write with the offset it now holds; only then is the
  input acknowledged;
- on assignment a partition is restored in the background (the rebalance is not held up):
  from its local copy and the records written after the offset it holds, or, when the copy is
  missing, unreadable, from another topic or cluster, behind the log start or older than the
  topic's ``delete.retention.ms``, rebuilt from the topic. Its records wait until it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder

from services.contract.topics import partition_for
from services.engine.records import Out
from services.engine.state import Backend, Changes, Derive, LocalState
from services.runtime.local import (
    CHECKPOINT_KEY,
    Checkpoint,
    LocalStateBusy,
    LocalStateError,
    RocksBackend,
    RocksMemory,
)
from services.runtime.metrics import RESTORE_PROGRESS, STATE_RESTORES

__all__ = ["STATE_BATCH_BYTES", "KafkaStateStore", "crashpoint"]

log = logging.getLogger(__name__)

STATE_BATCH_BYTES = 32 * 1024 * 1024
"""The largest record batch of one partition's state in one flush (the state topic is created with
a ``max.message.bytes`` above it). A flush stages at most a few agents' batches, far below."""
OUTPUT_BATCH_BYTES = 512 * 1024
PROGRESS_EVERY_S = 5.0
PERSIST_EVERY_S = 10.0
"""How often a local copy's memtables are written to disk (it keeps no write-ahead log): a restart
after a crash reads at most about this much of the state topic's tail."""
RESTORE_FETCH_RECORDS = 2000  # records applied between two turns of the event loop

Record = tuple[bytes | None, bytes | None, int | None, list[Any]]
"""(key, value, timestamp in milliseconds, headers) of a record to send. Milliseconds, although
aiokafka's ``BatchBuilder.append`` documents seconds: its record builder takes the value as
milliseconds, so seconds stamped dead letters in January 1970, and the dead-letter topic's time
retention deleted them at the broker's next check (tests/integration/test_dead_letters.py)."""


def crashpoint(step: str) -> None:
    """End the process at once at a named step of the flush when ``TRADEPULSE_CRASH_AT`` says so
    (``<step>:<n>``: the n-th flush that did the step's work), as ``kill -9`` would: how the tests
    put a crash between any two steps of the commit path. Unset in production: one lookup."""
    spec = os.environ.get("TRADEPULSE_CRASH_AT")
    if not spec:
        return
    name, _, count = spec.partition(":")
    if name != step:
        return
    seen = _CRASH_COUNTS[step] = _CRASH_COUNTS.get(step, 0) + 1
    if seen >= int(count or 1):
        os._exit(137)


_CRASH_COUNTS: dict[str, int] = {}


class KafkaStateStore(LocalState):
    """State of the partitions this worker owns: the state topic, and a local copy of each."""

    def __init__(
        self,
        *,
        topic: str,
        bootstrap: list[str],
        directory: Path,
        cache_bytes: int,
        indexes: Mapping[str, Derive] | None = None,
        client: Mapping[str, Any] | None = None,
        partition_counts: Mapping[str, int] | None = None,
        delete_retention_s: float = 86400.0,
    ) -> None:
        super().__init__(indexes=indexes)
        self.topic = topic
        self.directory = directory
        self.cluster = ""  # the cluster id, learnt at start-up (preflight)
        self.delete_retention_s = delete_retention_s
        self.partition_counts = dict(partition_counts or {})
        self.memory = RocksMemory(cache_bytes)
        self._bootstrap = bootstrap
        self._client = dict(client or {})
        self._producer: AIOKafkaProducer | None = None
        self._closed = False
        self._lock = asyncio.Lock()
        self._outputs: list[Out] = []
        self._checkpoints: dict[int, Checkpoint] = {}
        self._ready: dict[int, asyncio.Event] = {}
        self._restoring: dict[int, asyncio.Task[None]] = {}
        self._cancelled: dict[int, asyncio.Task[None]] = {}  # restores of revoked partitions, ending
        self._unpersisted: dict[int, float] = {}  # since when a local copy has writes only in memory
        self._persisted: dict[int, float] = {}  # when a local copy's memtables were last sent to disk
        self._progress: dict[int, tuple[int, int]] = {}  # partition -> (restored, to restore)
        self._restored: list[tuple[int, str, int, float]] = []  # (partition, why rebuilt, records, start)
        self._on_revoke: list[Callable[[set[int]], None]] = []
        self._on_restored: list[Callable[[int], Generator[None, None, None]]] = []
        self.fatal: Callable[[BaseException], None] = _raise
        """What to do when the local copy cannot be written: the worker stops (it sets this)."""

    # -- outputs and the flush ----------------------------------------------------------------

    def add_outputs(self, outputs: Sequence[Out]) -> None:
        """Records to write with the next flush, before any state staged so far or later.

        Whoever stages state stages the outputs that go with it in the same step (no await in
        between): a case stored without the join messages its change sent would never send them
        again, since folding the redelivered event changes nothing."""
        self._outputs.extend(outputs)

    async def flush(self) -> None:
        """Write the pending outputs, then each partition's staged changes as one record batch, each
        acknowledged by the broker, then into the local copies with the offsets they now hold.

        Outputs of partitions revoked meanwhile are dropped with their state (the new owner redoes
        them). Flushes are serialised: two at once could write an older value of a key after a
        newer one. A failure before the topic has everything puts it all back for the next flush
        (records written twice are harmless); one writing the local copy stops the worker
        (:class:`LocalStateError`), which loses nothing: the topic has it.
        """
        async with self._lock:
            outputs, self._outputs = self._outputs, []
            changes = self.begin_flush()
            try:
                owned = [o for o in outputs if o.source is None or self.owns(o.source)]
                if owned:
                    await asyncio.gather(*await self._send_outputs(owned))
                    crashpoint("outputs")
                sent = {p: await self._send_state(p, c) for p, c in changes.items() if self.owns(p)}
                written = {p: await asyncio.gather(*futures) for p, futures in sent.items()}
                if written:
                    crashpoint("state")
            except BaseException:
                self._outputs[:0] = outputs
                self.abort_flush()
                raise
            try:
                for p, metadata in written.items():
                    if self.owns(p):  # revoked meanwhile: its next owner reads the topic
                        self._write_local(p, changes[p], [(m.offset, n) for m, n in metadata])
            except LocalStateError as exc:
                self.fatal(exc)
                raise
            self.end_flush()
            if written:
                crashpoint("local")
            try:
                self._persist_due()
            except LocalStateError as exc:
                self.fatal(exc)
                raise

    def _write_local(self, p: int, changes: Changes, batches: list[tuple[int, int]]) -> None:
        """The local copy of ``p`` takes ``changes`` and moves its checkpoint past the batches that
        carried them, if they follow on from it (another writer's records in between, say of the
        partition's previous owner, leave it where it was: the next restore reads them)."""
        checkpoint = self._checkpoints[p]
        offset = checkpoint.offset
        for base, count in sorted(batches):
            if base != offset:
                break
            offset = base + count
        if offset != checkpoint.offset:
            checkpoint = self._checkpoints[p] = checkpoint.at(offset)
        backend = self.backend(p)
        assert isinstance(backend, RocksBackend)
        backend.write(self.local_changes(backend, changes, [(CHECKPOINT_KEY, checkpoint.encode())]))
        self._unpersisted.setdefault(p, time.monotonic())

    def _persist_due(self) -> None:
        """Local copies with writes older than :data:`PERSIST_EVERY_S` still only in memory start
        writing them to disk (the flush runs on timers, so an idle partition's get there too), and
        a copy whose last such write failed stops the worker (:class:`LocalStateError`)."""
        now = time.monotonic()
        for p, since in list(self._unpersisted.items()):
            if now - since >= PERSIST_EVERY_S:
                del self._unpersisted[p]
                self._persisted[p] = now
                backend = self.backend(p) if self.owns(p) else None
                if isinstance(backend, RocksBackend):
                    backend.persist()
        for p, at in list(self._persisted.items()):
            if now - at >= 1.0:  # its flush had time to fail
                del self._persisted[p]
                backend = self.backend(p) if self.owns(p) else None
                if isinstance(backend, RocksBackend):
                    backend.check()

    async def _send_state(self, p: int, changes: Changes) -> list[Any]:
        """One partition's changes as one record batch (more only past :data:`STATE_BATCH_BYTES`);
        futures of (metadata, records) per batch."""
        producer = await self._ensure_producer()
        futures = []
        batch, count = BatchBuilder(STATE_BATCH_BYTES, 0), 0
        for key, value in changes.items():
            if batch.append(key=key, value=value, timestamp=None, headers=[]) is None:
                log.warning(
                    "state of one partition exceeds one record batch in a flush",
                    extra={"partition": p, "records": count, "limit_bytes": STATE_BATCH_BYTES},
                )
                futures.append(_counted(await producer.send_batch(batch, self.topic, partition=p), count))
                batch, count = BatchBuilder(STATE_BATCH_BYTES, 0), 0
                batch.append(key=key, value=value, timestamp=None, headers=[])
            count += 1
        futures.append(_counted(await producer.send_batch(batch, self.topic, partition=p), count))
        return futures

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
            groups.setdefault((out.topic, partition), []).append((out.key, out.value, ts, list(out.headers)))
        for (topic, partition), records in groups.items():
            batch = producer.create_batch()
            for key, value, ts, headers in records:
                if batch.append(key=key, value=value, timestamp=ts, headers=headers) is None:  # full
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
                max_batch_size=OUTPUT_BATCH_BYTES,
                max_request_size=STATE_BATCH_BYTES + 1024 * 1024,
                linger_ms=0,
                **self._client,
            )
            await producer.start()
            self._producer = producer
        return self._producer

    async def close(self) -> None:
        """Stop restores and the producer (pending writes are delivered first); close the local copies."""
        self._closed = True
        for task in self._restoring.values():
            task.cancel()
        for task in list(self._restoring.values()):
            with contextlib.suppress(BaseException):
                await task
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        for p in self.owned():
            self.release(p)

    # -- ownership ----------------------------------------------------------------------------

    def on_revoke(self, callback: Callable[[set[int]], None]) -> None:
        """Call ``callback(partitions)`` when partitions are taken away (to drop derived caches)."""
        self._on_revoke.append(callback)

    def on_restored(self, callback: Callable[[int], Generator[None, None, None]]) -> None:
        """Run ``callback(partition)`` once a partition's state is restored, before its records are
        processed (to load what is kept of it in memory: gauges are right from then on); the event
        loop turns at each of its yields."""
        self._on_restored.append(callback)

    def held(self) -> set[int]:
        """Partitions owned or being restored."""
        return self.owned() | set(self._restoring)

    def restoring(self) -> dict[int, tuple[int, int]]:
        """Partitions being restored: (records restored, records to restore)."""
        return {p: self._progress.get(p, (0, 0)) for p in self._restoring}

    async def wait_ready(self, partitions: Iterable[int]) -> set[int]:
        """Wait until the state of ``partitions`` is restored; returns those this worker owns."""
        owned = set()
        for p in set(partitions):
            await self._ready.setdefault(p, asyncio.Event()).wait()
            if self.owns(p):
                owned.add(p)
        return owned

    def revoked(self, partitions: set[int]) -> None:
        """Forget revoked partitions (their local copies stay on disk); pending writes to them and
        restores of them are dropped."""
        gone = (partitions & self.owned()) | (partitions & set(self._restoring))
        for p in partitions:
            task = self._restoring.pop(p, None)
            if task is not None:
                task.cancel()  # it closes the partition's local copy once nothing reads it
                self._cancelled[p] = task
            else:
                self.release(p)
            self._progress.pop(p, None)
            self._checkpoints.pop(p, None)
            event = self._ready.pop(p, None)
            if event is not None:
                event.set()  # release a waiter; it will see the partition is not owned
        if gone:
            for callback in self._on_revoke:
                callback(gone)

    async def assigned(self, partitions: set[int]) -> None:
        """Start restoring partitions newly assigned (in the background: the rebalance goes on);
        those already owned or being restored keep what they have."""
        new = partitions - self.owned() - set(self._restoring)
        for p in partitions - new:
            if self.owns(p):
                self._ready.setdefault(p, asyncio.Event()).set()
        if not new:
            return
        for callback in self._on_revoke:
            callback(new)  # no cache derived from an earlier ownership may survive
        for p in new:
            self._ready[p] = asyncio.Event()
            self._restoring[p] = asyncio.create_task(self._restore(p), name=f"restore-{self.topic}-{p}")

    # -- restore ------------------------------------------------------------------------------

    async def _restore(self, p: int) -> None:
        started, delay = time.monotonic(), 0.5
        try:
            previous = self._cancelled.pop(p, None)
            if previous is not None:  # revoked and assigned again: the last restore lets go first
                await asyncio.gather(previous, return_exceptions=True)
            async with self._lock:  # our own last writes of the partition reach the topic first
                pass
            while True:
                try:
                    backend, checkpoint, why, records = await self._replay(p)
                    break
                except (KafkaError, LocalStateBusy) as exc:
                    log.warning(
                        "state restore failed; retrying",
                        extra={"partition": p, "error": f"{type(exc).__name__}: {exc}", "retry_s": delay},
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            self._checkpoints[p] = checkpoint
            self.adopt(p, backend)
            for callback in self._on_restored:
                loading = callback(p)
                try:
                    for _ in loading:
                        await asyncio.sleep(0)
                finally:
                    loading.close()  # its iterators over the local copy go before the copy closes
        except asyncio.CancelledError:
            self.release(p)  # revoked while restoring
            raise
        except LocalStateError as exc:
            self.fatal(exc)
            return
        finally:
            self._restoring.pop(p, None)
            self._progress.pop(p, None)
            RESTORE_PROGRESS.forget(p)
        STATE_RESTORES.labels(mode="rebuild" if why else "local").inc()
        self._restored.append((p, why, records, started))
        if not self._restoring:
            self._log_restored()
        event = self._ready.get(p)
        if event is not None:
            event.set()

    def _log_restored(self) -> None:
        """One line for the partitions restored since the last: which came from their local copies,
        which were rebuilt from the topic and why, how many records were read, how long it took."""
        done, self._restored = self._restored, []
        rebuilt: dict[str, list[int]] = {}
        for p, why, _, _ in done:
            if why:
                rebuilt.setdefault(why, []).append(p)
        log.info(
            "state restored",
            extra={
                "local": sorted(p for p, why, _, _ in done if not why),
                "rebuilt": {why: sorted(ps) for why, ps in rebuilt.items()},
                "records": sum(n for _, _, n, _ in done),
                "seconds": round(time.monotonic() - min(t for *_, t in done), 3),
            },
        )

    async def _replay(self, p: int) -> tuple[Backend, Checkpoint, str, int]:
        """Open the local copy of ``p`` and bring it up to the topic's end: the records after its
        checkpoint, or all of them when it cannot be used (``why``, empty when it was used)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            **self._client,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=STATE_BATCH_BYTES + 1024 * 1024,
        )
        await consumer.start()
        await asyncio.sleep(0)  # see aiokafka: let the no-group routine start before any stop()
        backend: RocksBackend | None = None
        try:
            tp = TopicPartition(self.topic, p)
            consumer.assign([tp])
            begin = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            backend, checkpoint, why = self._open(self.directory / str(p), p, begin, end)
            if checkpoint.offset > begin:
                consumer.seek(tp, checkpoint.offset)
            else:
                await consumer.seek_to_beginning(tp)
            records, checkpoint = await self._apply(consumer, tp, backend, checkpoint, end)
            return backend, checkpoint, why, records
        except BaseException:
            if backend is not None:
                backend.close()  # its lock must go, or the next try cannot open it
            raise
        finally:
            await consumer.stop()

    def _open(self, path: Path, p: int, begin: int, end: int) -> tuple[RocksBackend, Checkpoint, str]:
        """The local copy of ``p`` and where to read the topic from; ``why`` (empty when the copy is
        used) says why it is rebuilt from the topic."""
        fresh = Checkpoint(self.topic, p, self.cluster, begin, time.time())
        if not path.exists():
            return RocksBackend(path, self.memory), fresh, "no local copy"
        try:
            backend = RocksBackend(path, self.memory)
            checkpoint = backend.checkpoint()
        except Exception as exc:
            if "lock" in str(exc).lower():  # another process has it open: never delete it under them
                msg = f"{path} is in use by another process (give each worker its own TRADEPULSE_STATE_DIR)"
                raise LocalStateBusy(msg) from exc
            why = f"local copy unreadable ({type(exc).__name__}: {exc})"
        else:
            why = _unusable(checkpoint, self.topic, p, self.cluster, begin, end, self.delete_retention_s)
            if not why:
                assert checkpoint is not None
                return backend, checkpoint, ""
            backend.close()
        RocksBackend.destroy(path)
        return RocksBackend(path, self.memory), fresh, why

    async def _apply(
        self,
        consumer: AIOKafkaConsumer,
        tp: TopicPartition,
        backend: RocksBackend,
        checkpoint: Checkpoint,
        end: int,
    ) -> tuple[int, Checkpoint]:
        """Copy the records up to ``end`` into ``backend``, a fetch at a time, each write carrying
        the checkpoint after it (an interrupted restore resumes where it stopped)."""
        total = max(0, end - checkpoint.offset)
        done, last_log = 0, time.monotonic()
        self._progress[tp.partition] = (0, total)
        RESTORE_PROGRESS.set(tp.partition, 0, total)
        while checkpoint.offset < end:
            batches = await consumer.getmany(tp, timeout_ms=500, max_records=RESTORE_FETCH_RECORDS)
            records = batches.get(tp, [])
            if not records:
                position = await consumer.position(tp)
                if position > checkpoint.offset:  # compaction or markers left a gap at the end
                    checkpoint = checkpoint.at(position)
                    backend.write([(CHECKPOINT_KEY, checkpoint.encode())])
                continue
            changes: Changes = {}
            for r in records:
                if r.key is not None:
                    changes[r.key] = r.value
            checkpoint = checkpoint.at(records[-1].offset + 1)
            backend.write(self.local_changes(backend, changes, [(CHECKPOINT_KEY, checkpoint.encode())]))
            done += len(records)
            self._progress[tp.partition] = (done, total)
            RESTORE_PROGRESS.set(tp.partition, done, total)
            if time.monotonic() - last_log > PROGRESS_EVERY_S:
                last_log = time.monotonic()
                log.info("restoring state", extra={"partition": tp.partition, "records": done, "of": total})
            await asyncio.sleep(0)
        # the copy says what it holds even when it holds nothing yet (an empty partition's copy is
        # a copy too), and what a restore read is on disk before the partition takes new writes
        checkpoint = checkpoint.at(checkpoint.offset)
        backend.write([(CHECKPOINT_KEY, checkpoint.encode())])
        backend.persist()
        return done, checkpoint

    def local_copies(self) -> Iterator[tuple[int, RocksBackend]]:
        for p in self.owned():
            backend = self.backend(p)
            assert isinstance(backend, RocksBackend)
            yield p, backend


def _unusable(
    checkpoint: Checkpoint | None,
    topic: str,
    p: int,
    cluster: str,
    begin: int,
    end: int,
    delete_retention_s: float,
) -> str:
    """Why a local copy cannot be brought up to date from the topic ('' when it can)."""
    if checkpoint is None:
        return "local copy without a checkpoint"
    if (checkpoint.topic, checkpoint.partition) != (topic, p):
        return f"local copy of another topic ({checkpoint.topic}[{checkpoint.partition}])"
    if cluster and checkpoint.cluster and checkpoint.cluster != cluster:
        return f"local copy of another Kafka cluster ({checkpoint.cluster})"
    if checkpoint.offset < begin:
        return f"local copy (offset {checkpoint.offset}) behind the topic's log start ({begin})"
    if checkpoint.offset > end:
        return f"local copy (offset {checkpoint.offset}) ahead of the topic's end ({end}): topic recreated?"
    if time.time() - checkpoint.at_s > delete_retention_s:
        return "local copy older than the topic's delete.retention.ms (deletions since may be compacted away)"
    return ""


def _raise(exc: BaseException) -> None:
    raise exc


async def _counted(future: Any, count: int) -> tuple[Any, int]:
    return await future, count
