"""Event-time tumbling windows and mergeable aggregates: the indicator engine's arithmetic.

Pure; no I/O. A service turns each case into :class:`Contribution` s (one per measure the case
has completed); :class:`Partials` adds a new contribution to the windows holding its completion
time and takes an outdated one out again, so the aggregates always equal a batch computation over
the cases' current state. Windows are the contract's ``PT1H`` and ``P1D``, aligned to
Asia/Shanghai hours and midnights (UTC+08:00 all year, no daylight saving).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from services.common.sketch import Sketch, bucket_of

__all__ = [
    "SHANGHAI",
    "WINDOWS",
    "Agg",
    "Applied",
    "Contribution",
    "IndicatorSpec",
    "Partials",
    "contribution_id",
    "indicator_key",
    "late_map",
    "window_start",
    "with_late",
]

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
WINDOWS: dict[str, int] = {"PT1H": 3600, "P1D": 86400}
_OFFSET_S = 8 * 3600

Kind = Literal["duration", "ratio", "amount"]
Dims = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """An indicator of contract section 4."""

    name: str
    unit: Literal["seconds", "working_days", "ratio", "cny", "count"]
    kind: Kind
    dimensions: tuple[str, ...]
    grace_s: float = 3600.0


class Contribution(NamedTuple):
    """One case's share of one indicator: counted in the windows holding ``at_s``.

    A named tuple, not a dataclass: contributions are hashed and compared on every event, and
    tuples do that in C.
    """

    indicator: str
    at_s: float
    dims: Dims
    value: float = 0.0  # duration in the indicator's unit, or 1/0 for a ratio's numerator
    amount: str = "0"  # exact decimal, for amounts

    def to_json(self) -> list[Any]:
        return [self.indicator, self.at_s, [list(d) for d in self.dims], self.value, self.amount]

    @classmethod
    def from_json(cls, doc: list[Any]) -> Contribution:
        return cls(doc[0], float(doc[1]), tuple((k, v) for k, v in doc[2]), float(doc[3]), str(doc[4]))


Applied = list[tuple[Contribution, tuple[str, ...]]]


def contribution_id(c: Contribution) -> str:
    """A contribution's identity within its case: the indicator and its dimensions."""
    return c.indicator + "|" + ",".join(f"{k}={v}" for k, v in c.dims)


def late_map(applied: Applied) -> dict[str, list[str]]:
    """The windows each contribution reached late, for storing a case (only what is not derivable)."""
    return {contribution_id(c): list(w) for c, w in applied if w}


def with_late(contributions: list[Contribution], late: Mapping[str, list[str]]) -> Applied:
    """A restored case's applied contributions: derived from its state, lateness as stored."""
    return [(c, tuple(late.get(contribution_id(c), ()))) for c in contributions]


def window_start(at_s: float, size_s: int) -> int:
    """Epoch seconds of the start of the Shanghai-aligned window of ``size_s`` holding ``at_s``."""
    return int((at_s + _OFFSET_S) // size_s * size_s - _OFFSET_S)


def _iso(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, SHANGHAI).isoformat()


@lru_cache(maxsize=65_536)
def indicator_key(indicator: str, window: str, start_s: int, dims: Dims) -> str:
    """``<indicator>|<window>|<window_start>|<k1=v1,k2=v2 sorted by key>`` (contract section 4)."""
    return f"{indicator}|{window}|{_iso(start_s)}|{','.join(f'{k}={v}' for k, v in sorted(dims))}"


@dataclass(slots=True)
class Agg:
    """A mergeable aggregate: counts, exact sums, a quantile sketch, extremes."""

    count: int = 0
    sum_ms: int = 0  # durations summed in integer milliseconds: the mean is exact
    min_ms: int | None = None
    max_ms: int | None = None
    sketch: Sketch = field(default_factory=Sketch)
    numerator: int = 0
    amount: Decimal = Decimal(0)
    late: int = 0

    def add(self, c: Contribution, kind: Kind, sign: int = 1) -> None:
        """Count (``sign`` 1) or take out again (``sign`` -1) one contribution."""
        if kind == "duration":
            ms = round(c.value * 1000)
            self.add_duration(ms, bucket_of(ms / 1000), sign)
        else:
            self.count += sign
            if kind == "ratio":
                self.numerator += sign * int(c.value)
            else:
                self.amount += sign * Decimal(c.amount)

    def add_duration(self, ms: int, bucket: int | None, sign: int) -> None:
        """:meth:`add` for a duration whose milliseconds and sketch bucket are known."""
        self.count += sign
        self.sum_ms += sign * ms
        self.sketch.add_bucket(bucket, sign)
        if sign > 0:
            self.min_ms = ms if self.min_ms is None else min(self.min_ms, ms)
            self.max_ms = ms if self.max_ms is None else max(self.max_ms, ms)
        elif ms in (self.min_ms, self.max_ms) or self.count == 0:
            self._extremes_from_sketch()

    def _extremes_from_sketch(self) -> None:
        # The exact extreme left with the removed value; the sketch bounds the new one within 1 %.
        if self.count == 0:
            self.min_ms = self.max_ms = None
            return
        low, high = self.sketch.quantile(0.0), self.sketch.quantile(1.0)
        self.min_ms = round(low * 1000) if low is not None else None
        self.max_ms = round(high * 1000) if high is not None else None

    def merge(self, other: Agg) -> None:
        self.count += other.count
        self.sum_ms += other.sum_ms
        for attr, pick in (("min_ms", min), ("max_ms", max)):
            mine, theirs = getattr(self, attr), getattr(other, attr)
            setattr(self, attr, theirs if mine is None else mine if theirs is None else pick(mine, theirs))
        self.sketch.merge(other.sketch)
        self.numerator += other.numerator
        self.amount += other.amount
        self.late += other.late

    def fields(self, kind: Kind) -> dict[str, Any]:
        """The statistics fields of an indicator record."""
        if kind == "duration":
            n = self.count
            q = self.sketch.quantile
            return {
                "mean": self.sum_ms / 1000 / n if n else None,
                "min": self.min_ms / 1000 if self.min_ms is not None else None,
                "max": self.max_ms / 1000 if self.max_ms is not None else None,
                "p50": q(0.5), "p90": q(0.9), "p95": q(0.95), "p99": q(0.99),
            }  # fmt: skip
        if kind == "ratio":
            return {
                "numerator": float(self.numerator),
                "denominator": float(self.count),
                "value": self.numerator / self.count if self.count else None,
            }
        return {"sum": str(self.amount)}

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.count, "s": self.sum_ms, "lo": self.min_ms, "hi": self.max_ms,
            "k": self.sketch.to_json(), "num": self.numerator, "amt": str(self.amount), "late": self.late,
        }  # fmt: skip

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Agg:
        return cls(
            count=int(doc["n"]), sum_ms=int(doc["s"]), min_ms=doc["lo"], max_ms=doc["hi"],
            sketch=Sketch.from_json(doc["k"]), numerator=int(doc["num"]), amount=Decimal(doc["amt"]),
            late=int(doc["late"]),
        )  # fmt: skip


@dataclass(slots=True)
class Partials:
    """One input partition's aggregates per indicator key, with what changed since last asked."""

    specs: Mapping[str, IndicatorSpec]
    out_of_orderness_s: float = 600.0
    aggs: dict[str, Agg] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    created: set[str] = field(default_factory=set)  # keys new since last asked (to persist)
    max_event_s: float = float("-inf")

    @property
    def watermark_s(self) -> float:
        """Event time up to which this partition believes it has seen everything."""
        return self.max_event_s - self.out_of_orderness_s

    def observe(self, event_s: float) -> None:
        """Advance the watermark with an event's time."""
        self.max_event_s = max(self.max_event_s, event_s)

    def retired(self, at_s: float, window_retention_s: float) -> bool:
        """True when a contribution at ``at_s`` would land in a window no longer kept."""
        return window_start(at_s, WINDOWS["P1D"]) + WINDOWS["P1D"] + window_retention_s < self.watermark_s

    def apply(
        self,
        old: Iterable[tuple[Contribution, tuple[str, ...]]],
        new: Iterable[Contribution],
    ) -> list[tuple[Contribution, tuple[str, ...]]]:
        """Replace a case's applied contributions ``old`` by ``new``.

        Returns the case's new applied list: each contribution with the windows it reached late.
        Unchanged contributions keep their lateness; only changes touch the aggregates.
        """
        before = dict(old)
        after = set(new)
        for c, late in before.items():
            if c not in after:
                self._add(c, -1, late)
        return [(c, before[c] if c in before else self._add(c, 1, None)) for c in after]

    def restore(self, applied: Iterable[tuple[Contribution, tuple[str, ...]]]) -> None:
        """Rebuild aggregates from cases' applied contributions (after a restart)."""
        for c, late in applied:
            self._add(c, 1, late)

    def _add(self, c: Contribution, sign: int, late: tuple[str, ...] | None) -> tuple[str, ...]:
        spec = self.specs[c.indicator]
        duration = spec.kind == "duration"
        ms, bucket = 0, None
        if duration:
            ms = round(c.value * 1000)
            bucket = bucket_of(ms / 1000)
        late_windows: list[str] = []
        aggs, changed, watermark = self.aggs, self.changed, self.watermark_s
        for window, size in WINDOWS.items():
            start = window_start(c.at_s, size)
            is_late = window in late if late is not None else start + size + spec.grace_s <= watermark
            if is_late:
                late_windows.append(window)
            for dims in (c.dims, ()):
                key = indicator_key(c.indicator, window, start, dims)
                agg = aggs.get(key)
                if agg is None:
                    agg = aggs[key] = Agg()
                    self.created.add(key)
                if duration:
                    agg.add_duration(ms, bucket, sign)
                else:
                    agg.add(c, spec.kind, sign)
                if is_late:
                    agg.late += sign
                changed.add(key)
        return tuple(late_windows)

    def touch(self, c: Contribution) -> None:
        """Mark the keys of a contribution as changed (to publish them again), changing nothing."""
        for window, size in WINDOWS.items():
            start = window_start(c.at_s, size)
            for dims in (c.dims, ()):
                self.changed.add(indicator_key(c.indicator, window, start, dims))

    def take_changed(self) -> dict[str, Agg]:
        """Aggregates changed since the last call (to persist and to publish)."""
        out = {k: self.aggs[k] for k in self.changed if k in self.aggs}
        self.changed = set()
        return out
