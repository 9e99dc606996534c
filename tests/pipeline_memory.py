"""The customs pipeline run in memory (no broker): stage one, the links topic, stage two. Used by
unit tests to check the logic against the batch oracle before the integration tests do on Kafka."""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson

from services.common.codec import decode
from services.common.indicators import StageTwo
from services.common.topics import partition_for
from services.customs.lifecycle import INDICATORS
from services.customs.tracker import Tracker
from tests.memory_store import MemoryStore

TOPIC = "customs.events.v1"


def run(events: list[dict[str, Any]], partitions: int = 4) -> dict[str, dict[str, Any]]:
    """Latest indicator record data per key after feeding ``events`` in the given order."""
    store = MemoryStore()
    tracker = Tracker(store=store, partitions=partitions)
    stage_two = StageTwo(store, INDICATORS, "customs")
    seen: set[tuple[str, str]] = set()
    for e in events:
        if (e["source"], e["id"]) in seen:
            continue
        seen.add((e["source"], e["id"]))
        event = decode(orjson.dumps(e), [], topic=TOPIC)
        tracker.on_event(partition_for(event.subject, partitions), event)
        _drain(tracker, stage_two, partitions)
    _drain(tracker, stage_two, partitions)
    out: dict[str, dict[str, Any]] = {}
    for key, value, _ in stage_two.due():
        out[key.decode()] = orjson.loads(value)["data"]
    return out


def _drain(tracker: Tracker, stage_two: StageTwo, partitions: int) -> None:
    tracker.stage(set(range(partitions)))
    tracker.emit_partials()
    queue = deque(tracker.outbox)
    tracker.outbox.clear()
    while queue:
        out = queue.popleft()
        p = out.partition if out.partition is not None else partition_for(out.key.decode(), partitions)
        if out.topic == "links":
            tracker.on_link(p, orjson.loads(out.value))
        else:
            stage_two.on_partials(p, out.value)
        tracker.stage(set(range(partitions)))
        if out.topic == "links":
            tracker.emit_partials()
        queue.extend(tracker.outbox)
        tracker.outbox.clear()
