"""State at scale on the real broker: a worker killed between any two steps of the commit (outputs,
state topic, local copy, offsets) loses nothing and counts nothing twice, whether it comes back
with its local copy or without it; a restart with the local copy restores only the topic's tail;
readiness waits for the restore."""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.devstack.process import free_port
from services.runtime.store import PERSIST_EVERY_S
from tests.integration.harness import (
    REPO,
    StartWorker,
    WorkerProcess,
    eventually,
    produce,
    read_to_end,
    worker_env,
)
from tests.integration.test_customs import CUSTOMS


def _restores(worker: WorkerProcess) -> list[dict[str, Any]]:
    """The worker's 'state restored' log lines."""
    lines = [json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("msg") == "state restored"]


async def _crashed(
    bootstrap: str, prefix: str, folder: Path, log: Path, env: dict[str, str]
) -> WorkerProcess:
    """A worker that kills itself at a step of the commit (``TRADEPULSE_CRASH_AT``): started, not
    waited for (it may die before it looks ready), and returned once dead."""
    env = {**env, "TRADEPULSE_STATE_DIR": str(folder)}
    worker = WorkerProcess(CUSTOMS.service, worker_env(bootstrap, prefix, **env), log).start()
    assert await eventually(lambda: not worker.running(), timeout_s=120), f"not killed: {env}"
    assert worker.proc is not None
    assert worker.proc.returncode == 137, worker.log.read_text()[-2000:]
    return worker


@pytest.mark.parametrize("step", ["outputs", "state", "local"])
async def test_a_kill_at_each_step_of_the_commit_loses_nothing_and_counts_nothing_twice(
    step: str, kafka_bootstrap: str, prefix: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    """Killed at the step (the way kill -9 would: os._exit at that point of a flush) twice: back
    with its local copy the first time, without it the second; the third worker finishes."""
    events, records = CUSTOMS.corpus(300, seed=21)
    env = {**CUSTOMS.fast, "TRADEPULSE_BATCH_MAX_EVENTS": "100"}
    assert start_worker(CUSTOMS.service, **env).stop() == 0  # its topics exist, its folder too
    await produce(kafka_bootstrap, prefix + CUSTOMS.topic, records)
    folder = tmp_path / f"state-{CUSTOMS.service}-0"  # the folder start_worker gives the next one
    crash = {**env, "TRADEPULSE_CRASH_AT": f"{step}:3"}
    await _crashed(kafka_bootstrap, prefix, folder, tmp_path / "first.log", crash)
    second = await _crashed(kafka_bootstrap, prefix, folder, tmp_path / "second.log", crash)
    assert any(r["local"] for r in _restores(second)), "the local copy was not used"
    shutil.rmtree(folder)
    third = start_worker(CUSTOMS.service, **env)
    (restored,) = _restores(third)
    assert restored["rebuilt"] == {"no local copy": [0, 1, 2, 3]}
    await CUSTOMS.settle(kafka_bootstrap, prefix)
    assert await CUSTOMS.differences(kafka_bootstrap, prefix, CUSTOMS.oracle(events)) == []


async def test_a_restart_with_the_local_copy_reads_only_the_tail_and_is_ready_after_it(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    events, records = CUSTOMS.corpus(300, seed=22)
    half = len(records) // 2
    first = start_worker(CUSTOMS.service, **CUSTOMS.fast)
    await produce(kafka_bootstrap, prefix + CUSTOMS.topic, records[:half])
    assert await eventually(lambda: CUSTOMS.consumed([first]) >= half, timeout_s=60)
    await CUSTOMS.settle(kafka_bootstrap, prefix)
    await asyncio.sleep(PERSIST_EVERY_S)  # the local copies wrote their memtables to disk since
    first.kill()
    state = await read_to_end(kafka_bootstrap, f"{prefix}tradepulse-{CUSTOMS.service}-state")
    again = start_worker(CUSTOMS.service, **CUSTOMS.fast)  # ready: every partition restored
    (restored,) = _restores(again)
    assert (restored["local"], restored["rebuilt"]) == ([0, 1, 2, 3], {})
    assert restored["records"] < len(state) / 10, restored  # the tail, not the whole topic
    status, body = again.get("/ready")
    assert status == 200
    assert json.loads(body)["restoring"] == {}
    await produce(kafka_bootstrap, prefix + CUSTOMS.topic, records[half:])
    await CUSTOMS.settle(kafka_bootstrap, prefix)
    assert await CUSTOMS.differences(kafka_bootstrap, prefix, CUSTOMS.oracle(events)) == []


def test_a_worker_with_a_large_state_restarts_on_a_loaded_machine_with_one_restore_per_start(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    """A customs worker restarted in a full stack on a loaded machine restored 9 times in a row
    (the restore held the event loop: heartbeats failed, 'member_id was not recognized') and
    settled after 7 minutes. Now restores run beside the rebalance, a few thousand records at a
    time: with a CPU burner beside it, each start of a worker over 200,000 state records restores
    once and is ready, with local copy or without."""
    from services.tools.bench_state import fill_state

    first = start_worker("cbec")
    assert first.stop() == 0  # its topics exist
    records = asyncio.run(fill_state(kafka_bootstrap, prefix, orders=100_000))
    assert records > 200_000
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        rebuilt = start_worker("cbec", TRADEPULSE_STATE_DIR=str(tmp_path / "big"))
        assert [r["records"] for r in _restores(rebuilt)] == [records]
        rebuilt.kill()
        again = start_worker("cbec", TRADEPULSE_STATE_DIR=str(tmp_path / "big"))
        (restored,) = _restores(again)  # start_worker waited until it was ready
        assert restored["local"] == [0, 1, 2, 3]
        said = again.log.read_text()
        assert "member_id" not in said  # no heartbeat lost, no rejoin
        assert said.count('"state restored"') == 1
    finally:
        burner.kill()
        burner.wait()


def _with_file_size_limit(env: dict[str, str], log: Path, *, limit_bytes: int) -> subprocess.Popen[bytes]:
    """A customs worker whose files may not grow past ``limit_bytes`` (RLIMIT_FSIZE)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", "worker", CUSTOMS.service],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes)),
        )  # fmt: skip


async def test_a_full_disk_stops_the_worker_with_one_line_and_loses_nothing(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    """The local copy cannot grow past a file-size limit (what a full volume does to RocksDB's
    writes): the worker names TRADEPULSE_STATE_DIR and stops; restarted with room, it reads what
    it had not copied from the state topic, and the records equal the batch computation."""
    events, records = CUSTOMS.corpus(500, seed=23)
    assert start_worker(CUSTOMS.service, **CUSTOMS.fast).stop() == 0  # its topics exist
    folder = tmp_path / f"state-{CUSTOMS.service}-0"
    env = {**worker_env(kafka_bootstrap, prefix, **CUSTOMS.fast), "TRADEPULSE_STATE_DIR": str(folder),
           "TRADEPULSE_WEB_PORT": str(free_port())}  # fmt: skip
    log = tmp_path / "full.log"
    full = _with_file_size_limit(env, log, limit_bytes=64 * 1024)
    try:
        await produce(kafka_bootstrap, prefix + CUSTOMS.topic, records)
        assert await eventually(lambda: full.poll() is not None, timeout_s=90), "the worker did not stop"
    finally:
        if full.poll() is None:
            full.kill()
        full.wait()
    assert full.returncode == 3
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    (critical,) = [line for line in lines if line["level"] == "critical"]
    assert "TRADEPULSE_STATE_DIR" in critical["msg"]
    assert "Traceback" not in log.read_text()
    start_worker(CUSTOMS.service, **CUSTOMS.fast)
    await CUSTOMS.settle(kafka_bootstrap, prefix)
    assert await CUSTOMS.differences(kafka_bootstrap, prefix, CUSTOMS.oracle(events)) == []
