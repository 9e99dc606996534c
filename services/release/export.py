"""``tradepulse release export --destination hk --date 2025-03-01``: one destination's cells of one
day as the files that go through a data-export service centre.

It writes ``tradepulse-release-<destination>-<date>.csv`` and ``.json`` (the same cells, released and
suppressed, exactly as on ``release.<destination>.v1``) and ``.sha256``, a manifest of both files'
SHA-256 sums that ``sha256sum -c`` checks. A day's cells are the ``P1D`` cells of that day and, on
the last day of a month, that month's ``P1M`` cells, so every cell is in exactly one day's export.
It refuses a day whose windows are not all final yet: the file would miss what is still to come.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from services.engine.windows import SHANGHAI
from services.release.policy import RELEASED_VALUES, Policy
from services.release.service import ReleaseSettings, audited_decision, load, record_of
from services.runtime.db import redact_dsn
from services.runtime.kafka_admin import StartupError

__all__ = ["export_day"]

COLUMNS = (
    "key",
    "indicator",
    "window",
    "window_start",
    "window_end",
    "dimensions",
    "unit",
    "status",
    "reason",
    *dict.fromkeys(v for vs in RELEASED_VALUES.values() for v in vs),
    "policy",
    "policy_version",
    "policy_sha256",
    "released_at",
)


def export_day(settings: ReleaseSettings, destination: str, day: date, out: Path) -> list[Path]:
    """Write the day's files; StartupError (one line, exit 2) when it cannot or must not."""
    policies = {p.destination: p for p in load(settings)}
    policy = policies.get(destination)
    if policy is None:
        known = ", ".join(sorted(policies)) or "none"
        msg = f"no release policy for destination {destination!r} (TRADEPULSE_RELEASE_POLICIES has: {known})"
        raise StartupError(msg)
    records = asyncio.run(_records(settings, policy, day))
    out.mkdir(parents=True, exist_ok=True)
    stem = f"tradepulse-release-{destination}-{day.isoformat()}"
    files = {out / f"{stem}.json": _json(policy, day, records), out / f"{stem}.csv": _csv(records)}
    for path, body in files.items():
        path.write_bytes(body)
    manifest = "".join(f"{hashlib.sha256(body).hexdigest()}  {path.name}\n" for path, body in files.items())
    (out / f"{stem}.sha256").write_text(manifest)
    return [*files, out / f"{stem}.sha256"]


def _windows(policy: Policy, day: date) -> list[tuple[str, str, datetime, datetime]]:
    """(indicator, window, start, end) of every window of the policy the day's export holds."""
    start = datetime(day.year, day.month, day.day, tzinfo=SHANGHAI)
    end = start + timedelta(days=1)
    month_start = datetime(day.year, day.month, 1, tzinfo=SHANGHAI)
    out: list[tuple[str, str, datetime, datetime]] = []
    for indicator, window in sorted({(c.indicator, c.window) for c in policy.cells}):
        if window == "P1D":
            out.append((indicator, window, start, end))
        elif end.day == 1:  # the month's last day
            out.append((indicator, window, month_start, end))
    return out


async def _records(settings: ReleaseSettings, policy: Policy, day: date) -> list[dict[str, Any]]:
    from services.registry import DOMAINS
    from services.release.policy import releasable

    specs = {name: r.spec for name, r in releasable(DOMAINS).items()}
    dsn = settings.database_url.get_secret_value()
    try:
        conn = await asyncpg.connect(dsn, timeout=settings.startup_timeout_s)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        msg = f"PostgreSQL at {redact_dsn(dsn)} is unreachable ({type(exc).__name__}): check DATABASE_URL"
        raise StartupError(msg) from None
    try:
        reached = (
            await conn.fetchval(
                "SELECT event_time FROM release_progress WHERE destination = $1", policy.destination
            )
            if await conn.fetchval("SELECT to_regclass('release_progress')")
            else None
        )
        windows = _windows(policy, day)
        for indicator, window, _, end in windows:
            final_at = end + timedelta(seconds=specs[indicator].grace_s)
            if reached is None or reached < final_at:
                seen = "nothing yet" if reached is None else reached.astimezone(SHANGHAI).isoformat()
                msg = (
                    f"the windows of {day} for {policy.destination} are not all final: {indicator} {window} "
                    f"is final after {final_at.isoformat()}, and the release has seen event time up to {seen}"
                )
                raise StartupError(msg)
        rows = await conn.fetch(
            "SELECT * FROM release_decision WHERE destination = $1 AND "
            "(indicator, window_size, window_start) IN "
            "(SELECT * FROM unnest($2::text[], $3::text[], $4::timestamptz[])) "
            "ORDER BY cell_key",
            policy.destination,
            [w[0] for w in windows],
            [w[1] for w in windows],
            [w[2].astimezone(UTC) for w in windows],
        )
    finally:
        await conn.close()
    out = []
    for r in rows:
        d, at = audited_decision(r)
        out.append({"key": d.key, **record_of(policy, d, r["unit"], at)["data"]})
    return out


def _json(policy: Policy, day: date, records: list[dict[str, Any]]) -> bytes:
    doc = {
        "destination": policy.destination,
        "date": day.isoformat(),
        "policy": policy.name,
        "policy_version": policy.version,
        "policy_sha256": policy.sha256,
        "cells": records,
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def _csv(records: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        dims = ";".join(f"{k}={v}" for k, v in sorted(r["dimensions"].items()))
        writer.writerow({k: "" if r.get(k) is None else r[k] for k in COLUMNS} | {"dimensions": dims})
    return buffer.getvalue().encode()
