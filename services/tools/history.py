"""``tradepulse history``: indicator revisions and cases into PostgreSQL.

Reads every service's ``indicators.<service>.v1`` and ``cases.<service>.v1`` topics with its own
consumer group, upserts each batch in one transaction, and commits the offsets only
after the transaction. When PostgreSQL is down it retries the same batch with back-off, so an
outage delays history but loses nothing; redelivery is harmless (idempotent upserts).

Like the workers it serves ``/health``, ``/ready`` (503 while PostgreSQL is unreachable or no
partition is assigned) and ``/metrics`` (rows written, failed writes, the time of the last write,
consumer lag) on ``TRADEPULSE_WEB_PORT`` (6066), so an outage shows on the dashboards and alerts
(``HistoryWritesFailing``), not only in its log.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import faust
import orjson
from aiokafka import AIOKafkaConsumer
from prometheus_client import Counter, Gauge

from services.contract.topics import case_topic, indicator_topic
from services.registry import DOMAINS
from services.runtime.db import migrate, redact_dsn, upsert_cases, upsert_indicators
from services.runtime.kafka_admin import READ, Access, StartupError, require_access
from services.runtime.metrics import CONSUMER_LAG
from services.runtime.pages import require_free_port, serve_pages
from services.runtime.settings import Settings

__all__ = ["PORT", "HistoryStore", "run_history", "run_until_stopped"]

log = logging.getLogger(__name__)
PORT = 6066

ROWS = Counter("tradepulse_history_rows_total", "Records upserted into PostgreSQL, by table.", ["table"])
WRITE_FAILURES = Counter(
    "tradepulse_history_write_failures_total",
    "Batches PostgreSQL did not take (unreachable, or the transaction failed); each is retried.",
)
LAST_WRITE = Gauge(
    "tradepulse_history_last_write_timestamp_seconds", "When the last batch was written (Unix time)."
)
OUTAGE_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    ConnectionError,
    asyncio.TimeoutError,
)


def _misconfigured(exc: BaseException, where: str) -> str | None:
    """The fix for a connection that can never succeed as configured (None: maybe an outage)."""
    text = str(exc)
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return f"PostgreSQL at {where} refused the password: check the password in DATABASE_URL"
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        if "no encryption" in text:
            return (
                f"PostgreSQL at {where} accepts TLS connections only: add sslmode=verify-full and "
                "sslrootcert=<CA file> to DATABASE_URL"
            )
        return f"PostgreSQL at {where} refused the connection ({text.split(chr(10))[0]}): check DATABASE_URL"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the certificate of PostgreSQL at {where} is not trusted ({exc.verify_message}): set "
            "sslrootcert in DATABASE_URL to the CA that signed it"
        )
    return None


class HistoryStore(faust.Service):
    """Owns the asyncpg pool; (re)connects with back-off and applies migrations first."""

    def __init__(self, dsn: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dsn = dsn
        self.pool: asyncpg.Pool | None = None

    async def connect(self, *, give_up_after_s: float | None = None) -> asyncpg.Pool:
        """The pool, (re)connecting with back-off; with ``give_up_after_s`` (start-up), a
        StartupError naming the fix once that much time has passed without success."""
        delay = 0.5
        deadline = None if give_up_after_s is None else time.monotonic() + give_up_after_s
        while self.pool is None:
            try:
                self.pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=2, timeout=5)
                async with self.pool.acquire() as conn:
                    await migrate(conn)
            except OUTAGE_ERRORS as exc:
                self.pool = None
                why = " ".join(f"{type(exc).__name__}: {exc}".split())
                fatal = _misconfigured(exc, redact_dsn(self.dsn))
                if fatal is not None and deadline is not None:  # waiting would not help
                    raise StartupError(fatal) from None
                if deadline is not None and time.monotonic() + delay > deadline:
                    msg = (
                        f"PostgreSQL at {redact_dsn(self.dsn)} is unreachable ({why}). Start the local "
                        "stack with `tradepulse stack up`, or set DATABASE_URL to a reachable server."
                    )
                    raise StartupError(msg) from None
                log.warning("PostgreSQL unreachable; retrying", extra={"error": why, "retry_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return self.pool

    async def write(self, indicators: list[dict[str, Any]], cases: list[dict[str, Any]]) -> None:
        """Upsert one batch in one transaction; on an outage retry until it is written."""

        async def upsert(conn: asyncpg.Connection) -> None:
            await upsert_indicators(conn, indicators)
            await upsert_cases(conn, cases)

        await self.transact(upsert)
        ROWS.labels(table="indicator_window").inc(len(indicators))
        ROWS.labels(table="case_state").inc(len(cases))
        LAST_WRITE.set_to_current_time()

    async def transact(self, work: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
        """Run ``work`` in one transaction; on an outage retry it (it must be idempotent) until it
        commits, so an outage delays the writer and loses nothing."""
        delay = 0.5
        while True:
            pool = await self.connect()
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await work(conn)
                return
            except OUTAGE_ERRORS as exc:
                WRITE_FAILURES.inc()
                log.warning("PostgreSQL write failed (%s); retrying in %.1fs", exc, delay)
                await self._reset()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _reset(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.terminate()

    async def on_stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None


async def _run(settings: Settings, stop: asyncio.Event) -> None:
    port = settings.port_for(PORT)
    require_free_port(settings.web_host, port)  # a local problem: named first
    topics = [settings.topic(indicator_topic(name)) for name in DOMAINS]
    topics += [settings.topic(case_topic(name)) for name in DOMAINS]
    group = settings.topic("tradepulse-history")
    access = Access(dict.fromkeys(topics, READ), group=group, principal=settings.kafka.principal())
    await require_access(settings.kafka_client(), access, timeout_s=settings.startup_timeout_s)
    store = HistoryStore(settings.database_url.get_secret_value())
    await store.connect(give_up_after_s=settings.startup_timeout_s)  # a bad DATABASE_URL stops here
    await store.start()
    consumer = AIOKafkaConsumer(
        **settings.kafka_client(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        metadata_max_age_ms=5000,
    )

    def ready() -> dict[str, bool]:
        return {"postgresql": store.pool is not None, "kafka": bool(consumer.assignment())}

    pages = await serve_pages(settings.web_host, port, "history", ready=ready, foreign=DOMAINS)
    try:
        await _consume(settings, consumer, topics, store, stop, web=f"http://{settings.web_host}:{port}")
    finally:
        await pages.cleanup()
        await store.stop()
        log.info("history stopped")


async def _consume(
    settings: Settings,
    consumer: AIOKafkaConsumer,
    topics: list[str],
    store: HistoryStore,
    stop: asyncio.Event,
    *,
    web: str,
) -> None:
    await consumer.start()
    consumer.subscribe(pattern="|".join(t.replace(".", r"\.") for t in topics))
    case_topics = {settings.topic(case_topic(name)) for name in DOMAINS}
    lag_reported = 0.0
    try:
        log.info("history running", extra={"topics": topics, "web": web})
        while not stop.is_set():
            if time.monotonic() - lag_reported >= 5:
                lag_reported = time.monotonic()
                await _report_lag(consumer, settings.topic_prefix)
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            indicators: list[dict[str, Any]] = []
            cases: list[dict[str, Any]] = []
            for tp, records in batches.items():
                target = cases if tp.topic in case_topics else indicators
                target.extend(orjson.loads(r.value) for r in records if r.value)
            if not batches:
                continue
            await store.write(indicators, cases)
            await consumer.commit()
    finally:
        await consumer.stop()


async def _report_lag(consumer: AIOKafkaConsumer, prefix: str) -> None:
    """Records of each assigned partition not yet written, for the lag alert and dashboards."""
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is not None:
            lag = max(0, highwater - await consumer.position(tp))
            CONSUMER_LAG.labels(topic=tp.topic.removeprefix(prefix), partition=str(tp.partition)).set(lag)


def run_until_stopped(run: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run a process's main coroutine until SIGTERM or SIGINT sets the event it is given (history,
    the release: they stop cleanly, each in its own way)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(stop)

    asyncio.run(main())
    return 0


def run_history(settings: Settings) -> int:
    return run_until_stopped(lambda stop: _run(settings, stop))
