"""A service's worker: one Faust app, three agents on one commit path, timers, web endpoints.

Faust owns what it is good at: group membership, partition assignment, rebalances, flow control,
offset commits. Everything between taking a batch and acknowledging it is the commit path's
(services.runtime.commit); the agents here are plumbing.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, Histogram

from services.contract.topics import case_topic, dlq_topic, indicator_topic, watch_topic
from services.engine.domain import Domain, EngineSettings
from services.engine.pipeline import Pipeline, Topics
from services.runtime.commit import CommitPath, Source
from services.runtime.dedup import STATE_INDEXES
from services.runtime.fetch import RecordFetcher
from services.runtime.intake import Intake
from services.runtime.kafka_admin import (
    READ,
    READ_WRITE,
    WRITE,
    Access,
    StartupError,
    TopicSpec,
    cluster_id,
    ensure_topics,
    topic_config,
)
from services.runtime.local import ROCKSDB_SHARE, LocalStateError
from services.runtime.metrics import CONSUMER_LAG, HOUSEKEEPING_SECONDS, STATE_DISK, exposition
from services.runtime.pages import readiness_body, require_free_port, watch_query
from services.runtime.permissions import Operation
from services.runtime.settings import Settings
from services.runtime.store import STATE_BATCH_BYTES, KafkaStateStore
from services.runtime.transport import SCHEME, RecordBatch, record_batches

__all__ = ["ServiceWorker", "StopDeadline", "Worker", "assignment", "build_worker", "create_app", "tune_gc"]

log = logging.getLogger(__name__)


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
    """Faust's worker with a deadline on stopping (:class:`StopDeadline`), and one log line when a
    stop begins and one when it is done (Faust's own lines show only at debug level)."""

    def __init__(self, *args: Any, stop_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = StopDeadline(stop_timeout_s)
        self._stop_began = 0.0

    def _stopping(self, signal: str) -> None:
        log.info("stopping worker", extra={"signal": signal, "deadline_s": self.deadline.timeout_s})
        self._stop_began = time.monotonic()
        self.deadline.arm()

    def _on_sigterm(self) -> None:
        self._stopping("SIGTERM")
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._stopping("SIGINT")
        super()._on_sigint()

    def stop_and_shutdown(self) -> None:
        super().stop_and_shutdown()
        took = time.monotonic() - self._stop_began if self._stop_began else None
        log.info("worker stopped", extra={"seconds": None if took is None else round(took, 2)})


def tune_gc(gen0_threshold: int) -> None:
    """Collect cyclic garbage less often than Python's default (every 700 allocations).

    A worker allocates a few dozen objects per event and keeps many long-lived ones (cases,
    aggregates): with the default, collections took about a quarter of the service logic's time
    (docs/performance.md). Objects alive at start-up are frozen out of every later collection.
    """
    gc.freeze()
    gc.set_threshold(gen0_threshold, 10, 10)


def create_app(settings: Settings, *, service: str, port: int, scheme: str = SCHEME) -> faust.App:
    """A Faust app with every option explicit (Faust reads no environment of its own here). The
    broker URL's scheme selects the transport: TradePulse's batch transport, unless a benchmark
    asks for Faust's own (``kafka``)."""
    return faust.App(
        app_id(settings, service),
        broker=[f"{scheme}://{h}" for h in settings.bootstrap_list()],
        store="memory://",
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_disable_leader=True,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_s,
        # a worker that died is noticed after this long, and its partitions move (Faust: 60 s);
        # heartbeats come from the consumer thread, so busy processing does not delay them
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        producer_acks=-1,
        stream_wait_empty=True,  # a rebalance waits for the batch in hand to be acknowledged
        stream_processing_timeout=settings.stream_processing_timeout_s,
        stream_buffer_maxsize=max(4096, settings.batch_max_events * 2),
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.port_for(port),
        web_in_thread=False,
        broker_credentials=settings.kafka.faust(),
    )


@dataclass(slots=True)
class Worker:
    """The assembled service, for the CLI and for tests."""

    app: faust.App
    settings: Settings
    domain: Domain
    engine: EngineSettings
    store: KafkaStateStore
    pipeline: Pipeline
    commit: CommitPath
    topics: list[TopicSpec]
    access: Access

    async def preflight(self) -> None:
        """Fail fast, with the fix in the message, when the web port is taken or the broker, the
        credentials, the topics or the permissions are wrong; learn the partition counts of the
        topics written by key."""
        require_free_port(self.settings.web_host, self.settings.port_for(self.domain.port))
        require_state_dir(self.store.directory)
        client, timeout_s = self.settings.kafka_client(), self.settings.startup_timeout_s
        counts = await ensure_topics(
            client,
            self.topics,
            replication=self.settings.topic_replication,
            timeout_s=timeout_s,
            create=self.settings.create_topics,
            access=self.access,
        )
        self.store.partition_counts.update(counts)
        self.store.cluster = await cluster_id(client, timeout_s=timeout_s)
        config = await topic_config(client, self.store.topic, timeout_s=timeout_s)
        if "delete.retention.ms" in config:
            self.store.delete_retention_s = int(config["delete.retention.ms"]) / 1000
        limit = int(config.get("max.message.bytes", STATE_MAX_MESSAGE_BYTES))
        if limit < STATE_MAX_MESSAGE_BYTES:
            msg = (
                f"topic {self.store.topic} takes records of at most {limit} bytes (max.message.bytes); "
                f"each partition's state changes are written as one record batch: set max.message.bytes="
                f"{STATE_MAX_MESSAGE_BYTES} on it (kafka-configs.sh --alter --entity-type topics "
                f"--entity-name {self.store.topic} --add-config max.message.bytes={STATE_MAX_MESSAGE_BYTES})"
            )
            raise StartupError(msg)


STATE_MAX_MESSAGE_BYTES = STATE_BATCH_BYTES + 1024 * 1024
CASE_BYTES = 2048  # what a decoded case takes in memory, about (docs/performance.md), to size the cache


def require_state_dir(directory: Path) -> None:
    """The state folder exists (made if need be) and is writable; a StartupError naming
    TRADEPULSE_STATE_DIR otherwise."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        msg = f"cannot write the local state folder {directory} ({exc.strerror}): set TRADEPULSE_STATE_DIR"
        raise StartupError(msg) from None


def _topics(settings: Settings, domain: Domain) -> tuple[Topics, str]:
    """The physical names of a domain's output and internal topics, and of its state topic."""
    internal = {
        kind: settings.topic(f"tradepulse-{domain.name}-{kind}") for kind in ("links", "partials", "state")
    }
    names = Topics(
        links=internal["links"],
        partials=internal["partials"],
        indicators=settings.topic(indicator_topic(domain.name)),
        dlq=settings.topic(dlq_topic(domain.topic)),
        cases=settings.topic(case_topic(domain.name)),
        watch=settings.topic(watch_topic(domain.name)),
    )
    return names, internal["state"]


def _dlqs(settings: Settings, domain: Domain) -> dict[str, str]:
    """Physical input topic -> its physical dead-letter topic."""
    return {settings.topic(t): settings.topic(dlq_topic(t)) for t in domain.topics}


def _uses(settings: Settings, domain: Domain) -> list[tuple[TopicSpec, frozenset[Operation]]]:
    """Every topic ``tradepulse worker <domain>`` uses: as it creates it (or an administrator must,
    with TRADEPULSE_CREATE_TOPICS=false), and what it does with it. A derived domain's inputs are
    other services' case topics: compacted, as those services create them."""
    names, state = _topics(settings, domain)
    n, output = settings.topic_partitions, {"compacted": True, "must_match_partitions": False}
    return [
        *[(TopicSpec(settings.topic(t), n, compacted=domain.derived), READ) for t in domain.topics],
        (TopicSpec(names.links, n), READ_WRITE),
        (TopicSpec(names.partials, n), READ_WRITE),
        (TopicSpec(state, n, compacted=True, max_message_bytes=STATE_MAX_MESSAGE_BYTES), READ_WRITE),
        *[(TopicSpec(t, n, must_match_partitions=False), WRITE) for t in _dlqs(settings, domain).values()],
        (TopicSpec(names.indicators, n, **output), WRITE),
        (TopicSpec(names.cases, n, **output), WRITE),
        (TopicSpec(names.watch, n, **output), WRITE),  # every service's (empty without watch rules)
    ]


def worker_topics(settings: Settings, domain: Domain) -> list[TopicSpec]:
    """The topics ``tradepulse worker <domain>`` uses, as it creates them."""
    return [spec for spec, _ in _uses(settings, domain)]


def worker_access(settings: Settings, domain: Domain) -> Access:
    """Everything ``tradepulse worker <domain>`` does on the cluster (docs/security.md)."""
    return Access(
        topics={spec.name: ops for spec, ops in _uses(settings, domain)},
        group=app_id(settings, domain.name),
        create=settings.create_topics,
        principal=settings.kafka.principal(),
    )


def app_id(settings: Settings, service: str) -> str:
    """The Faust app id, which is the worker's consumer group."""
    return f"{settings.topic_prefix}tradepulse-{service}"


def build_worker(settings: Settings, domain: Domain, *, foreign: Sequence[str] = ()) -> Worker:
    """Wire one domain: its topics, state store, engine, commit path, agents, timers and pages
    (``foreign``: the other domains, whose metrics this worker's /metrics leaves out)."""
    name, partitions = domain.name, settings.topic_partitions
    engine = domain.settings()
    context = domain.context(engine)
    app = create_app(settings, service=name, port=domain.port)

    def topic(*physical: str) -> Any:
        return app.topic(
            *physical, partitions=partitions, key_type=bytes, value_type=bytes,
            key_serializer="raw", value_serializer="raw", internal=False,
        )  # fmt: skip

    names, state_topic = _topics(settings, domain)
    inputs = {settings.topic(t): t for t in domain.topics}  # physical -> contract name
    security = settings.kafka.aiokafka()
    fetch = RecordFetcher(settings.bootstrap_list(), client=security)

    cache_bytes = settings.state_cache_mb * 1024 * 1024
    store = KafkaStateStore(
        topic=state_topic,
        bootstrap=settings.bootstrap_list(),
        directory=settings.state_dir / state_topic,
        cache_bytes=int(cache_bytes * ROCKSDB_SHARE),
        indexes=STATE_INDEXES,
        client=security,
    )
    intake = Intake(
        catalog=domain.catalog,
        store=store,
        horizon_s=settings.dedup_horizon_s,
        max_bytes=settings.max_record_bytes,
        max_skew_s=settings.max_clock_skew_s,
        max_age_s=settings.max_event_age_s,
        deduplicate=not domain.derived,
        labels=inputs,
    )
    pipeline = Pipeline(
        domain, settings=engine, context=context, store=store, partitions=partitions, topics=names,
        cache_cases=int(cache_bytes * (1 - ROCKSDB_SHARE)) // CASE_BYTES,
    )  # fmt: skip
    commit = CommitPath(
        intake=intake, pipeline=pipeline, store=store, fetch=fetch, dlq=names.dlq,
        dlqs=_dlqs(settings, domain),
    )  # fmt: skip
    store.on_revoke(intake.forget)
    store.on_revoke(pipeline.forget)
    store.on_restored(pipeline.loading)
    store.fatal = commit.flusher.fatal = _stop_on(app)

    sources = {
        Source.INPUT: topic(*inputs),
        Source.LINKS: topic(names.links),
        Source.PARTIALS: topic(names.partials),
    }
    next_offset: dict[tuple[str, int], int] = {}
    for source, t in sources.items():
        _agent(
            app,
            t,
            source,
            commit,
            settings,
            f"{name}-{source.value}",
            next_offset if source is Source.INPUT else None,
        )

    _timer(app, engine.partials_interval_s, pipeline.emit_partials, commit, name="partials")
    _timer(app, engine.indicator_interval_s, pipeline.publish, commit, name="publish")
    _timer(
        app,
        engine.housekeeping_interval_s,
        pipeline.housekeeping,
        commit,
        name="housekeeping",
        repeat=True,
        timed=HOUSEKEEPING_SECONDS,
    )
    if domain.watch:
        _timer(
            app,
            engine.watch_interval_s,
            lambda: pipeline.watch(time.time()),
            commit,
            name="watch",
            repeat=True,
        )
    _report_lag(app, inputs, next_offset)
    _report_disk(app, store)
    _ownership(app, store, settings.topic(domain.topic))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        try:  # what is staged is written and acknowledged, if the broker lets it (the deadline bounds it)
            await commit.flusher.drain()
        finally:
            await store.close()
            await fetch.close()

    _add_pages(app, name, foreign, store, pipeline)
    return Worker(
        app, settings, domain, engine, store, pipeline, commit,
        worker_topics(settings, domain), worker_access(settings, domain),
    )  # fmt: skip


def _agent(
    app: faust.App,
    topic: Any,
    source: Source,
    commit: CommitPath,
    settings: Settings,
    name: str,
    next_offset: dict[tuple[str, int], int] | None,
) -> None:
    """The one agent loop: take a batch, run it through the commit path, which acknowledges it."""

    async def loop(stream: Any) -> None:
        async for taken in record_batches(stream, settings.batch_max_events, settings.batch_within_s):
            records = [r for batch in taken for r in batch.raw()]

            async def ack(taken: Sequence[RecordBatch] = taken) -> None:
                for batch in taken:
                    batch.ack()

            await commit.run(source, records, ack)
            if next_offset is not None:
                for batch in taken:
                    tp = (batch.topic, batch.partition)
                    if batch.offset >= next_offset.get(tp, 0):
                        next_offset[tp] = batch.offset + 1

    app.agent(topic, name=name)(loop)


def _timer(
    app: faust.App,
    interval_s: float,
    work: Callable[[], object],
    commit: CommitPath,
    *,
    name: str,
    repeat: bool = False,
    timed: Histogram | None = None,
) -> None:
    """Run ``work`` every ``interval_s`` through the commit path; with ``repeat``, again at once
    (after the event loop had a turn) while it says work is left: each pass is bounded, so no pass
    holds the loop for long, and a backlog (a day of cases due after a replay) still goes quickly.
    ``timed`` observes how long each pass of the work itself holds the loop."""

    def measured() -> object:
        started = time.perf_counter()
        try:
            return work()
        finally:
            if timed is not None:
                timed.observe(time.perf_counter() - started)

    async def tick() -> None:
        if app.should_stop:
            return
        try:
            more = True
            while more and not app.should_stop:
                more = bool(await commit.tick(measured)) and repeat
        except Exception:
            if not app.should_stop:
                raise
            log.info("timer cut short by shutdown", extra={"timer": name})  # its work is redone after restart

    tick.__name__ = tick.__qualname__ = f"{commit.pipeline.domain.name}_{name}"
    app.timer(interval_s)(tick)


def _report_lag(app: faust.App, inputs: dict[str, str], next_offset: dict[tuple[str, int], int]) -> None:
    """Consumer lag per owned input partition, for the lag alert."""

    async def report() -> None:
        if app.should_stop:
            return
        for tp in assignment(app):
            contract = inputs.get(tp.topic)
            taken = next_offset.get((tp.topic, tp.partition))
            if contract is None or taken is None:
                continue
            highwater = app.consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, highwater - taken)
                CONSUMER_LAG.labels(topic=contract, partition=str(tp.partition)).set(lag)

    app.timer(5.0)(report)


def _stop_on(app: faust.App) -> Callable[[BaseException], None]:
    """The commit path cannot go on (the local state cannot be written, a full disk say, or a bug):
    one line naming the fix, then the worker stops at once, as after a crash (nothing is lost:
    uncommitted input is processed again after the restart)."""

    def stop(exc: BaseException) -> None:
        if isinstance(exc, LocalStateError):
            log.critical("%s", exc, extra={"fix": "free space under TRADEPULSE_STATE_DIR, then restart"})
        else:
            log.critical("commit path failed; stopping", exc_info=exc)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(3)

    return stop


def _report_disk(app: faust.App, store: KafkaStateStore) -> None:
    """Bytes of the local state on disk (what a worker's volume must hold)."""

    async def report() -> None:
        if app.should_stop:
            return
        sizes = await asyncio.to_thread(lambda: sum(b.disk_bytes() for _, b in store.local_copies()))
        STATE_DISK.set(sizes)

    app.timer(30.0)(report)


def _ownership(app: faust.App, store: KafkaStateStore, input_name: str) -> None:
    """Partitions of the input topic are the unit of ownership; state follows them."""

    def mine(tps: Any) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == input_name}

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types handlers with VarArg
    async def _on_revoked(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked = mine(args[0] if args else kwargs.get("revoked", ()))
        if lost := revoked & store.held():
            log.info("partitions revoked", extra={"partitions": sorted(lost)})  # a rebalance
        store.revoked(revoked)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _on_assigned(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = mine(args[0] if args else kwargs.get("assigned", ()))
        store.revoked(store.held() - assigned)
        await store.assigned(assigned)  # restores in the background: the rebalance goes on


def assignment(app: faust.App) -> set[TP]:
    """The partitions the worker's consumer holds; none before its thread starts or after it
    stopped. Faust raises ConsumerNotStarted then, and the readiness page and the lag timer ask at
    those times too (the page answered 500 with a traceback in the log)."""
    try:
        return set(app.consumer.assignment())
    except ConsumerNotStarted:
        return set()


def _add_pages(
    app: faust.App, service: str, foreign: Sequence[str], store: KafkaStateStore, pipeline: Pipeline
) -> None:
    rules = [r.name for r in pipeline.cases.rules]

    @app.page("/watch")
    async def watch(web: Any, request: Any) -> Any:
        """The cases the SLA watch flags on this worker's partitions (docs/contract.md section 9)."""
        try:
            query = watch_query(request.query, rules)
        except LookupError as exc:
            return web.json({"service": service, "error": str(exc)}, status=404)
        except ValueError as exc:
            return web.json({"service": service, "error": str(exc)}, status=400)
        return web.json(pipeline.watching(*query))

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        body = await asyncio.to_thread(exposition, foreign)
        return web.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        """Liveness: the process serves requests and the app has not crashed."""
        ok = not app.crashed
        return web.json({"service": service, "status": "ok" if ok else "crashed"}, status=200 if ok else 500)

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        """Readiness: partitions assigned, no rebalance under way, and every owned partition's state
        restored (``restoring``: records restored and in all, per partition still restoring)."""
        assigned = sorted(str(tp) for tp in assignment(app))
        restoring = {
            str(p): {"restored": done, "total": total} for p, (done, total) in store.restoring().items()
        }
        checks = {
            "partitions": "ok" if assigned else "none assigned",
            "rebalance": "under way" if app.rebalancing else "ok",
            "state": f"restoring {len(restoring)} partitions" if restoring else "ok",
        }
        body, status = readiness_body(service, checks, assigned=assigned, restoring=restoring)
        return web.json(body, status=status)
