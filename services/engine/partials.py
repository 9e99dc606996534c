"""One input partition's aggregates per window key: what its cases contribute, kept equal to a batch
computation over their current state. Pure; no I/O.

:meth:`Partials.apply` replaces a case's contributions: an outdated one is taken out, a new one
added, an unchanged one left alone, so a correction moves a case and never counts it twice. A
contribution that reaches a window already past its end plus the indicator's grace (behind the
partition's watermark) is *late*: it still counts, and the window's ``late_events`` says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from services.engine.aggregations import Aggregation, aggregation_type
from services.engine.windows import WINDOWS, Contribution, IndicatorSpec, WindowKey, window_start

__all__ = ["Applied", "Partials", "late_map", "with_late"]

Applied = tuple[tuple[Contribution, tuple[str, ...]], ...]
"""A case's contributions as counted, each with the windows it reached late."""

_DAY = WINDOWS["P1D"]


def late_map(applied: Applied) -> dict[str, list[str]]:
    """What must be stored of a case's contributions: only the windows they reached late (the
    contributions themselves are derived from the case again)."""
    return {c.measure: list(w) for c, w in applied if w}


def with_late(contributions: Iterable[Contribution], late: Mapping[str, list[str]]) -> Applied:
    """A restored case's applied contributions: derived from its state, lateness as stored."""
    return tuple((c, tuple(late.get(c.measure, ()))) for c in contributions)


@dataclass(slots=True)
class Partials:
    """The aggregates of one input partition, with what changed since last asked."""

    specs: Mapping[str, IndicatorSpec]
    out_of_orderness_s: float = 600.0
    aggs: dict[WindowKey, Aggregation] = field(default_factory=dict)
    changed: set[WindowKey] = field(default_factory=set)
    created: set[WindowKey] = field(default_factory=set)  # new since last asked (to persist their keys)
    max_event_s: float = float("-inf")

    @property
    def watermark_s(self) -> float:
        """Event time up to which this partition believes it has seen everything."""
        return self.max_event_s - self.out_of_orderness_s

    def observe(self, event_s: float) -> None:
        """Advance the watermark with an event's time."""
        if event_s > self.max_event_s:
            self.max_event_s = event_s

    def retired(self, at_s: float, retention_s: float) -> bool:
        """True when a contribution at ``at_s`` would land in a window no longer kept."""
        return window_start(at_s, _DAY) + _DAY + retention_s < self.watermark_s

    def apply(self, old: Applied, new: Sequence[Contribution]) -> tuple[Applied, int]:
        """Replace a case's applied contributions ``old`` by ``new``; returns what is applied now
        and how many of the added contributions were late. Unchanged contributions keep their
        lateness; only changes touch the aggregates."""
        before = dict(old)
        after = set(new)
        for c, late in old:
            if c not in after:
                self._add(c, -1, late)
        applied = []
        late_count = 0
        for c in new:
            if c in before:
                applied.append((c, before[c]))
            else:
                windows = self._add(c, 1, None)
                late_count += bool(windows)
                applied.append((c, windows))
        return tuple(applied), late_count

    def restore(self, applied: Applied) -> None:
        """Count a restored case's contributions again (after a restart)."""
        for c, late in applied:
            self._add(c, 1, late)

    def _add(self, c: Contribution, sign: int, late: tuple[str, ...] | None) -> tuple[str, ...]:
        spec = self.specs[c.indicator]
        agg_type = aggregation_type(spec.kind)
        prepared = agg_type.prepare(c)
        dims = tuple(sorted(c.dims))
        late_windows: list[str] = []
        aggs, changed, watermark = self.aggs, self.changed, self.watermark_s
        for window, size in WINDOWS.items():
            start = window_start(c.at_s, size)
            is_late = window in late if late is not None else start + size + spec.grace_s <= watermark
            if is_late:
                late_windows.append(window)
            for d in (dims, ()):
                key = WindowKey(c.indicator, window, start, d)
                agg = aggs.get(key)
                if agg is None:
                    agg = aggs[key] = agg_type()
                    self.created.add(key)
                agg.add(prepared, sign)
                if is_late:
                    agg.late += sign
                changed.add(key)
        return tuple(late_windows)

    def take_changed(self) -> dict[WindowKey, Aggregation]:
        """Aggregates changed since the last call (to hand to stage two)."""
        out = {k: self.aggs[k] for k in self.changed if k in self.aggs}
        self.changed = set()
        return out
