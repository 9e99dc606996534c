"""Record batches through Faust's own consumer: one fetched batch per topic partition reaches an
agent with one queue put, instead of Faust's per-message path.

Faust (0.15.3) spends about 95 us on every message between the fetch and the agent: an async
generator step, ``wait_first`` with four new tasks, a lock, flow-control awaits, a decode and a
queue put per message, then the stream's own per-event work. TradePulse agents only ever want
batches of raw bytes, so this transport hands them what aiokafka fetched, per topic partition.

Everything else stays Faust's: the consumer thread, group membership and the assignor, rebalance
callbacks, generation fencing, flow control and buffer-pressure pause/resume, and the
acknowledgement bookkeeping that decides which offsets are committed (a batch's offsets are
committable only once the batch is acknowledged, :meth:`RecordBatch.ack`). It is selected the
supported way: the ``faust.transports`` entry point ``tradepulse`` (broker ``tradepulse://...``).

It relies on private internals of faust-streaming 0.15.3 (``Consumer._drain_messages`` and its
bookkeeping, ``Conductor._tp_to_callback``); ``pyproject.toml`` pins that version and
tests/unit/test_transport.py fails loudly when any of them changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, cast

from faust.transport.conductor import Conductor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from services.engine.records import RawRecord

__all__ = ["SCHEME", "BatchConductor", "BatchConsumer", "BatchTransport", "RecordBatch", "record_batches"]

log = logging.getLogger(__name__)

SCHEME = "tradepulse"
QUIET_S = 0.005  # a batch that is not full closes once no records came for this long


class RecordBatch:
    """The records fetched for one topic partition in one poll, delivered as one queue item.

    It stands in for a Faust ``Message`` where the consumer's bookkeeping needs one (``tp``,
    ``offset``, ``acked``, ``refcount``, weak references): it is tracked while an agent holds it,
    so a rebalance or shutdown waits for it, and its offsets become committable when it is
    acknowledged.
    """

    __slots__ = (
        "__weakref__",
        "_consumer",
        "acked",
        "generation_id",
        "offset",
        "partition",
        "records",
        "refcount",
        "time_in",
        "time_out",
        "time_total",
        "topic",
        "tp",
        "tracked",
    )

    def __init__(self, tp: TP, records: Sequence[Any], generation_id: int, consumer: BatchConsumer) -> None:
        self.tp = tp
        self.topic = tp.topic
        self.partition = tp.partition
        self.records = records  # aiokafka ConsumerRecords, in offset order
        self.offset = records[-1].offset  # what sensors and the monitor read
        self.generation_id = generation_id
        self.refcount = 1
        self.acked = False
        self.tracked = False
        self.time_in = self.time_out = self.time_total = None
        self._consumer = consumer

    def __len__(self) -> int:
        return len(self.records)

    def raw(self) -> Iterator[RawRecord]:
        """The records as the engine reads them."""
        topic, partition = self.topic, self.partition
        for r in self.records:
            yield RawRecord(topic, partition, r.offset, r.key, r.value, r.headers, r.timestamp)

    def ack(self) -> bool:
        """Mark every offset of the batch committable (once)."""
        with ack_lock:
            if self.acked:
                return False
            self.acked = True
        return self._consumer.ack_batch(self)

    def __repr__(self) -> str:
        first = self.records[0].offset if self.records else None
        return f"<RecordBatch {self.topic}[{self.partition}] {first}..{self.offset} n={len(self.records)}>"


class _BatchHandler:
    """Delivers one topic partition's fetched records to its channels (one agent's queue)."""

    def __init__(self, conductor: BatchConductor, tp: TP, channels: Any) -> None:
        app = conductor.app
        self.tp = tp
        self.channels = channels
        self.consumer = cast(BatchConsumer, app.consumer)
        self.acquire_flow_control = app.flow_control.acquire
        self.wait_until_producer_ebb = app.producer.buffer.wait_until_ebb
        self.on_topic_buffer_full = app.sensors.on_topic_buffer_full

    def on_pressure_high(self) -> None:
        self.on_topic_buffer_full(self.tp)
        self.consumer.on_buffer_full(self.tp)  # stop fetching this partition

    def on_pressure_drop(self) -> None:
        self.consumer.on_buffer_drop(self.tp)  # fetch it again

    async def __call__(self, message: Any) -> None:
        """Faust's per-message entry point, should anything use it: a batch of one."""
        await self.deliver([message], message.generation_id)

    async def deliver(self, records: Sequence[Any], generation_id: int) -> None:
        await self.acquire_flow_control()  # blocks while a rebalance is under way
        await self.wait_until_producer_ebb()
        if len(self.channels) != 1:
            msg = f"{self.tp}: batch delivery needs exactly one agent per topic, found {len(self.channels)}"
            raise RuntimeError(msg)
        (channel,) = self.channels
        batch = RecordBatch(self.tp, records, generation_id, self.consumer)
        queue = channel.queue
        if queue.full():
            self.on_topic_buffer_full(self.tp)
            await queue.put(batch)  # back-pressure: wait for room
        else:
            queue.put_nowait_enhanced(
                batch, on_pressure_high=self.on_pressure_high, on_pressure_drop=self.on_pressure_drop
            )


class BatchConductor(Conductor):
    """Routes each fetched topic-partition batch to its agent with one call."""

    def _build_handler(self, tp: TP, channels: Any) -> Any:
        return _BatchHandler(self, tp, channels)

    async def deliver_batch(self, tp: TP, records: Sequence[Any], generation_id: int) -> None:
        async with self._tp_to_callback_lock:  # once per batch, not per message
            handler = cast(_BatchHandler, self._tp_to_callback[tp])
        await handler.deliver(records, generation_id)


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose fetch loop hands over one batch per topic partition."""

    def ack_batch(self, batch: RecordBatch) -> bool:
        """:meth:`Consumer.ack` for a whole batch: its offsets join the committable ones."""
        tp, records = batch.tp, batch.records
        first, last = records[0].offset, records[-1].offset
        # contiguous unless compaction or transaction markers left holes
        contiguous = last - first + 1 == len(records)
        offsets: Sequence[int] = range(first, last + 1) if contiguous else [r.offset for r in records]
        with ack_lock:
            try:
                self._unacked_messages.discard(cast(Any, batch))  # it stands in for a Message
                if not self.app.topics.acks_enabled_for(tp.topic):
                    return False
                committed = self._committed_offset[tp]
                if committed is not None and first < committed:
                    offsets = [o for o in offsets if o >= committed]
                acked_index = self._acked_index[tp]
                if acked_index and not acked_index.isdisjoint(offsets):
                    offsets = [o for o in offsets if o not in acked_index]
                if not offsets:
                    return False
                acked_index.update(offsets)
                self._acked[tp].extend(offsets)
                self._n_acked += len(offsets)
                return True
            finally:
                notify(self._waiting_for_ack)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - the consumer thread
        """Faust's fetch loop (``Consumer._drain_messages``), a batch per topic partition: the same
        stop conditions, flow control, generation check, gap detection and commit cadence."""
        app = self.app
        deliver_batch = cast(BatchConductor, app.topics).deliver_batch
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        commit_every = self._commit_every
        acks_enabled_for = app.topics.acks_enabled_for
        monitor = app.monitor
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if self.should_stop:
                    break
                if not records:
                    self.diag.unset_flag(CONSUMER_FETCHING)
                    continue
                if not self.flow_active:  # fetched while flow stopped: seek back, as getmany() does
                    try:
                        await self.perform_seek()
                    except Exception as exc:
                        log.warning("seek after a fetch while flow was stopped failed: %r", exc)
                    self.diag.unset_flag(CONSUMER_FETCHING)
                    continue
                generation_id = app.consumer_generation_id
                for tp, recs in records.items():
                    if not self.flow_active or app.consumer_generation_id != generation_id:
                        break
                    if not recs or (
                        active is not None and tp not in active and tp not in self._buffered_partitions
                    ):
                        continue
                    monitor.track_tp_end_offset(tp, self.highwater(tp))
                    r_offset = read_offset[tp]
                    if r_offset is not None and recs[0].offset < r_offset:
                        recs = [r for r in recs if r.offset >= r_offset]
                        if not recs:
                            continue
                    first, last = recs[0].offset, recs[-1].offset
                    if acks_enabled_for(tp.topic) and (
                        last - first + 1 != len(recs) or (r_offset and first - r_offset > 1)
                    ):
                        prev = r_offset  # gaps are committable, as Faust's own loop records them
                        for r in recs:
                            if prev and r.offset - prev > 1:
                                await self._add_gap(tp, prev + 1, r.offset)
                            prev = r.offset
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await self.wait_first(deliver_batch(tp, recs, generation_id), self.suspend_flow.wait())
                    read_offset[tp] = last
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            log.exception("fetch loop raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class BatchTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with :class:`BatchConsumer` and :class:`BatchConductor`
    (class attributes Faust meant to be replaced)."""

    Consumer = BatchConsumer
    Conductor = BatchConductor


async def record_batches(stream: Any, max_records: int, within_s: float) -> AsyncIterator[list[RecordBatch]]:
    """The agent side: lists of record batches (one per topic partition and poll) of the agent's
    channel, taken straight from its queue.

    A list is handed out once it holds ``max_records``, once no batch came for :data:`QUIET_S`, or
    ``within_s`` after its first batch, whichever is first. Each batch is tracked (a rebalance or
    shutdown waits for it) until the caller acknowledges it; batches of an old generation, or taken
    while flow is stopped, are dropped unacknowledged: the consumer reads them again from the
    committed offset.
    """
    app = stream.app
    consumer = app.consumer
    monitor = app.monitor
    flow_is_active = app.flow_control.is_active
    channel = aiter(stream.channel)  # subscribes the agent's topic, as iterating the stream would
    queue = channel.queue
    loop = asyncio.get_running_loop()

    def fresh(item: Any) -> bool:
        if not isinstance(item, RecordBatch):
            msg = f"{stream.channel} delivered {type(item).__name__}; is the broker URL tradepulse://?"
            raise TypeError(msg)
        if not flow_is_active() or item.generation_id != app.consumer_generation_id:
            return False
        consumer.track_message(item)
        # What Faust's stream records of every event it takes in, its livelock check reads: the
        # batch path bypasses the stream, and every worker logged multi-line ERRORs ("Stream has
        # not started processing TP(...)") about partitions it was processing.
        if monitor is not None:
            monitor.stream_inbound_time[item.tp] = time.monotonic()
        return True

    while True:
        try:
            first = await channel.__anext__()
        except StopAsyncIteration:  # the channel closed: the worker is stopping
            return
        taken = [first] if fresh(first) else []
        count = len(first) if taken else 0
        deadline = loop.time() + within_s
        try:
            while count < max_records and loop.time() < deadline:
                while not queue.empty() and count < max_records:
                    item = queue.get_nowait()
                    if fresh(item):
                        taken.append(item)
                        count += len(item)
                if count >= max_records:
                    break
                await asyncio.sleep(QUIET_S)  # let the consumer fill the queue
                if queue.empty():
                    break  # nothing came for QUIET_S: the source is quiet, don't hold what we have
        except StopAsyncIteration:  # closed while a list was open: what was taken is still handed out
            if taken:
                yield taken
            return
        if taken:
            yield taken
