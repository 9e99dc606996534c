"""A mergeable quantile sketch with a relative-accuracy guarantee (DDSketch's log mapping).

Every positive value x falls in bucket ``ceil(log_gamma(x))`` with gamma = (1 + a) / (1 - a);
reporting a bucket's midpoint ``2 gamma^i / (gamma + 1)`` is within relative error ``a`` of every
value in it. Buckets are exact counts, so sketches merge by adding counts (the guarantee survives
any number of merges, in any order) and a value can be taken out again by subtracting it, which is
how a case's contribution is corrected. Zero is counted apart; negative values are refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["RELATIVE_ACCURACY", "Sketch", "bucket_of"]

RELATIVE_ACCURACY = 0.01
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)


def _bucket(value: float) -> int:
    return math.ceil(math.log(value) / _LOG_GAMMA)


def bucket_of(value: float) -> int | None:
    """The bucket of a value (None for zero): compute once, add to several sketches."""
    if value < 0 or math.isnan(value):
        msg = f"sketch takes non-negative values, got {value}"
        raise ValueError(msg)
    return None if value == 0 else _bucket(value)


def _midpoint(index: int) -> float:
    return 2 * _GAMMA**index / (_GAMMA + 1)


class Sketch:
    """Counts per logarithmic bucket; ``quantile(q)`` is within 1 % of the exact value."""

    __slots__ = ("bins", "count", "zeros")

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.zeros = 0
        self.count = 0

    def add(self, value: float, weight: int = 1) -> None:
        """Count ``value`` ``weight`` times (a negative weight takes it out again)."""
        self.add_bucket(bucket_of(value), weight)

    def add_bucket(self, key: int | None, weight: int = 1) -> None:
        """Count ``weight`` values of bucket ``key`` (None: zero), as :func:`bucket_of` gives."""
        if key is None:
            self.zeros += weight
        else:
            left = self.bins.get(key, 0) + weight
            if left:
                self.bins[key] = left
            else:
                del self.bins[key]
        self.count += weight

    def remove(self, value: float) -> None:
        self.add(value, -1)

    def merge(self, other: Sketch) -> None:
        for key, n in other.bins.items():
            left = self.bins.get(key, 0) + n
            if left:
                self.bins[key] = left
            else:
                self.bins.pop(key, None)
        self.zeros += other.zeros
        self.count += other.count

    def quantile(self, q: float) -> float | None:
        """The value at rank ``floor(q * (count - 1))`` (lower interpolation), within 1 %."""
        if self.count <= 0:
            return None
        rank = math.floor(q * (self.count - 1))
        seen = self.zeros
        if rank < seen:
            return 0.0
        for key in sorted(self.bins):
            seen += self.bins[key]
            if seen > rank:
                return _midpoint(key)
        return _midpoint(max(self.bins))

    def to_json(self) -> dict[str, Any]:
        """Its JSON form, the bucket keys as integers: dump it with ``orjson.OPT_NON_STR_KEYS`` (a
        third of the time of turning every key into a string first, and aggregates are written
        with every batch that changes them). :meth:`from_json` takes either."""
        return {"z": self.zeros, "b": dict(self.bins)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Sketch:
        sketch = cls()
        sketch.zeros = int(doc.get("z", 0))
        sketch.bins = {int(k): int(v) for k, v in doc.get("b", {}).items()}
        sketch.count = sketch.zeros + sum(sketch.bins.values())
        return sketch

    @classmethod
    def of(cls, values: Iterable[float]) -> Sketch:
        sketch = cls()
        for v in values:
            sketch.add(v)
        return sketch

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sketch) and (self.bins, self.zeros) == (other.bins, other.zeros)

    __hash__ = None  # type: ignore[assignment]
