"""One input partition's aggregates per window key: what its cases contribute, kept equal to a batch
computation over their current state. Pure; no I/O.

:meth:`Partials.apply` replaces a case's contributions: an outdated one is taken out, a new one
added, an unchanged one left alone, so a correction moves a case and never counts it twice. A
contribution that reaches a window already past its end plus the indicator's grace (behind the
partition's watermark) is *late*: it still counts, and the window's ``late_events`` says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from services.engine.aggregations import Aggregation, aggregation_type
from services.engine.windows import WINDOWS, Contribution, Dims, IndicatorSpec, WindowKey, window_start

__all__ = ["Applied", "Partials"]

Applied = tuple[tuple[Contribution, tuple[str, ...]], ...]
"""A case's contributions as counted, each with the windows it reached late."""

_DAY = WINDOWS["P1D"]
_WINDOW_SIZES = tuple(WINDOWS.items())
_OFFSET_S = 8 * 3600  # windows are aligned to Asia/Shanghai (windows.window_start)


def _key(fields: tuple[str, str, int, Dims]) -> WindowKey:
    """A WindowKey without the named tuple's Python-level __new__ (a third of _add's time)."""
    return tuple.__new__(WindowKey, fields)


@dataclass(slots=True)
class Partials:
    """The aggregates of one input partition, with what changed since last asked."""

    specs: Mapping[str, IndicatorSpec]
    out_of_orderness_s: float = 600.0
    aggs: dict[WindowKey, Aggregation] = field(default_factory=dict)
    changed: set[WindowKey] = field(default_factory=set)
    dirty: set[WindowKey] = field(default_factory=set)  # changed since last staged (to persist them)
    whole: bool = False
    """The next handover is to be *whole*: every aggregate this partition holds, so that stage two
    forgets what it kept of this partition and the partition no longer has (see :meth:`take_changed`)."""
    max_event_s: float = float("-inf")
    _kinds: dict[str, tuple[float, type[Aggregation]]] = field(default_factory=dict)

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

    def _add(self, c: Contribution, sign: int, late: tuple[str, ...] | None) -> tuple[str, ...]:
        """Count ``c`` (``sign`` 1) or take it out (-1) in both windows, per its dimensions and in the
        rollup. The hottest loop of the engine: four aggregates per contribution."""
        grace_s, agg_type = self._kind(c.indicator)
        prepared = agg_type.prepare(c)
        late_windows: list[str] = []
        aggs, changed, dirty, watermark = self.aggs, self.changed, self.dirty, self.watermark_s
        indicator, dims, at_s = c.indicator, c.dims, c.at_s
        if len(dims) > 1:
            dims = tuple(sorted(dims))  # keys are canonical whatever order a domain wrote
        for window, size in _WINDOW_SIZES:
            start = int((at_s + _OFFSET_S) // size * size - _OFFSET_S)  # window_start, inlined
            is_late = window in late if late is not None else start + size + grace_s <= watermark
            if is_late:
                late_windows.append(window)
            for d in (dims, ()):
                key = _key((indicator, window, start, d))
                agg = aggs.get(key)
                if agg is None:
                    agg = aggs[key] = agg_type()
                agg.add(prepared, sign)
                if is_late:
                    agg.late += sign
                changed.add(key)
                dirty.add(key)
        return tuple(late_windows)

    def _kind(self, indicator: str) -> tuple[float, type[Aggregation]]:
        """(grace, aggregation type) of an indicator, looked up once."""
        found = self._kinds.get(indicator)
        if found is None:
            spec = self.specs[indicator]
            found = self._kinds[indicator] = (spec.grace_s, aggregation_type(spec.kind))
        return found

    def take_changed(self) -> tuple[dict[WindowKey, Aggregation], bool]:
        """Aggregates changed since the last call (to hand to stage two), and whether they are the
        whole of what this partition holds (once after its state was loaded)."""
        if self.whole:
            out, whole = dict(self.aggs), True
            self.whole = False
        else:
            out, whole = {k: self.aggs[k] for k in self.changed if k in self.aggs}, False
        self.changed = set()
        return out, whole
