"""The customs pipeline run in memory (no broker): stage one, the links topic, stage two. Used by
unit tests to check the logic against the batch oracle before the integration tests do on Kafka."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from services.common.codec import decode
from services.common.indicators import StageTwo
from services.common.topics import partition_for
from services.common.windows import IndicatorSpec
from services.customs.lifecycle import INDICATORS
from services.customs.tracker import Tracker
from tests.memory_store import MemoryStore

TOPIC = "customs.events.v1"


def run(
    events: list[dict[str, Any]],
    partitions: int = 4,
    *,
    service: str = "customs",
    tracker: Callable[..., Any] = Tracker,
    indicators: Mapping[str, IndicatorSpec] = INDICATORS,
) -> dict[str, dict[str, Any]]:
    """Latest indicator record data per key after feeding ``events`` in the given order."""
    topic = f"{service}.events.v1"
    store = MemoryStore()
    cases = tracker(store=store, partitions=partitions)
    stage_two = StageTwo(store, indicators, service)
    seen: set[tuple[str, str]] = set()
    for e in events:
        if (e["source"], e["id"]) in seen:
            continue
        seen.add((e["source"], e["id"]))
        event = decode(orjson.dumps(e), [], topic=topic)
        cases.on_event(partition_for(event.subject, partitions), event)
        _drain(cases, stage_two, partitions)
    _drain(cases, stage_two, partitions)
    out: dict[str, dict[str, Any]] = {}
    for key, value, _ in stage_two.due():
        out[key.decode()] = orjson.loads(value)["data"]
    return out


def _drain(cases: Any, stage_two: StageTwo, partitions: int) -> None:
    cases.stage(set(range(partitions)))
    cases.emit_partials()
    queue = deque(cases.outbox)
    cases.outbox.clear()
    while queue:
        out = queue.popleft()
        p = out.partition if out.partition is not None else partition_for(out.key.decode(), partitions)
        if out.topic == "links":
            cases.on_link(p, orjson.loads(out.value))
        elif out.topic == "partials":
            stage_two.on_partials(p, out.value)
        cases.stage(set(range(partitions)))
        if out.topic == "links":
            cases.emit_partials()
        queue.extend(cases.outbox)
        cases.outbox.clear()
