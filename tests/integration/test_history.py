"""PostgreSQL history: every indicator key's latest revision and every completed case land in the
tables exactly once, even when PostgreSQL is stopped in the middle of the run and started again."""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from services.customs.simulator import simulate
from services.devstack.postgres import PostgresCluster
from services.devstack.probe import web_get
from services.devstack.process import free_port, tail
from services.runtime.db import MIGRATIONS
from services.tools.simulate import Faults, perturb
from tests.integration.harness import (
    StartWorker,
    caught_up,
    eventually,
    latest,
    metric,
    produce,
    start_history,
    worker_env,
)
from tests.integration.test_customs import CUSTOMS, TOPIC

START = datetime.fromisoformat("2025-03-01T00:00:00+08:00").timestamp()


def _finished(events: list[dict[str, Any]]) -> set[str]:
    seen: dict[str, set[str]] = {}
    for e in events:
        if "entry_id" in e["data"]:
            seen.setdefault(e["data"]["entry_id"], set()).add(e["type"].rsplit(".", 1)[1])
    return {k for k, v in seen.items() if "rejected" in v or {"released", "exited"} <= v}


@pytest.fixture
def private_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of this test's own, so the test can stop and start it."""
    home = Path(tempfile.mkdtemp(prefix="tradepulse-pg-outage-"))
    home.chmod(0o755)
    cluster = PostgresCluster(home, port=free_port())
    cluster.start()
    yield cluster
    cluster.stop()
    shutil.rmtree(home, ignore_errors=True)


async def test_history_survives_a_postgresql_outage(
    kafka_bootstrap: str,
    prefix: str,
    start_worker: StartWorker,
    tmp_path: Path,
    private_postgres: PostgresCluster,
) -> None:
    """... and shows it: /ready names PostgreSQL unreachable and the failed writes are counted
    while it is away; afterwards /ready is 200 and the rows written are counted."""
    cluster, port = private_postgres, free_port()
    env = worker_env(kafka_bootstrap, prefix, DATABASE_URL=cluster.url, TRADEPULSE_WEB_PORT=str(port))
    log = tmp_path / "history.log"
    history = start_history(env, log)
    try:
        start_worker("customs", **CUSTOMS.fast)
        events = simulate(cases=200, seed=41, start_s=START, span_s=86400)
        records = perturb(events, Faults(duplicates=0.05, shuffle=0.05), random.Random(41))
        half = len(records) // 2
        await produce(kafka_bootstrap, prefix + TOPIC, records[:half])

        # ready once PostgreSQL is connected and its partitions are assigned (the indicator topics
        # appear when the worker creates them; history's pattern subscription finds them then)
        def checks() -> tuple[int, dict[str, Any]]:
            status, body = web_get(port, "/ready")
            return status, orjson.loads(body)["checks"] if body else {}

        ready = (200, {"postgresql": "ok", "kafka": "ok"})
        assert await eventually(lambda: checks() == ready, timeout_s=60), tail(log, 20)
        assert await eventually(lambda: metric(port, "tradepulse_history_rows_total") > 0, timeout_s=60)
        cluster.stop()  # the outage
        await produce(kafka_bootstrap, prefix + TOPIC, records[half:])
        failing = (503, {"postgresql": "unreachable", "kafka": "ok"})
        assert await eventually(lambda: checks() == failing, timeout_s=60), tail(log, 20)
        assert await eventually(
            lambda: metric(port, "tradepulse_history_write_failures_total") > 0, timeout_s=60
        )
        assert history.poll() is None, "history must keep retrying, not exit"
        cluster.start()
        internal = [f"{prefix}tradepulse-customs-{n}" for n in ("links", "partials")]
        await caught_up(kafka_bootstrap, f"{prefix}tradepulse-customs", [prefix + TOPIC, *internal])
        sources = [prefix + "indicators.customs.v1", prefix + "cases.customs.v1"]
        conn = await asyncpg.connect(cluster.url)
        try:
            # the worker publishes on a timer after its inputs are committed: read the topic, let
            # history catch up with it, and compare, until a last revision no longer follows
            for _ in range(20):
                want = await latest(kafka_bootstrap, prefix + "indicators.customs.v1")
                await caught_up(kafka_bootstrap, f"{prefix}tradepulse-history", sources)
                rows = await conn.fetch("SELECT key, revision, count, data FROM indicator_window")
                got = {r["key"]: (r["revision"], r["count"]) for r in rows}
                if got == {k: (d["revision"], d["count"]) for k, d in want.items()}:
                    break
            cases = await conn.fetchval("SELECT count(*) FROM completed_case WHERE service = 'customs'")
            every = await conn.fetchval("SELECT count(*) FROM case_state WHERE service = 'customs'")
            migrations = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        finally:
            await conn.close()
        assert got == {k: (d["revision"], d["count"]) for k, d in want.items()}
        assert all(orjson.loads(r["data"])["revision"] == r["revision"] for r in rows)
        assert cases == len(_finished(events))
        assert every == len({e["data"]["entry_id"] for e in events if "entry_id" in e["data"]})
        assert migrations == len(list(MIGRATIONS.glob("*.sql")))  # each applied once
        assert web_get(port, "/ready")[0] == 200
        assert metric(port, "tradepulse_history_rows_total", table="indicator_window") >= len(rows)
        assert metric(port, "tradepulse_history_rows_total", table="case_state") >= every
        assert metric(port, "tradepulse_history_last_write_timestamp_seconds") > START

        def lag() -> float:
            return metric(port, "tradepulse_consumer_lag_records", topic="indicators.customs.v1")

        assert await eventually(lambda: lag() == 0, timeout_s=15), lag()  # reported every 5 s
    finally:
        history.terminate()
        history.wait(timeout=30)
