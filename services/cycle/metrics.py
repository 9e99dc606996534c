"""Export cycle metrics no indicator spec describes: entries completed and dropped, the open
backlog, the calendar; an observer of the engine's changes. (The histograms of the two durations
are declared with the indicators, lifecycle.py, and kept by the engine.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import Counter, Gauge

from services.cycle.lifecycle import Entry
from services.engine.domain import EngineSettings, Observer, Survey
from services.engine.windows import Contribution
from services.workdays import CalendarWatch, WorkdaySettings

DAY = 86400.0

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
        if after.completed and not before.completed:
            ENTRIES.labels(outcome="completed").inc()

    def expired(self, kind: str, case: Any) -> None:
        if isinstance(case, Entry):
            ENTRIES.labels(outcome="expired").inc()

    def open_cases(self, kind: str, by_group: Mapping[str, int]) -> None:
        if kind == "entry":
            OPEN_ENTRIES.set(sum(by_group.values()))

    def housekeeping(self, kind: str, survey: Survey) -> None:
        """Entries waiting for a year of the calendar, how far it reaches, a changed year file."""
        if kind == "entry":
            self.calendar.housekeeping(survey.tallies, survey.newest_event_s)
