"""The engine's own metrics, and the indicator values as gauges (docs/contract.md section 5).

Dashboards and SLA alerts must show the same number as the indicator records, so stage two
mirrors what it publishes: for each indicator one gauge ``tradepulse_indicator_<id>_<unit>`` with
labels ``window`` (``PT1H``, ``P1D``), ``phase`` (``current``: the latest window of the series;
``final``: the latest final one), ``stat`` (the record's fields, and ``window_start``) and the
indicator's dimensions (``all`` in the rollup). A series whose dimension values fall outside the
indicator's closed label sets is not mirrored (its records are), so the number of series stays
bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from services.contract.records import IndicatorWindow
from services.engine.domain import Observer
from services.engine.watch import ACTIVE, WATCHED, WatchRule, clock_name
from services.engine.windows import Contribution, Dims, IndicatorSpec, Observed, WindowKey

__all__ = [
    "INDICATOR_RECORDS", "LATE_EVENTS", "Backlog", "IndicatorGauges", "MeasureHistograms", "WatchGauges",
    "gauge_name", "label_or_other",
]  # fmt: skip

LATE_EVENTS = Counter(
    "tradepulse_late_events_total", "Events that reached a window after it was final.", ["topic"]
)
INDICATOR_RECORDS = Counter(
    "tradepulse_indicator_records_total", "Indicator revisions published.", ["service", "final"]
)

WATCH_CASES = Gauge(
    "tradepulse_watch_cases",
    "Open cases the SLA watch flags on this worker, by rule, state (warning, breached) and group.",
    ["service", "rule", "state", "group"],
)
WATCH_OLDEST = Gauge(
    "tradepulse_watch_oldest_age_seconds",
    "By the watch clock, how long ago the earliest-started flagged case started, by rule and state "
    "(0 when none is flagged).",
    ["service", "rule", "state"],
)

UNIT_SUFFIX = {
    "seconds": "seconds",
    "working_days": "workdays",
    "ratio": "ratio",
    "cny": "cny",
    "count": "count",
}
STATS = {
    "duration": ("count", "mean", "min", "max", "p50", "p90", "p95", "p99", "window_start"),
    "ratio": ("count", "numerator", "denominator", "value", "window_start"),
    "amount": ("count", "sum", "window_start"),
}
ROLLUP = "all"
_GAUGES: dict[str, Gauge] = {}  # one per indicator per process (engines come and go in tests)
_HISTOGRAMS: dict[str, Histogram] = {}
_BACKLOG: dict[str, tuple[Gauge, Counter]] = {}
UNKNOWN = "unknown"  # a dimension the case does not know yet: a label value of its own


def label_or_other(value: str, allowed: frozenset[str]) -> str:
    """Keep label values in a closed set: anything unknown becomes ``other`` (for domain metrics)."""
    return value if value in allowed else "other"


class Backlog(Observer):
    """The two metrics every service keeps of its own cases, declared here from its names:
    ``tradepulse_<service>_open_<kind>s`` (open cases by ``label``, one child per value of the
    closed set ``groups``, exported as 0 from the start) and ``tradepulse_<service>_cases_expired_total``
    (dropped unfinished after the case expiry). A domain's observer extends it with its own metrics."""

    def __init__(self, service: str, kind: str, label: str, groups: Iterable[str], meaning: str) -> None:
        cases = f"{kind}s"
        open_name = f"tradepulse_{service}_open_{cases}"
        if open_name not in _BACKLOG:
            _BACKLOG[open_name] = (
                Gauge(open_name, f"{meaning}, on this worker's partitions.", [label]),
                Counter(
                    f"tradepulse_{service}_cases_expired_total",
                    f"{cases.capitalize()} dropped unfinished after "
                    f"TRADEPULSE_{service.upper()}_CASE_EXPIRY_S without events.",
                    [label],
                ),
            )
        open_cases, self._expired = _BACKLOG[open_name]
        self._kind = kind
        self._open = {g: open_cases.labels(g) for g in groups}

    def expired(self, kind: str, case: Any) -> None:
        if kind == self._kind:
            self._expired.labels(case.group).inc()

    def open_cases(self, kind: str, by_group: Mapping[str, int]) -> None:
        if kind == self._kind:
            for group, gauge in self._open.items():
                gauge.set(by_group.get(group, 0))


class MeasureHistograms:
    """The histograms the indicator specs declare (:class:`Observed`), each measure observed once,
    when a case first contributes it: the engine keeps them, so a domain declares a duration's
    histogram with its indicator instead of in a metrics module of its own."""

    def __init__(self, specs: Mapping[str, IndicatorSpec]) -> None:
        self._specs: dict[str, tuple[IndicatorSpec, tuple[str, ...], Histogram]] = {}
        for name, spec in specs.items():
            if (observed := spec.histogram) is not None:
                labels = observed.labels if observed.labels is not None else spec.dimensions
                self._specs[name] = (spec, labels, _histogram(observed, labels))
        self._children: dict[tuple[str, Dims], Any] = {}

    def observe(self, added: Iterable[Contribution]) -> None:
        for c in added:
            child = self._children.get((c.indicator, c.dims))
            if child is None:
                if c.indicator not in self._specs:
                    continue
                child = self._child(c.indicator, c.dims)
            child.observe(c.value)

    def _child(self, indicator: str, dims: Dims) -> Any:
        spec, names, histogram = self._specs[indicator]
        values = dict(dims)
        labels = []
        for name in names:
            value, allowed = values.get(name, UNKNOWN), spec.labels.get(name)
            labels.append(value if allowed is None or value in allowed or value == UNKNOWN else "other")
        child = histogram.labels(*labels)
        if len(self._children) < 4096:  # dimension values past the label sets: not all cached
            self._children[(indicator, dims)] = child
        return child


def _histogram(observed: Observed, labels: tuple[str, ...]) -> Histogram:
    """One per name per process (engines come and go in tests)."""
    found = _HISTOGRAMS.get(observed.name)
    if found is None:
        found = _HISTOGRAMS[observed.name] = Histogram(
            observed.name, observed.help, list(labels), buckets=observed.buckets
        )
    return found


def gauge_name(spec: IndicatorSpec) -> str:
    return f"tradepulse_indicator_{spec.name.replace('.', '_')}_{UNIT_SUFFIX[spec.unit]}"


def _gauge(spec: IndicatorSpec) -> Gauge:
    name = gauge_name(spec)
    if name not in _GAUGES:
        _GAUGES[name] = Gauge(
            name,
            f"Indicator {spec.name} ({spec.unit}) of the latest (phase=current) and the latest final "
            "(phase=final) window, as published on the indicator topic.",
            ["window", "phase", "stat", *spec.dimensions],
        )
    return _GAUGES[name]


@dataclass(slots=True)
class _Series:
    current_start: int = -1
    final_start: int = -1


@dataclass(slots=True)
class IndicatorGauges:
    """Mirrors the records stage two publishes; series of revoked partitions are removed."""

    specs: Mapping[str, IndicatorSpec]
    series: dict[tuple[str, str, Dims], _Series] = field(default_factory=dict)
    owner: dict[tuple[str, str, Dims], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for spec in self.specs.values():  # on /metrics from the start, before any record
            _gauge(spec)

    def published(self, partition: int, key: WindowKey, record: IndicatorWindow) -> None:
        spec = self.specs[key.indicator]
        labels = self._labels(spec, key.dims)
        if labels is None:
            return
        s = self.series.setdefault(key.series, _Series())
        self.owner[key.series] = partition
        phases = []
        if key.start >= s.current_start:
            s.current_start = key.start
            phases.append("current")
        if record.final and key.start >= s.final_start:
            s.final_start = key.start
            phases.append("final")
        gauge = _gauge(spec)
        values = {**record.model_dump(), "window_start": key.start}
        for phase in phases:
            for stat in STATS[spec.kind]:
                value = values[stat]
                child = gauge.labels(key.window, phase, stat, *labels)
                child.set(float("nan") if value is None else float(value))

    def forget(self, partitions: set[int]) -> None:
        """Remove the series a revoked stage-two partition owned (its new owner exports them)."""
        for series in [s for s, p in self.owner.items() if p in partitions]:
            indicator, window, dims = series
            spec = self.specs[indicator]
            labels = self._labels(spec, dims)
            state = self.series.pop(series, None)
            del self.owner[series]
            if labels is None or state is None:
                continue
            gauge = _gauge(spec)
            for phase, start in (("current", state.current_start), ("final", state.final_start)):
                if start >= 0:
                    for stat in STATS[spec.kind]:
                        gauge.remove(window, phase, stat, *labels)

    @staticmethod
    def _labels(spec: IndicatorSpec, dims: Dims) -> list[str] | None:
        values = dict(dims)
        labels = []
        for name in spec.dimensions:
            if not values:
                labels.append(ROLLUP)
                continue
            value = values.get(name)
            allowed = spec.labels.get(name)
            if value is None or allowed is None or value not in allowed:
                return None
            labels.append(value)
        return labels


class WatchGauges:
    """The SLA watch's gauges, from the engine's tallies and clock index (never a scan of cases).
    Every (rule, state) is exported from the start, at 0, so that alerts and panels see a series
    before the first flag."""

    def __init__(self, service: str, rules: Iterable[WatchRule]) -> None:
        self.service = service
        self.pairs = [(r.name, s) for r in rules for s in ACTIVE]
        self._seen: set[tuple[str, str, str]] = set()
        for rule, state in self.pairs:
            WATCH_OLDEST.labels(service, rule, state).set(0)

    def counts(self, tallies: Mapping[tuple[str, ...], int]) -> None:
        now = {(t[1], t[2], t[3]): n for t, n in tallies.items() if t[0] == WATCHED}
        for labels in self._seen - set(now):
            WATCH_CASES.labels(self.service, *labels).set(0)
        for labels, n in now.items():
            WATCH_CASES.labels(self.service, *labels).set(n)
        self._seen |= set(now)

    def oldest(self, clock_s: float, earliest: Mapping[str, float]) -> None:
        for rule, state in self.pairs:
            start = earliest.get(clock_name(rule, state))
            age = clock_s - start if start is not None and clock_s > start else 0.0
            WATCH_OLDEST.labels(self.service, rule, state).set(age)
