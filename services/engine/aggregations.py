"""Mergeable aggregations, one class per kind of indicator: durations, ratios, amounts.

Each can count a contribution (sign 1) and take it out again (sign -1), which is how a case's
correction moves its contribution; each merges with another of its kind by adding, which is how
stage two combines the partitions' partials. Means and sums are exact; duration quantiles come
from a mergeable sketch within 1 % relative error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, Self

from services.engine.sketch import Sketch, bucket_of
from services.engine.windows import Contribution, Kind

__all__ = ["Aggregation", "Amounts", "Durations", "Ratios", "aggregation_of", "aggregation_type"]


class Aggregation(Protocol):
    """What every kind offers the engine."""

    count: int
    late: int

    @staticmethod
    def prepare(c: Contribution) -> Any:
        """What :meth:`add` needs of a contribution, computed once for all its windows."""

    def add(self, prepared: Any, sign: int) -> None:
        """Count (``sign`` 1) or take out again (``sign`` -1) a prepared contribution."""

    def merge(self, other: Self) -> None: ...

    def fields(self) -> dict[str, Any]:
        """The statistics fields of an indicator record (docs/contract.md section 4)."""

    def to_json(self) -> dict[str, Any]: ...

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Self: ...


@dataclass(slots=True)
class Durations:
    """Counts, an exact sum in integer milliseconds and a quantile sketch.

    Every field is a function of the multiset of values counted, whatever the order of additions
    and corrections: the mean is exact, the percentiles and the extremes come from the sketch
    (within 1 %). Exact extremes were kept once, and went stale: after a correction took out the
    minimum, the sketch's estimate stood in for it and no longer matched the next value taken
    out, so the same events gave different minima depending on batching (found by sending one
    corpus through the HTTP gateway and directly to Kafka)."""

    count: int = 0
    sum_ms: int = 0
    sketch: Sketch = field(default_factory=Sketch)
    late: int = 0

    @staticmethod
    def prepare(c: Contribution) -> tuple[int, int | None]:
        ms = round(c.value * 1000)
        return ms, bucket_of(ms / 1000)

    def add(self, prepared: tuple[int, int | None], sign: int) -> None:
        ms, bucket = prepared
        self.count += sign
        self.sum_ms += sign * ms
        self.sketch.add_bucket(bucket, sign)

    def merge(self, other: Durations) -> None:
        self.count += other.count
        self.sum_ms += other.sum_ms
        self.sketch.merge(other.sketch)
        self.late += other.late

    def fields(self) -> dict[str, Any]:
        n, q = self.count, self.sketch.quantile
        return {
            "mean": self.sum_ms / 1000 / n if n else None,
            "min": q(0.0), "max": q(1.0),
            "p50": q(0.5), "p90": q(0.9), "p95": q(0.95), "p99": q(0.99),
        }  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {"n": self.count, "s": self.sum_ms, "k": self.sketch.to_json(), "late": self.late}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Durations:
        return cls(int(doc["n"]), int(doc["s"]), Sketch.from_json(doc["k"]), int(doc["late"]))


@dataclass(slots=True)
class Ratios:
    """Cases counted (the denominator) and those that meet the indicator's condition."""

    count: int = 0
    numerator: int = 0
    late: int = 0

    @staticmethod
    def prepare(c: Contribution) -> int:
        return int(c.value)

    def add(self, prepared: int, sign: int) -> None:
        self.count += sign
        self.numerator += sign * prepared

    def merge(self, other: Ratios) -> None:
        self.count += other.count
        self.numerator += other.numerator
        self.late += other.late

    def fields(self) -> dict[str, Any]:
        value = self.numerator / self.count if self.count else None
        return {"numerator": float(self.numerator), "denominator": float(self.count), "value": value}

    def to_json(self) -> dict[str, Any]:
        return {"n": self.count, "num": self.numerator, "late": self.late}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Ratios:
        return cls(int(doc["n"]), int(doc["num"]), int(doc["late"]))


@dataclass(slots=True)
class Amounts:
    """An exact decimal sum of money."""

    count: int = 0
    total: Decimal = Decimal(0)
    late: int = 0

    @staticmethod
    def prepare(c: Contribution) -> Decimal:
        return Decimal(c.amount)

    def add(self, prepared: Decimal, sign: int) -> None:
        self.count += sign
        self.total += sign * prepared

    def merge(self, other: Amounts) -> None:
        self.count += other.count
        self.total += other.total
        self.late += other.late

    def fields(self) -> dict[str, Any]:
        return {"sum": str(self.total)}

    def to_json(self) -> dict[str, Any]:
        return {"n": self.count, "amt": str(self.total), "late": self.late}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Amounts:
        return cls(int(doc["n"]), Decimal(doc["amt"]), int(doc["late"]))


_TYPES: dict[Kind, type[Aggregation]] = {"duration": Durations, "ratio": Ratios, "amount": Amounts}


def aggregation_type(kind: Kind) -> type[Aggregation]:
    return _TYPES[kind]


def aggregation_of(kind: Kind, doc: Mapping[str, Any] | None = None) -> Aggregation:
    """A new (empty, or read from ``doc``) aggregation of ``kind``."""
    cls = _TYPES[kind]
    return cls.from_json(doc) if doc is not None else cls()
