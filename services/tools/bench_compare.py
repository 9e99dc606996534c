"""``tradepulse bench compare REV``: one service's worker at an older commit against the working
tree, on the same records, in interleaved rounds (JSON result). How a change meant to be faster,
or a rewrite meant to be no slower, is judged: same broker, same records, same hour.

The older commit is checked out with ``git worktree`` into a temporary folder and run from there
(its own code, this environment's packages). Each round feeds each side the same records on a
topic prefix of its own and times from the first record consumed to the last one processed
(``tradepulse_events_processed_total``), and reads the worker's CPU time from /proc.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from services.devstack.kafka import KafkaNode
from services.devstack.process import free_port
from services.tools.bench import _customs_records, _prepare, time_worker

__all__ = ["run_compare"]

REPO = Path(__file__).resolve().parents[2]


def _timed_worker(
    repo: Path, target: str, bootstrap: str, prefix: str, n: int, log: Path
) -> tuple[float, float]:
    """(events/s, CPU µs per event) of ``tradepulse worker target`` from ``repo`` on ``n`` records."""
    port = free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TRADEPULSE_TOPIC_PREFIX": prefix,
           "TRADEPULSE_WEB_PORT": str(port), "TRADEPULSE_LOG_LEVEL": "warning",
           "PYTHONPATH": str(repo)}  # fmt: skip
    command = [sys.executable, "-m", "services.cli", "worker", target]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=out)
    try:
        try:
            timed = time_worker(proc, port, n, timeout_s=900)
        except RuntimeError as exc:
            msg = f"worker at {repo}: {exc}; see {log}"
            raise RuntimeError(msg) from None
        if timed is None:
            msg = f"worker at {repo} did not process {n} records in 900 s; see {log}"
            raise RuntimeError(msg)
        seconds, cpu_s = timed
        return n / seconds, cpu_s / n * 1e6
    finally:
        proc.terminate()
        proc.wait(30)


def run_compare(*, old: str, target: str, events: int, rounds: int, out: Path) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="tradepulse-compare-"))
    worktree = home / "old"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), old],
                   check=True, capture_output=True)  # fmt: skip
    commit = subprocess.run(["git", "-C", str(worktree), "rev-parse", "--short", "HEAD"],
                            check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    node = KafkaNode(home / "kafka", port=free_port(), controller_port=free_port(), heap="1g")
    node.start()
    sides = {"old": worktree, "new": REPO}
    rates: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    try:
        records = _customs_records(events, 7, target)
        for round_no in range(1, rounds + 1):
            for side, repo in sides.items():
                prefix = f"cmp{uuid.uuid4().hex[:8]}."
                asyncio.run(_prepare(node.bootstrap, prefix + f"{target}.events.v1", 4, records))
                rate, us = _timed_worker(
                    repo, target, node.bootstrap, prefix, len(records), home / f"{side}.log"
                )
                rates[side].append(rate)
                cpu[side].append(us)
                print(f"round {round_no}/{rounds} {side} ({commit if side == 'old' else 'working tree'}): "
                      f"{rate:,.0f} events/s, {us:.0f} µs CPU/event", flush=True)  # fmt: skip
    finally:
        node.stop()
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], check=False)
    median = {k: statistics.median(v) for k, v in rates.items()}
    report = {
        "benchmark": f"compare {target}",
        "old": commit,
        "events": len(records),
        "rounds": rounds,
        "events_per_s": {k: round(v, 1) for k, v in median.items()},
        "events_per_s_by_round": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "cpu_us_per_event": {k: round(statistics.median(v), 1) for k, v in cpu.items()},
        "new_over_old": round(median["new"] / median["old"], 3),
        "new_over_old_by_round": [round(n / o, 3) for n, o in zip(rates["new"], rates["old"], strict=True)],
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report
