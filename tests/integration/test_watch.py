"""The SLA watch on the real broker (docs/contract.md section 9): refunds that stall at each stage
across a weekend and National Day, and a CIPS payment at 50 and 60 minutes, flagged on the right
day by the clock; a corpus cut short gives the oracle's flags (tests/batch_watch.py) through a
kill -9 and a rebalance, with no record lost and none but exact copies repeated; replaying the same
records under another prefix gives the same topic; ``GET /watch`` pages through the flagged cases."""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict
from typing import Any

from services.contract.topics import partition_for
from services.runtime.settings import Settings
from services.tools.simulate import Faults, perturb
from tests.batch_watch import flags as oracle
from tests.integration.harness import Client, StartWorker, eventually, new_prefix, produce, read_to_end
from tests.integration.test_domains import CIPS
from tests.unit.test_watch import _payment_events, _refund_events, _t

PARTITIONS = int(Settings.model_fields["topic_partitions"].default)
# keyed by subject (each case's events on its partition, so the oracle knows each partition's clock)
FAULTS = Faults(duplicates=0.05, shuffle=0.1, late=0.05, invalid=0.0, binary=0.5, rekey=0.0)


def _env(service: str) -> dict[str, str]:
    """Fast timers, and an idle clock that never runs past the watermark: the oracle's clock."""
    p = f"TRADEPULSE_{service.upper()}_"
    return {f"{p}WATCH_INTERVAL_S": "0.3", f"{p}WATCH_IDLE_MAX_S": "0", f"{p}IDLE_AFTER_S": "2",
            "TRADEPULSE_BATCH_MAX_EVENTS": "200"}  # fmt: skip


async def _log(bootstrap: Client, prefix: str, service: str) -> list[tuple[str, dict[str, Any] | None]]:
    """The watch topic's records in partition order: (key, CloudEvent or None for a tombstone)."""
    try:
        records = await read_to_end(bootstrap, f"{prefix}watch.{service}.v1", timeout_s=20)
    except AssertionError:
        return []
    return [(r.key.decode(), json.loads(r.value) if r.value is not None else None) for r in records]


def _view(log: list[tuple[str, dict[str, Any] | None]]) -> dict[str, tuple[str, str, float]]:
    out: dict[str, tuple[str, str, float]] = {}
    for key, event in log:
        if event is None:
            out.pop(key, None)
        else:
            d = event["data"]
            out[key] = (d["rule"], d["state"], _t(d["since"]))
    return out


async def _wait_view(
    bootstrap: Client, prefix: str, service: str, want: Any, timeout_s: float = 60
) -> dict[str, Any]:
    """Poll the watch topic until ``want(view)`` holds; the view."""
    view: dict[str, Any] = {}
    for _ in range(int(timeout_s / 0.5)):
        view = _view(await _log(bootstrap, prefix, service))
        if want(view):
            return view
        await asyncio.sleep(0.5)
    msg = f"the watch topic never got there: {view}"
    raise AssertionError(msg)


def _records(events: list[dict[str, Any]]) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    ct = [("content-type", b"application/cloudevents+json")]
    return [(e["subject"].encode(), json.dumps(e).encode(), ct) for e in events]


def _on_every_partition(make: Any) -> list[dict[str, Any]]:
    """Events of cases named ``make(i)`` for i = 0, 1, ... until every partition has one: each
    partition's clock is its own."""
    out: list[dict[str, Any]] = []
    covered: set[int] = set()
    i = 0
    while len(covered) < PARTITIONS:
        events = make(i)
        p = partition_for(events[0]["subject"], PARTITIONS)
        if p not in covered:
            covered.add(p)
            out += events
        i += 1
    return out


def _day(text: str) -> float:
    return _t(f"{text}T00:00:00+08:00")


async def test_stalled_refunds_are_flagged_on_the_right_working_day_and_cleared(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    """Declared or accepted before National Day 2025 (1-8 Oct holidays; Sun 28 Sep and Sat 11 Oct
    working days); one event a day moves the clock."""
    start_worker("taxrefund", **_env("taxrefund"))
    topic = prefix + "taxrefund.events.v1"
    stalled = [
        *_refund_events("R-accept", 3, declared="2025-09-26T15:00:00+08:00"),
        *_refund_events(
            "R-issue12", 2, declared="2025-09-25T09:00:00+08:00", accepted="2025-09-30T10:00:00+08:00"
        ),
        *_refund_events(
            "R-issue", 4, declared="2025-09-25T09:00:00+08:00", accepted="2025-09-29T10:00:00+08:00"
        ),
    ]
    await produce(kafka_bootstrap, topic, _records(stalled))
    steps = [
        ("2025-09-28", "R-accept", ("refund_acceptance", "warning", _day("2025-09-28"))),  # a Sunday
        ("2025-09-30", "R-accept", ("refund_acceptance", "breached", _day("2025-09-30"))),
        ("2025-10-10", "R-issue12", ("refund_issue_categories_1_2", "warning", _day("2025-10-10"))),
        ("2025-10-11", "R-issue", ("refund_issue", "warning", _day("2025-10-11"))),  # a Saturday
        ("2025-10-13", "R-issue12", ("refund_issue_categories_1_2", "breached", _day("2025-10-13"))),
        ("2025-10-14", "R-issue", ("refund_issue", "breached", _day("2025-10-14"))),
    ]
    for day, case, flag in steps:
        at = f"{day}T01:00:00+08:00"  # clock: 00:00 (out-of-orderness 1 h)
        clock = _on_every_partition(
            lambda i, d=day, at=at: _refund_events(
                f"clock-{d}-{i}", 3, declared=at, accepted=at, issued=at, credited=at
            )
        )
        await produce(kafka_bootstrap, topic, _records(clock))
        await _wait_view(kafka_bootstrap, prefix, "taxrefund", lambda v, c=case, f=flag: v.get(c) == f)
    # National Day moved nothing between 30 Sep and 10 Oct: R-issue12 was never in warning before
    log = await _log(kafka_bootstrap, prefix, "taxrefund")
    first_warning = next(e for k, e in log if k == "R-issue12" and e and e["data"]["state"] == "warning")
    assert first_warning["data"]["since"].startswith("2025-10-10T00:00:00")
    done = _refund_events(
        "R-issue12", 2, issued="2025-10-14T11:00:00+08:00", credited="2025-10-14T11:30:00+08:00"
    )
    await produce(kafka_bootstrap, topic, _records(done))
    cleared = ("refund_issue_categories_1_2", "cleared", _t("2025-10-14T11:00:00+08:00"))
    await _wait_view(kafka_bootstrap, prefix, "taxrefund", lambda v: v.get("R-issue12") == cleared)


async def test_a_payment_is_flagged_at_50_and_60_minutes_and_paged_by_get_watch(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    worker = start_worker("cips", **_env("cips"))
    topic = prefix + "cips.events.v1"
    stalled = [
        e for i in range(5) for e in _payment_events(f"W{i}", initiated=f"2025-03-03T10:0{i}:00+08:00")
    ]

    def clock(at: str) -> list[dict[str, Any]]:
        return _on_every_partition(lambda i: _payment_events(f"clock-{at}-{i}", initiated=at, credited=at))

    await produce(kafka_bootstrap, topic, _records(stalled + clock("2025-03-03T11:05:00+08:00")))  # 10:55
    await _wait_view(
        kafka_bootstrap, prefix, "cips", lambda v: sum(s == "warning" for _, s, _ in v.values()) == 5
    )
    await produce(kafka_bootstrap, topic, _records(clock("2025-03-03T11:12:00+08:00")))  # clock 11:02
    view = await _wait_view(
        kafka_bootstrap, prefix, "cips", lambda v: sum(s == "breached" for _, s, _ in v.values()) == 3
    )
    assert sorted(since for _, s, since in view.values() if s == "breached") == [
        _t(f"2025-03-03T11:0{i}:00+08:00") for i in range(3)
    ]
    # the page: oldest start first, two at a time
    seen: list[str] = []
    after = ""
    for _ in range(5):
        status, body = worker.get(f"/watch?rule=credit_within_1h&limit=2{'&after=' + after if after else ''}")
        assert status == 200, body
        page = json.loads(body)
        seen += [c["started"] for c in page["cases"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert seen == sorted(seen)
    assert len(seen) == 5
    status, body = worker.get("/watch?state=breached")
    assert status == 200
    assert len(json.loads(body)["cases"]) == 3
    assert worker.get("/watch?rule=nope")[0] == 404
    assert worker.get("/watch?limit=0")[0] == 400
    assert worker.metric("tradepulse_watch_cases", service="cips", rule="credit_within_1h", state="breached",
                         group="customer") == 3  # fmt: skip
    # clock 11:02, the oldest started 10:00 (read from the index the tick after the flags were staged)
    rule = "credit_within_1h"
    name = "tradepulse_watch_oldest_age_seconds"
    worker.wait_metric(name, 62 * 60, service="cips", rule=rule, state="breached")


def _expected(events: list[dict[str, Any]], service: str, ooo_s: float) -> dict[str, tuple[str, str, float]]:
    by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_partition[partition_for(e["subject"], PARTITIONS)].append(e)
    out: dict[str, tuple[str, str, float]] = {}
    for mine in by_partition.values():
        clock = max(_t(e["time"]) for e in mine) - ooo_s
        out.update(oracle(service, mine, clock))
    return out


async def test_a_corpus_cut_short_gives_the_oracle_s_flags_through_kill_and_rebalance_and_on_replay(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker
) -> None:
    everything = CIPS.simulate(cases=3000, seed=41, start_s=CIPS.start_s, span_s=86400)
    events = [e for e in everything if _t(e["time"]) <= CIPS.start_s + 15.5 * 3600]
    records = perturb(events, FAULTS, random.Random(41))
    expected = _expected(events, "cips", 600.0)
    assert {s for _, s, _ in expected.values()} == {"warning", "breached", "cleared"}
    slow = {**_env("cips"), "TRADEPULSE_BATCH_MAX_EVENTS": "50"}
    first = start_worker("cips", **slow)
    await produce(kafka_bootstrap, prefix + CIPS.topic, records)
    assert await eventually(lambda: CIPS.consumed([first]) >= len(records) // 3, timeout_s=60)
    seen = CIPS.consumed([first])
    first.kill()  # kill -9 mid-stream
    assert seen < len(records), "the first worker finished before it was killed"
    second = start_worker("cips", **slow)
    third = start_worker("cips", **slow)  # a rebalance: the partitions are shared
    assert await eventually(lambda: CIPS.consumed([second, third]) >= len(records) // 2, timeout_s=60)
    assert third.stop() == 0  # and back to one
    await CIPS.settle(kafka_bootstrap, prefix)
    view = await _wait_view(kafka_bootstrap, prefix, "cips", lambda v: v == expected, timeout_s=60)
    assert view == expected
    log = await _log(kafka_bootstrap, prefix, "cips")
    contents: dict[str, set[str]] = defaultdict(set)
    for _, event in log:
        if event is not None:
            contents[event["id"]].add(json.dumps(event["data"], sort_keys=True))
    assert all(len(c) == 1 for c in contents.values()), "a record id with two contents"

    again = new_prefix()  # the same records replayed, through one worker that is never stopped
    start_worker("cips", **_env("cips"), TRADEPULSE_TOPIC_PREFIX=again)
    await produce(kafka_bootstrap, again + CIPS.topic, records)
    replayed = await _wait_view(kafka_bootstrap, again, "cips", lambda v: v == expected, timeout_s=90)
    assert replayed == view
