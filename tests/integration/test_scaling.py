"""Scaling as KEDA drives it (deploy/helm/tradepulse: a ScaledObject per service on its consumer
lag), on the real broker: lag builds on one worker, workers are added one by one up to the input's
partitions, then removed down to one, while events keep arriving. The indicators then equal the
batch oracle (nothing lost, nothing counted twice), each worker is ready only once it owns
partitions whose state is restored, and the time from a worker's start to its first processed
event is reported.

Faust's assignor keeps partitions where they are up to ceil(partitions / workers) each: with 4
partitions a third worker gets none until a fourth joins (it stays unready, "none assigned"), so a
service uses all its pods when their number divides the partitions (docs/deploy.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from services.runtime.settings import Settings
from tests.integration.harness import Headers, WorkerProcess, eventually, produce, worker_env
from tests.integration.test_customs import CUSTOMS

PARTITIONS = int(Settings.model_fields["topic_partitions"].default)


@pytest.fixture
def spawn(kafka_bootstrap: str, prefix: str, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Workers started here without waiting for them to be ready (a KEDA scale-up does not)."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        if worker.running():
            worker.stop()


async def test_workers_added_up_to_the_partitions_and_removed_again_keep_the_indicators_exact(
    kafka_bootstrap: str, prefix: str, tmp_path: Path, spawn: list[WorkerProcess]
) -> None:
    events, records = CUSTOMS.corpus(1600, seed=23)
    steps = 2 * PARTITIONS  # a chunk of the stream before each change of the worker count
    chunks = [records[i::steps] for i in range(steps)]
    env = {**CUSTOMS.fast, "TRADEPULSE_BATCH_MAX_EVENTS": "50"}  # lag builds on the first one
    started_at: dict[int, float] = {}
    first_event_s: dict[int, float] = {}
    sent = 0

    def start() -> WorkerProcess:
        n = len(spawn)
        state = {"TRADEPULSE_STATE_DIR": str(tmp_path / f"state-{n}")}
        worker = WorkerProcess(
            "customs", worker_env(kafka_bootstrap, prefix, **env, **state), tmp_path / f"w{n}.log"
        )
        started_at[n] = time.monotonic()
        spawn.append(worker.start())
        return worker

    def note_first_events() -> None:
        for n, worker in enumerate(spawn):
            if n in first_event_s or not worker.running() or worker.get("/health")[0] != 200:
                continue  # not up yet: its pages answer once the worker has started
            if worker.metric("tradepulse_events_processed_total") > 0:
                first_event_s[n] = time.monotonic() - started_at[n]

    async def send(chunk: Sequence[tuple[bytes | None, bytes | None, Headers]]) -> None:
        nonlocal sent
        await produce(kafka_bootstrap, prefix + CUSTOMS.topic, chunk)
        sent += len(chunk)

    start().wait_ready()
    await send(chunks[0])
    for chunk in chunks[1:PARTITIONS]:  # up: one more worker per chunk, as the lag asks for
        start()
        await send(chunk)
        note_first_events()
        if PARTITIONS % len(spawn) == 0:  # the assignor spreads the partitions evenly: all work

            def all_ready() -> bool:
                note_first_events()
                return all(w.get("/ready")[0] == 200 for w in spawn) is True

            assert await eventually(all_ready, timeout_s=120), [w.get("/ready") for w in spawn]
    assert len(spawn) == PARTITIONS

    def everyone_worked() -> bool:
        note_first_events()
        return len(first_event_s) == PARTITIONS

    await send(chunks[PARTITIONS])  # every worker owns a partition now: each gets some of these
    assert await eventually(everyone_worked, timeout_s=120), first_event_s
    running = list(spawn)
    for chunk in chunks[PARTITIONS + 1 :]:  # down: one worker fewer per chunk, to one
        assert running.pop(0).stop() == 0
        await send(chunk)
    assert len(running) == 1
    assert sent == len(records)
    await CUSTOMS.settle(kafka_bootstrap, prefix)
    assert await CUSTOMS.differences(kafka_bootstrap, prefix, CUSTOMS.oracle(events)) == []
    report = {
        "partitions": PARTITIONS,
        "start_to_first_event_s": {n: round(s, 2) for n, s in first_event_s.items()},
    }
    (tmp_path / "scaling.json").write_text(json.dumps(report))
    print(f"\nscaling: {json.dumps(report)}")
