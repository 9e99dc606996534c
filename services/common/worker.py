"""A domain service's worker: one Faust app, one intake agent, web endpoints, start-up checks.

The agent is plumbing: it takes a batch, runs it through :class:`Intake`, hands each new event to
the service logic, lets the logic flush, then acknowledges the batch.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import faust
from faust.types import EventT
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.batches import batches
from services.common.codec import DlqReason, header_pairs
from services.common.events import DOMAINS, Event
from services.common.intake import Intake, RawRecord, Rejected, dlq_headers
from services.common.kafka_admin import TopicSpec, ensure_topics
from services.common.metrics import CONSUMER_LAG, EVENTS_PROCESSED
from services.common.settings import Settings
from services.common.state import KafkaStateStore, NotOwned
from services.common.topics import dlq_topic, indicator_topic

__all__ = [
    "ServiceLogic",
    "ServiceSpec",
    "ServiceWorker",
    "StopDeadline",
    "Wiring",
    "Worker",
    "build_worker",
    "create_app",
    "tune_gc",
]

log = logging.getLogger(__name__)


class ServiceLogic(Protocol):
    """What a domain service plugs into the intake path."""

    def on_event(self, record: RawRecord, event: Event) -> None:
        """Apply one new, valid event. Raising sends it to the DLQ as ``processing_error``."""

    async def after_batch(self, partitions: set[int]) -> None:
        """Stage and send whatever the batch changed, before the batch is acknowledged."""


RecordHandler = Callable[[RawRecord], Awaitable[None] | None]


@dataclass(slots=True)
class Wiring:
    """What a service's logic may use: the app, the state store, internal topics and agents.

    Every agent made here follows the intake agent's discipline: wait until the partitions'
    state is restored, handle the batch, flush the state store, then acknowledge.
    """

    app: faust.App
    settings: Settings
    store: KafkaStateStore
    service: str
    topics: list[TopicSpec] = field(default_factory=list)

    def internal_topic(self, name: str, *, compacted: bool = False) -> Any:
        """A raw-bytes topic named ``<prefix>tradepulse-<service>-<name>``, co-partitioned with the
        input (same partition count, so Faust assigns partition p of both to one worker)."""
        full = self.settings.topic(f"tradepulse-{self.service}-{name}")
        self.topics.append(TopicSpec(full, self.settings.topic_partitions, compacted=compacted))
        return self.app.topic(
            full,
            partitions=self.settings.topic_partitions,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            internal=False,
        )

    def agent(
        self,
        topic: Any,
        handle: RecordHandler,
        *,
        name: str,
        after: Callable[[set[int]], Awaitable[None]] | None = None,
    ) -> None:
        """Consume ``topic`` in batches: ``handle`` each record of an owned partition, run
        ``after`` with the batch's partitions, flush the state store, acknowledge."""
        store, settings = self.store, self.settings

        async def run(stream: Any) -> None:
            async for events in batches(stream, settings.batch_max_events, settings.batch_within_s):
                owned = await store.wait_ready({e.message.partition for e in events})
                for e in events:
                    if store.owns(e.message.partition):
                        try:
                            result = handle(_raw(e))
                            if result is not None:
                                await result
                        except NotOwned:
                            continue  # revoked meanwhile
                if after is not None:
                    await after(owned)
                await store.flush()
                for e in events:
                    await stream.ack(e)

        self.app.agent(topic, name=f"{self.service}-{name}")(run)

    def timer(self, interval_s: float, fn: Callable[[], Awaitable[None]], *, name: str) -> None:
        """Run ``fn`` every ``interval_s`` seconds, then flush the state store."""

        async def tick() -> None:
            if self.app.should_stop:
                return
            try:
                await fn()
                await self.store.flush()
            except Exception:
                if not self.app.should_stop:
                    raise
                log.info("timer %s cut short by shutdown", name)  # its work is redone after restart

        tick.__name__ = tick.__qualname__ = f"{self.service}_{name}"
        self.app.timer(interval_s)(tick)

    async def send(self, topic: str, key: bytes, value: bytes, *, partition: int | None = None) -> None:
        """Queue one record on the app's producer (delivered before the next offset commit)."""
        await self.app.producer.send(topic, key, value, partition=partition, timestamp=None, headers=None)


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """How to build one service: its name (= domain) and its logic factory."""

    name: str
    logic: Callable[[Wiring], ServiceLogic] | None = None


class StopDeadline:
    """Ends the process when a graceful stop overruns ``timeout_s``.

    A worker whose broker has gone away cannot leave its group or commit; Faust's consumer thread
    then waits out its own 60 s shutdown timeout, past the 10 s an orchestrator grants before it
    kills. Exiting at the deadline loses nothing: offsets are only ever committed for batches whose
    effects were written (the commit path), so what was not committed is processed again by the
    partitions' next owner, exactly as after a crash.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self.timeout_s, self._give_up)
            self._timer.daemon = True
            self._timer.start()

    def _give_up(self) -> None:
        log.error(
            "stop overran its deadline; exiting without committing (uncommitted input is processed "
            "again after the restart). Is the Kafka broker reachable?",
            extra={"deadline_s": self.timeout_s, "fix": "TRADEPULSE_STOP_TIMEOUT_S sets the deadline"},
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(1)


class ServiceWorker(faust.Worker):
    """Faust's worker with a deadline on stopping (:class:`StopDeadline`)."""

    def __init__(self, *args: Any, stop_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = StopDeadline(stop_timeout_s)

    def _on_sigterm(self) -> None:
        self.deadline.arm()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self.deadline.arm()
        super()._on_sigint()


def tune_gc(gen0_threshold: int) -> None:
    """Collect cyclic garbage less often than Python's default (every 700 allocations).

    A worker allocates a few dozen objects per event and keeps many long-lived ones (cases,
    aggregates): with the default, collections took about a quarter of the service logic's time
    (docs/performance.md). Objects alive at start-up are frozen out of every later collection.
    """
    gc.freeze()
    gc.set_threshold(gen0_threshold, 10, 10)


def create_app(settings: Settings, *, service: str) -> faust.App:
    """A Faust app with every option explicit (Faust reads no environment of its own here)."""
    return faust.App(
        f"{settings.topic_prefix}tradepulse-{service}",
        broker=[f"kafka://{h}" for h in settings.bootstrap_list()],
        store="memory://",
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_disable_leader=True,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_s,
        producer_acks=-1,
        stream_wait_empty=True,  # a rebalance waits for the batch in hand to be acknowledged
        stream_buffer_maxsize=max(4096, settings.batch_max_events * 2),
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.port_for(service),
        web_in_thread=False,
    )


def _raw(event: EventT[Any]) -> RawRecord:
    m = event.message
    return RawRecord(
        topic=m.topic,
        partition=m.partition,
        offset=m.offset,
        key=m.key,
        value=m.value,
        headers=header_pairs(m.headers),
        timestamp_ms=int(m.timestamp * 1000) if m.timestamp else None,
    )


@dataclass(slots=True)
class Worker:
    """The assembled service, for the CLI and for tests."""

    app: faust.App
    intake: Intake
    settings: Settings
    service: str
    topics: list[TopicSpec]

    async def preflight(self) -> None:
        """Fail fast, with the fix in the message, when the broker or the topics are wrong."""
        await ensure_topics(
            self.settings.bootstrap_list(),
            self.topics,
            replication=self.settings.topic_replication,
            timeout_s=self.settings.startup_timeout_s,
        )


def build_worker(settings: Settings, spec: ServiceSpec) -> Worker:
    """Wire the app: input topic, dead-letter topic, state table, agent, web pages."""
    domain = DOMAINS[spec.name]
    app = create_app(settings, service=spec.name)
    partitions = settings.topic_partitions
    source = app.topic(
        settings.topic(domain.topic),
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    dlq_name = settings.topic(dlq_topic(domain.topic))
    state_topic = settings.topic(f"tradepulse-{spec.name}-state")

    async def flush_producer() -> None:
        await app.producer.flush()

    store = KafkaStateStore(
        topic=state_topic, bootstrap=settings.bootstrap_list(), before_restore=flush_producer
    )

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close_store(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await store.close()

    async def send_dlq(rejected: Rejected) -> None:
        r = rejected.record
        log.warning(
            "record dead-lettered",
            extra={
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "reason": rejected.reason.value,
                "detail": rejected.detail,
            },
        )
        await app.producer.send(
            dlq_name,
            r.key,
            r.value,
            partition=None,
            timestamp=r.timestamp_ms / 1000 if r.timestamp_ms else None,
            headers=dlq_headers(rejected),
        )

    intake = Intake(
        topic=domain.topic,
        store=store,
        send_dlq=send_dlq,
        horizon_s=settings.dedup_horizon_s,
        max_bytes=settings.max_record_bytes,
        max_skew_s=settings.max_clock_skew_s,
    )
    wiring = Wiring(app=app, settings=settings, store=store, service=spec.name)
    logic = spec.logic(wiring) if spec.logic else None

    @app.agent(source, name=f"{spec.name}-intake")
    async def intake_agent(stream: Any) -> None:
        async for events in batches(stream, settings.batch_max_events, settings.batch_within_s):
            await _process(stream, events)

    async def _process(stream: Any, events: Sequence[EventT[Any]]) -> None:
        owned = await store.wait_ready({e.message.partition for e in events})
        records = [_raw(e) for e in events if e.message.partition in owned]
        accepted = await intake.take(records)
        if logic is not None:
            for record, event in accepted:
                try:
                    logic.on_event(record, event)
                except NotOwned:
                    continue  # revoked while this batch was in hand: the new owner processes it
                except Exception as exc:  # one bad event must not stop the stream
                    detail = f"{event.type} {event.id}: {type(exc).__name__}: {exc}"
                    log.error("processing error", extra={"detail": detail, "tb": traceback.format_exc()})
                    await send_dlq(Rejected(record, DlqReason.PROCESSING_ERROR, detail))
            await logic.after_batch({r.partition for r in records})
        await store.flush()
        for e in events:
            await stream.ack(e)
            m = e.message
            next_offset[m.partition] = max(next_offset.get(m.partition, 0), m.offset + 1)
        processed.inc(len(records))

    next_offset: dict[int, int] = {}
    processed = EVENTS_PROCESSED.labels(topic=domain.topic)

    async def report_lag() -> None:
        """Consumer lag per owned input partition, for the lag alert."""
        if app.should_stop or app.consumer is None:
            return
        for tp in app.consumer.assignment():
            if tp.topic != source.get_topic_name():
                continue
            highwater = app.consumer.highwater(tp)
            if highwater is not None and tp.partition in next_offset:
                lag = max(0, highwater - next_offset[tp.partition])
                CONSUMER_LAG.labels(topic=domain.topic, partition=str(tp.partition)).set(lag)

    app.timer(5.0)(report_lag)

    source_name = source.get_topic_name()
    store.on_revoke(intake.forget)

    def _mine(tps: Any) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == source_name}

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types handlers with VarArg
    async def _on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        store.revoked(_mine(args[0] if args else kwargs.get("revoked", ())))

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _on_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = _mine(args[0] if args else kwargs.get("assigned", ()))
        store.revoked(store.owned() - assigned)
        await store.assigned(assigned)

    _add_pages(app, spec.name)
    topics = [
        *wiring.topics,
        TopicSpec(source_name, partitions),
        TopicSpec(state_topic, partitions, compacted=True),
        TopicSpec(dlq_name, partitions, must_match_partitions=False),
        TopicSpec(
            settings.topic(indicator_topic(spec.name)),
            partitions,
            compacted=True,
            must_match_partitions=False,
        ),
    ]
    return Worker(app=app, intake=intake, settings=settings, service=spec.name, topics=topics)


def _add_pages(app: faust.App, service: str) -> None:
    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        body = await asyncio.to_thread(generate_latest)
        return web.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        """Liveness: the process serves requests and the app has not crashed."""
        ok = not app.crashed
        return web.json({"service": service, "status": "ok" if ok else "crashed"}, status=200 if ok else 500)

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        """Readiness: partitions assigned and no rebalance or recovery under way."""
        assigned = sorted(str(tp) for tp in app.consumer.assignment()) if app.consumer else []
        is_ready = bool(assigned) and not app.rebalancing
        body = {"service": service, "ready": is_ready, "assigned": assigned}
        return web.json(body, status=200 if is_ready else 503)
