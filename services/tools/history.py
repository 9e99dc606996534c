"""``tradepulse history``: indicator revisions and completed cases into PostgreSQL.

Reads every service's ``indicators.<service>.v1`` and ``tradepulse-<service>-completed`` topics
with its own consumer group, upserts each batch in one transaction, and commits the offsets only
after the transaction. When PostgreSQL is down it retries the same batch with back-off, so an
outage delays history but loses nothing; redelivery is harmless (idempotent upserts).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import asyncpg
import faust
import orjson
from aiokafka import AIOKafkaConsumer

from services.common.db import migrate, upsert_cases, upsert_indicators
from services.common.events import DOMAINS
from services.common.settings import Settings
from services.common.topics import indicator_topic

__all__ = ["HistoryStore", "run_history"]

log = logging.getLogger(__name__)
OUTAGE_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    ConnectionError,
    asyncio.TimeoutError,
)


class HistoryStore(faust.Service):
    """Owns the asyncpg pool; (re)connects with back-off and applies migrations first."""

    def __init__(self, dsn: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dsn = dsn
        self.pool: asyncpg.Pool | None = None

    async def connect(self) -> asyncpg.Pool:
        delay = 0.5
        while self.pool is None:
            try:
                self.pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=2, timeout=5)
                async with self.pool.acquire() as conn:
                    await migrate(conn)
            except OUTAGE_ERRORS as exc:
                self.pool = None
                log.warning(
                    "PostgreSQL unreachable (%s); retrying in %.1fs. Start it with `tradepulse stack up` "
                    "or set DATABASE_URL", exc, delay,
                )  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return self.pool

    async def write(self, indicators: list[dict[str, Any]], cases: list[dict[str, Any]]) -> None:
        """Upsert one batch in one transaction; on an outage retry until it is written."""
        delay = 0.5
        while True:
            pool = await self.connect()
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await upsert_indicators(conn, indicators)
                    await upsert_cases(conn, cases)
                return
            except OUTAGE_ERRORS as exc:
                log.warning("history write failed (%s); retrying in %.1fs", exc, delay)
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
    topics = [settings.topic(indicator_topic(name)) for name in DOMAINS]
    topics += [settings.topic(f"tradepulse-{name}-completed") for name in DOMAINS]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_list(),
        group_id=settings.topic("tradepulse-history"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        metadata_max_age_ms=5000,
    )
    await consumer.start()
    consumer.subscribe(pattern="|".join(t.replace(".", r"\.") for t in topics))
    store = HistoryStore(settings.database_url.get_secret_value())
    await store.start()
    try:
        await store.connect()
        log.info("history running", extra={"topics": topics})
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            indicators: list[dict[str, Any]] = []
            cases: list[dict[str, Any]] = []
            for tp, records in batches.items():
                target = cases if tp.topic.endswith("-completed") else indicators
                target.extend(orjson.loads(r.value) for r in records if r.value)
            if not batches:
                continue
            await store.write(indicators, cases)
            await consumer.commit()
    finally:
        await store.stop()
        await consumer.stop()


def run_history(settings: Settings) -> int:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await _run(settings, stop)

    asyncio.run(main())
    return 0
