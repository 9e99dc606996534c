"""Event-time tumbling windows and the values that live in them: indicators, contributions and
window keys. Pure; no I/O.

Windows are the contract's ``PT1H`` and ``P1D``, aligned to Asia/Shanghai hours and midnights
(UTC+08:00 all year, no daylight saving). A case contributes one :class:`Contribution` per measure
it has completed; each lands in the two windows holding its time, under its dimensions and the
rollup over all (``{}``), so four :class:`WindowKey` s per contribution.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Literal, NamedTuple

__all__ = [
    "SHANGHAI",
    "WINDOWS",
    "Contribution",
    "Dims",
    "IndicatorSpec",
    "Kind",
    "Observed",
    "Unit",
    "WindowKey",
    "measure_name",
    "window_start",
]

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
WINDOWS: dict[str, int] = {"PT1H": 3600, "P1D": 86400}
_OFFSET_S = 8 * 3600

Kind = Literal["duration", "ratio", "amount"]
Unit = Literal["seconds", "working_days", "ratio", "cny", "count"]
Dims = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Observed:
    """A Prometheus histogram of an indicator's measures, each observed once, when first known
    (processing time: an operational view beside the event-time gauges). Declared with the
    indicator, kept by the engine (services.engine.metrics.MeasureHistograms)."""

    name: str
    help: str
    buckets: tuple[float, ...]
    labels: tuple[str, ...] | None = None
    """The dimensions it is labelled by (default: all); values outside the indicator's label
    sets become ``other``."""


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """An indicator of docs/contract.md section 4.

    ``labels`` bounds the gauges that mirror the indicator on ``/metrics``: a dimension value
    outside its set is not exported there (its records still are), so series stay bounded.
    """

    name: str
    unit: Unit
    kind: Kind
    dimensions: tuple[str, ...]
    grace_s: float = 3600.0
    labels: Mapping[str, frozenset[str]] = field(default_factory=dict)
    milestone: str = ""
    """The milestone whose time places a case in its window, when one does: what lets a reader of
    the case topics (the cross-border release) put a case's measure in its window."""
    histogram: Observed | None = None


class Contribution(NamedTuple):
    """One case's share of one indicator, counted in the windows holding ``at_s``.

    A named tuple: contributions are hashed and compared on every change, and tuples do that in C.
    ``dims`` are (name, value) pairs sorted by name.
    """

    indicator: str
    at_s: float
    dims: Dims
    value: float = 0.0  # a duration in the indicator's unit, or 1/0 for a ratio's numerator
    amount: str = "0"  # an exact decimal, for amounts

    @property
    def measure(self) -> str:
        """Its identity within the case: the indicator and its dimensions (a case has at most one
        contribution per measure; a correction replaces it)."""
        return measure_name(self.indicator, self.dims)


@lru_cache(maxsize=65_536)
def measure_name(indicator: str, dims: Dims) -> str:
    """``<indicator>|<k1=v1,...>``: a measure's name in case records and stored cases (made once per
    value: every change of a case writes its measures)."""
    return indicator + "|" + ",".join(f"{k}={v}" for k, v in dims)


def window_start(at_s: float, size_s: int) -> int:
    """Epoch seconds of the start of the Shanghai-aligned window of ``size_s`` holding ``at_s``."""
    return int((at_s + _OFFSET_S) // size_s * size_s - _OFFSET_S)


class WindowKey(NamedTuple):
    """One indicator over one window and one dimension set (``()`` is the rollup). Formatted to the
    contract's string (``<indicator>|<window>|<window_start>|<k1=v1,...>``) only at the Kafka
    boundary, by :attr:`text`."""

    indicator: str
    window: str
    start: int
    dims: Dims

    @property
    def end_s(self) -> int:
        return self.start + WINDOWS[self.window]

    @property
    def text(self) -> str:
        return _text(self)

    @property
    def series(self) -> tuple[str, str, Dims]:
        """What stays the same from one window to the next: indicator, window size, dimensions."""
        return self.indicator, self.window, self.dims

    @classmethod
    def parse(cls, text: str) -> WindowKey:
        return _parse(text)


@lru_cache(maxsize=65_536)
def _text(key: WindowKey) -> str:
    start = datetime.fromtimestamp(key.start, SHANGHAI).isoformat()
    return f"{key.indicator}|{key.window}|{start}|{','.join(f'{k}={v}' for k, v in key.dims)}"


@lru_cache(maxsize=65_536)
def _parse(text: str) -> WindowKey:
    indicator, window, start, dims = text.split("|", 3)
    pairs = tuple(sorted(tuple(p.split("=", 1)) for p in dims.split(","))) if dims else ()
    return WindowKey(indicator, window, int(datetime.fromisoformat(start).timestamp()), pairs)  # type: ignore[arg-type]
