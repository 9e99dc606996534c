"""PostgreSQL history through asyncpg: versioned migrations and idempotent upserts.

Every write is an upsert keyed by what identifies the row (indicator key; service and case id),
so redelivery after a crash or an outage is harmless; an indicator row only ever moves to a newer
revision.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson

__all__ = ["MIGRATIONS", "migrate", "redact_dsn", "upsert_cases", "upsert_indicators"]

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK = 0x7472_6164_6570  # advisory lock id: one migrator at a time


def redact_dsn(dsn: str) -> str:
    """A PostgreSQL URL fit for logs and errors: scheme, user, host, port and database only (no
    password, no query parameters, which may name key files or carry passwords too)."""
    parts = urlsplit(dsn)
    user = f"{parts.username}@" if parts.username else ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply the migrations not applied yet, in order, each in its own transaction."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for path in sorted(MIGRATIONS.glob("*.sql")):
            version = int(path.name.split("_", 1)[0])
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, path.name
                )
            log.info("migration applied", extra={"migration": path.name})
            applied.append(version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK)


_UPSERT_INDICATOR = """
INSERT INTO indicator_window (key, service, indicator, window_size, window_start, window_end, dimensions,
                              unit, count, revision, final, late_events, data, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11, $12, $13::jsonb, now())
ON CONFLICT (key) DO UPDATE SET
    count = EXCLUDED.count, revision = EXCLUDED.revision, final = EXCLUDED.final,
    late_events = EXCLUDED.late_events, data = EXCLUDED.data, updated_at = now()
WHERE indicator_window.revision <= EXCLUDED.revision
"""

_UPSERT_CASE = """
INSERT INTO case_state (service, case_id, status, event_time, milestones, measures, attributes, revision,
                        updated_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb, $8, now())
ON CONFLICT (service, case_id) DO UPDATE SET
    status = EXCLUDED.status, event_time = EXCLUDED.event_time, milestones = EXCLUDED.milestones,
    measures = EXCLUDED.measures, attributes = EXCLUDED.attributes, revision = EXCLUDED.revision,
    updated_at = now()
WHERE case_state.revision <= EXCLUDED.revision
"""


def _indicator_row(event: dict[str, Any]) -> tuple[Any, ...]:
    d = event["data"]
    return (
        event["subject"], event["source"].rsplit("/", 1)[-1], d["indicator"], d["window"],
        datetime.fromisoformat(d["window_start"]), datetime.fromisoformat(d["window_end"]),
        orjson.dumps(d["dimensions"]).decode(), d["unit"], d["count"], d["revision"], d["final"],
        d["late_events"], orjson.dumps(d).decode(),
    )  # fmt: skip


async def upsert_indicators(conn: asyncpg.Connection, events: Iterable[dict[str, Any]]) -> int:
    """Upsert indicator records (structured CloudEvents); the newest revision per key wins."""
    latest: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["subject"] not in latest or e["data"]["revision"] >= latest[e["subject"]]["data"]["revision"]:
            latest[e["subject"]] = e
    rows = [_indicator_row(e) for e in latest.values()]
    if rows:
        await conn.executemany(_UPSERT_INDICATOR, rows)
    return len(rows)


async def upsert_cases(conn: asyncpg.Connection, events: Iterable[dict[str, Any]]) -> int:
    """Upsert case records (structured CloudEvents of the case topics); the newest revision wins."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        d = e["data"]
        key = (d["service"], d["case_id"])
        if key not in latest or d["revision"] >= latest[key]["data"]["revision"]:
            latest[key] = e
    rows = [
        (
            e["data"]["service"],
            e["data"]["case_id"],
            e["data"]["status"],
            datetime.fromisoformat(e["time"]),
            orjson.dumps(e["data"]["milestones"]).decode(),
            orjson.dumps(e["data"]["measures"]).decode(),
            orjson.dumps(e["data"]["attributes"]).decode(),
            e["data"]["revision"],
        )
        for e in latest.values()
    ]
    if rows:
        await conn.executemany(_UPSERT_CASE, rows)
    return len(rows)
