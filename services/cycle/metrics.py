"""Export cycle metrics: operational histograms of the two durations (the dashboard's KPI panels
read the indicator gauges), entries completed and dropped, the open backlog; an observer of the
engine's changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from services.cycle.lifecycle import CATEGORIES, CUSTOMS_CODES, Entry
from services.engine.domain import EngineSettings, Observer
from services.engine.metrics import label_or_other
from services.engine.windows import Contribution
from services.workdays import CalendarWatch, WorkdaySettings

DAY = 86400.0

CASH_SECONDS = Histogram(
    "tradepulse_cycle_export_to_cash_seconds",
    "Export release to the earliest linked goods credit.",
    ["customs_code"],
    buckets=tuple(d * DAY for d in (1 / 24, 0.25, 1, 2, 5, 10, 20, 30, 60, 90)),
)
REFUND_WORKDAYS = Histogram(
    "tradepulse_cycle_export_to_refund_workdays",
    "Export release date to the earliest linked refund's issue date, in working days.",
    ["mgmt_category"],
    buckets=(5, 10, 15, 20, 30, 40, 60, 90, 120),
)
ENTRIES = Counter(
    "tradepulse_cycle_entries_total",
    "Export entries by how their cycle ended: completed (cash and refund known) or expired (past the "
    "horizon, TRADEPULSE_CYCLE_CASE_EXPIRY_S).",
    ["outcome"],
)
OPEN_ENTRIES = Gauge("tradepulse_cycle_open_entries", "Released export entries whose cycle is not complete.")
CALENDAR_UNKNOWN = Gauge(
    "tradepulse_cycle_calendar_unknown_entries",
    "Export entries whose release-to-refund time needs a year the working-day calendar lacks.",
)


class CycleMetrics(Observer):
    def __init__(self, settings: EngineSettings) -> None:
        self.calendar = CalendarWatch(WorkdaySettings().calendar(), "export entries", CALENDAR_UNKNOWN)

    def changed(self, kind: str, before: Any, after: Any, added: Sequence[Contribution]) -> None:
        if not isinstance(after, Entry):
            return
        for c in added:
            if c.indicator == "cycle.export_to_cash":
                code = label_or_other(after.customs_code, CUSTOMS_CODES)
                CASH_SECONDS.labels(customs_code=code).observe(c.value)
            elif c.indicator == "cycle.export_to_refund":
                category = label_or_other(c.dims[0][1], CATEGORIES)
                REFUND_WORKDAYS.labels(mgmt_category=category).observe(c.value)
        if after.completed and not before.completed:
            ENTRIES.labels(outcome="completed").inc()

    def expired(self, kind: str, case: Any) -> None:
        if isinstance(case, Entry):
            ENTRIES.labels(outcome="expired").inc()

    def open_cases(self, kind: str, by_group: Mapping[str, int]) -> None:
        if kind == "entry":
            OPEN_ENTRIES.set(sum(by_group.values()))

    def housekeeping(
        self,
        kind: str,
        tallies: Mapping[tuple[str, ...], int],
        earliest: Mapping[str, float],
        newest_event_s: float,
    ) -> None:
        """Entries waiting for a year of the calendar, how far it reaches, a changed year file."""
        if kind == "entry":
            self.calendar.housekeeping(tallies, newest_event_s)
