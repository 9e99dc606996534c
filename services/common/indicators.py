"""Stage two of the indicator engine: merge partition partials into indicator records.

Every input partition publishes, about once a second, to every stage-two partition one bundle: its
watermark and, for each indicator key of that partition it touched, its *whole* current partial
aggregate. Here a key's partial from a partition replaces that partition's
previous one (so redelivery never double counts), the merge of all partitions' partials is the
indicator, and a record is published when the merge changed (at most once per interval) or the
window became final. Final: the slowest active partition's watermark passed the window's end plus
the indicator's grace. A partition whose watermark has not moved for ``idle_after_s`` of wall-clock
time stops holding the others back (it has nothing new), as Flink treats idle sources.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from services.common.events import INDICATOR_TYPE, IndicatorWindow
from services.common.state import StateStore
from services.common.windows import WINDOWS, Agg, IndicatorSpec

__all__ = ["Merged", "Merger", "StageTwo"]

PART, REV, WM = "part", "rev", "wm"  # a source's partial of a key; a key's revision; a watermark


@dataclass(slots=True)
class Merged:
    """What one stage-two partition knows of one indicator key."""

    sources: dict[int, Agg] = field(default_factory=dict)
    revision: int = 0
    final: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "s": {str(p): a.to_json() for p, a in self.sources.items()},
            "r": self.revision,
            "f": self.final,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Merged:
        sources = {int(p): Agg.from_json(a) for p, a in doc["s"].items()}
        return cls(sources=sources, revision=int(doc["r"]), final=bool(doc["f"]))


def parse_key(key: str) -> tuple[str, str, datetime, dict[str, str]]:
    indicator, window, start, dims = key.split("|", 3)
    pairs = dict(p.split("=", 1) for p in dims.split(",")) if dims else {}
    return indicator, window, datetime.fromisoformat(start), pairs


@dataclass(slots=True)
class Merger:
    """Indicator keys of one stage-two partition."""

    specs: Mapping[str, IndicatorSpec]
    idle_after_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    keys: dict[str, Merged] = field(default_factory=dict)
    watermarks: dict[int, float] = field(default_factory=dict)
    _moved_at: dict[int, float] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)

    def partial(self, key: str, source: int, agg: Agg) -> None:
        """Replace ``source``'s partial for ``key``."""
        merged = self.keys.get(key)
        if merged is None:
            merged = self.keys[key] = Merged()
        merged.sources[source] = agg
        self.pending.add(key)

    def watermark(self, source: int, watermark_s: float) -> None:
        if watermark_s > self.watermarks.get(source, float("-inf")):
            self.watermarks[source] = watermark_s
            self._moved_at[source] = self.clock()

    def global_watermark(self) -> float:
        """The slowest non-idle source's watermark (all idle: the fastest one's)."""
        if not self.watermarks:
            return float("-inf")
        now = self.clock()
        active = [
            w for s, w in self.watermarks.items() if now - self._moved_at.get(s, now) < self.idle_after_s
        ]
        return min(active) if active else max(self.watermarks.values())

    def due(self) -> list[tuple[str, Merged]]:
        """Keys to publish now: changed since last time, or just became final. Bumps revisions."""
        wm = self.global_watermark()
        out = []
        for key, merged in self.keys.items():
            indicator, window, start, _ = parse_key(key)
            end_s = start.timestamp() + WINDOWS[window]
            became_final = not merged.final and end_s + self.specs[indicator].grace_s <= wm
            if key in self.pending or became_final:
                merged.final = merged.final or became_final
                merged.revision += 1
                out.append((key, merged))
        self.pending = set()
        return out

    def record(self, key: str, merged: Merged) -> IndicatorWindow:
        """The contract's indicator record for one key."""
        indicator, window, start, dims = parse_key(key)
        spec = self.specs[indicator]
        total = Agg()
        for agg in merged.sources.values():
            total.merge(agg)
        end = datetime.fromtimestamp(start.timestamp() + WINDOWS[window], start.tzinfo)
        return IndicatorWindow.model_validate(
            {
                "indicator": indicator,
                "window": window,
                "window_start": start,
                "window_end": end,
                "dimensions": dims,
                "unit": spec.unit,
                "count": total.count,
                **total.fields(spec.kind),
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
    service: str
    idle_after_s: float = 60.0
    mergers: dict[int, Merger] = field(default_factory=dict)

    def merger(self, p: int) -> Merger:
        m = self.mergers.get(p)
        if m is None:
            m = Merger(self.specs, self.idle_after_s)
            for name, raw in self.store.items(p, PART):
                src, key = name.split("|", 1)
                m.keys.setdefault(key, Merged()).sources[int(src)] = Agg.from_json(orjson.loads(raw))
            for key, raw in self.store.items(p, REV):
                revision, final = raw.decode().split(",")
                merged = m.keys.setdefault(key, Merged())
                merged.revision, merged.final = int(revision), final == "1"
            for src, raw in self.store.items(p, WM):
                m.watermark(int(src), float(raw))
            self.mergers[p] = m
        return m

    def forget(self, partitions: set[int]) -> None:
        for p in partitions:
            self.mergers.pop(p, None)

    def on_partials(self, p: int, value: bytes) -> None:
        """A bundle from one stage-one partition: its watermark and changed aggregates."""
        msg = orjson.loads(value)
        m = self.merger(p)
        src = int(msg["src"])
        if msg.get("wm") is not None and msg["wm"] > m.watermarks.get(src, float("-inf")):
            m.watermark(src, float(msg["wm"]))
            self.store.put(p, WM, str(src), repr(float(msg["wm"])).encode())
        for name, agg in msg.get("aggs", {}).items():
            m.partial(name, src, Agg.from_json(agg))
            self.store.put(p, PART, f"{src}|{name}", orjson.dumps(agg))

    def due(self) -> list[tuple[bytes, bytes, bool]]:
        """(key, CloudEvent, final) of every indicator record to publish now."""
        out = []
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        for p, m in self.mergers.items():
            for key, merged in m.due():
                record = m.record(key, merged)
                self.store.put(p, REV, key, f"{merged.revision},{int(merged.final)}".encode())
                event = {
                    "specversion": "1.0",
                    "id": f"{key}|r{merged.revision}",
                    "source": f"/tradepulse/{self.service}",
                    "type": INDICATOR_TYPE,
                    "time": now,
                    "subject": key,
                    "datacontenttype": "application/json",
                    "data": record.model_dump(mode="json", exclude_none=True),
                }
                out.append((key.encode(), orjson.dumps(event), merged.final))
        return out
