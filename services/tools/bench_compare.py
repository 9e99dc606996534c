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
import functools
import statistics
import subprocess
import uuid
from pathlib import Path
from typing import Any

from services.tools.measure import (
    REPO,
    bench_broker,
    customs_records,
    interleaved,
    prepare_topic,
    rates,
    save,
    timed_worker,
)

__all__ = ["run_compare"]


def _side(repo: Path, target: str, bootstrap: str, records: list[Any], log: Path) -> tuple[float, float]:
    """(events/s, CPU µs per event) of the worker at ``repo`` on ``records``, on a topic prefix of
    its own."""
    prefix = f"cmp{uuid.uuid4().hex[:8]}."
    asyncio.run(prepare_topic(bootstrap, prefix + f"{target}.events.v1", 4, records))
    return timed_worker(target, bootstrap, prefix, len(records), repo=repo, log=log)


def run_compare(*, old: str, target: str, events: int, rounds: int, out: Path) -> dict[str, Any]:
    records = customs_records(events, 7, target)
    with bench_broker("compare") as (bootstrap, kafka, home):
        worktree = home / "old"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), old],
                       check=True, capture_output=True)  # fmt: skip
        try:
            commit = subprocess.run(["git", "-C", str(worktree), "rev-parse", "--short", "HEAD"],
                                    check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
            sides = {"old": worktree, "new": REPO}
            variants = {
                side: functools.partial(_side, repo, target, bootstrap, records, home / f"{side}.log")
                for side, repo in sides.items()
            }
            runs = interleaved(rounds, variants, lambda m: f"{m[0]:,.0f} events/s, {m[1]:.0f} µs CPU/event")
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], check=False
            )
    rate = {side: [r for r, _ in measured] for side, measured in runs.items()}
    median = {side: statistics.median(v) for side, v in rate.items()}
    report = {
        "benchmark": f"compare {target}",
        "old": commit,
        "events": len(records),
        "rounds": rounds,
        **rates(rate),
        "cpu_us_per_event": {
            side: round(statistics.median(us for _, us in m), 1) for side, m in runs.items()
        },
        "new_over_old": round(median["new"] / median["old"], 3),
        "new_over_old_by_round": [round(n / o, 3) for n, o in zip(rate["new"], rate["old"], strict=True)],
    }
    save(out, report, kafka)
    return report
