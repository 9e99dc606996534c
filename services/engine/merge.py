"""Stage two: merge the partitions' partial aggregates into indicator records.

Every partials interval (0.25 s by default) every input partition sends each stage-two partition
one bundle: its watermark and, for each window key of that stage-two partition it touched, its
*whole* current aggregate. A key's partial from a partition replaces that partition's previous one (so
redelivery never double counts), the merge of all partitions' partials is the indicator, and a
record is published when the merge changed (at most once per interval) or the window became
final. Final: the slowest active partition's watermark passed the window's end plus the
indicator's grace. A partition whose watermark has not moved for ``idle_after_s`` of wall-clock
time stops holding the others back (it has nothing new), as Flink treats idle sources.

Keys are routed to stage-two partitions by series (indicator, window size, dimensions), so every
window of a series lives on one worker, which can then tell which one is the latest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from services.contract.records import IndicatorWindow
from services.contract.topics import partition_for
from services.engine.aggregations import Aggregation, aggregation_of
from services.engine.state import StateStore
from services.engine.windows import SHANGHAI, WINDOWS, IndicatorSpec, WindowKey

__all__ = ["Merged", "Merger", "Published", "StageTwo", "stage_two_partition"]

PART, REV, WM = "part", "rev", "wm"  # a source's partial of a key; a key's revision; a watermark
_DAY = WINDOWS["P1D"]


def stage_two_partition(key: WindowKey, partitions: int) -> int:
    """The stage-two partition of a key: that of its series."""
    indicator, window, dims = key.series
    return partition_for(f"{indicator}|{window}|{','.join(f'{k}={v}' for k, v in dims)}", partitions)


@dataclass(slots=True)
class Merged:
    """What one stage-two partition knows of one window key."""

    sources: dict[int, Aggregation] = field(default_factory=dict)
    revision: int = 0
    final: bool = False


@dataclass(frozen=True, slots=True)
class Published:
    """One indicator record to publish."""

    partition: int
    key: WindowKey
    record: IndicatorWindow


@dataclass(slots=True)
class Merger:
    """The window keys of one stage-two partition."""

    specs: Mapping[str, IndicatorSpec]
    idle_after_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    keys: dict[WindowKey, Merged] = field(default_factory=dict)
    watermarks: dict[int, float] = field(default_factory=dict)
    _moved_at: dict[int, float] = field(default_factory=dict)
    pending: set[WindowKey] = field(default_factory=set)

    def partial(self, key: WindowKey, source: int, agg: Aggregation) -> None:
        """Replace ``source``'s partial for ``key``."""
        merged = self.keys.get(key)
        if merged is None:
            merged = self.keys[key] = Merged()
        merged.sources[source] = agg
        self.pending.add(key)

    def withdraw(self, source: int, keep: set[str], horizon_s: float) -> list[WindowKey]:
        """A *whole* handover from ``source``: forget its partials of every key it no longer holds
        (not in ``keep``) whose window it would still keep (not past ``horizon_s``, its watermark
        less the retention: older ones it dropped itself, and their records are final). Returns the
        keys withdrawn; they are published again. Reads every key of this partition: once per
        assignment of a source, never per event."""
        gone = [
            key
            for key, merged in self.keys.items()
            if source in merged.sources and key.text not in keep and key.end_s + _DAY >= horizon_s
        ]
        for key in gone:
            del self.keys[key].sources[source]
            self.pending.add(key)
        return gone

    def watermark(self, source: int, watermark_s: float) -> bool:
        """Record a source's watermark; True if it moved."""
        if watermark_s > self.watermarks.get(source, float("-inf")):
            self.watermarks[source] = watermark_s
            self._moved_at[source] = self.clock()
            return True
        return False

    def global_watermark(self) -> float:
        """The slowest non-idle source's watermark (all idle: the fastest one's)."""
        if not self.watermarks:
            return float("-inf")
        now = self.clock()
        active = [
            w for s, w in self.watermarks.items() if now - self._moved_at.get(s, now) < self.idle_after_s
        ]
        return min(active) if active else max(self.watermarks.values())

    def due(self) -> list[tuple[WindowKey, Merged]]:
        """Keys to publish now: changed since last time, or just became final. Bumps revisions."""
        wm = self.global_watermark()
        out = []
        for key, merged in self.keys.items():
            became_final = not merged.final and key.end_s + self.specs[key.indicator].grace_s <= wm
            if key in self.pending or became_final:
                merged.final = merged.final or became_final
                merged.revision += 1
                out.append((key, merged))
        self.pending = set()
        return out

    def expire(self, retention_s: float) -> list[tuple[WindowKey, Merged]]:
        """Forget keys whose window left the retention (behind the slowest active partition's
        watermark, as stage one forgets their aggregates): their records are final and stay on the
        compacted topic; nothing can change them any more (stage one refuses such events)."""
        horizon = self.global_watermark() - retention_s
        gone = [(key, merged) for key, merged in self.keys.items() if key.end_s + _DAY < horizon]
        for key, _ in gone:
            del self.keys[key]
            self.pending.discard(key)
        return gone

    def record(self, key: WindowKey, merged: Merged) -> IndicatorWindow:
        """The contract's indicator record for one key."""
        spec = self.specs[key.indicator]
        total = aggregation_of(spec.kind)
        for agg in merged.sources.values():
            total.merge(agg)
        return IndicatorWindow.model_validate(
            {
                "indicator": key.indicator,
                "window": key.window,
                "window_start": datetime.fromtimestamp(key.start, SHANGHAI),
                "window_end": datetime.fromtimestamp(key.end_s, SHANGHAI),
                "dimensions": dict(key.dims),
                "unit": spec.unit,
                "count": total.count,
                **total.fields(),
                "revision": merged.revision,
                "final": merged.final,
                "late_events": total.late,
            },
            strict=False,
        )


@dataclass(slots=True)
class StageTwo:
    """The mergers of the stage-two partitions this worker owns, persisted in the state store."""

    store: StateStore
    specs: Mapping[str, IndicatorSpec]
    idle_after_s: float = 60.0
    retention_s: float = float("inf")
    mergers: dict[int, Merger] = field(default_factory=dict)

    def merger(self, p: int) -> Merger:
        m = self.mergers.get(p)
        if m is None:
            for _ in self.loading(p):
                pass
            m = self.mergers[p]
        return m

    def loading(self, p: int) -> Generator[None, None, None]:
        """Load a partition's merger from the store, yielding every few thousand values (a caller
        lets its event loop turn meanwhile)."""
        if p in self.mergers:
            return
        m = Merger(self.specs, self.idle_after_s)
        for i, (name, raw) in enumerate(self.store.items(p, PART), 1):
            src, text = name.split("|", 1)
            key = WindowKey.parse(text)
            kind = self.specs[key.indicator].kind
            m.keys.setdefault(key, Merged()).sources[int(src)] = aggregation_of(kind, orjson.loads(raw))
            if i % 2000 == 0:
                yield
        for text, raw in self.store.items(p, REV):
            revision, final = raw.decode().split(",")
            merged = m.keys.setdefault(WindowKey.parse(text), Merged())
            merged.revision, merged.final = int(revision), final == "1"
        for src, raw in self.store.items(p, WM):
            m.watermark(int(src), float(raw))
        self.mergers.setdefault(p, m)

    def forget(self, partitions: set[int]) -> None:
        for p in partitions:
            self.mergers.pop(p, None)

    def expire(self) -> int:
        """Housekeeping: drop the keys, partials and revisions of windows past the retention, so
        stage two's state stays bounded like stage one's. Returns how many keys went."""
        dropped = 0
        for p, m in self.mergers.items():
            for key, merged in m.expire(self.retention_s):
                text = key.text
                for src in merged.sources:
                    self.store.delete(p, PART, f"{src}|{text}")
                self.store.delete(p, REV, text)
                dropped += 1
        return dropped

    def on_partials(self, p: int, value: bytes) -> None:
        """A bundle from one stage-one partition: its watermark and changed aggregates, or (``whole``,
        once after the partition's state was loaded) every aggregate it holds of this partition's
        keys: the partials it lacks are withdrawn."""
        msg: dict[str, Any] = orjson.loads(value)
        m = self.merger(p)
        src = int(msg["src"])
        wm = msg.get("wm")
        if wm is not None and m.watermark(src, float(wm)):
            self.store.put(p, WM, str(src), repr(float(wm)).encode())
        aggs: dict[str, Any] = msg.get("aggs", {})
        if msg.get("whole"):
            horizon = float(wm) - self.retention_s if wm is not None else float("-inf")
            for key in m.withdraw(src, set(aggs), horizon):
                self.store.delete(p, PART, f"{src}|{key.text}")
        for text, doc in aggs.items():
            key = WindowKey.parse(text)
            m.partial(key, src, aggregation_of(self.specs[key.indicator].kind, doc))
            self.store.put(p, PART, f"{src}|{text}", orjson.dumps(doc))

    def due(self) -> list[Published]:
        """Every indicator record to publish now (revisions stored)."""
        out = []
        for p, m in self.mergers.items():
            for key, merged in m.due():
                self.store.put(p, REV, key.text, f"{merged.revision},{int(merged.final)}".encode())
                out.append(Published(p, key, m.record(key, merged)))
        return out
