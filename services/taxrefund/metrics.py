"""Refund metrics (docs/contract.md section 5), plus the backlog by age and the calendar-unknown
path: an observer of the engine's changes."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence
from datetime import date
from typing import Any

from prometheus_client import Counter, Gauge

from services.engine.domain import Survey
from services.engine.metrics import Backlog
from services.engine.windows import Contribution
from services.taxrefund.lifecycle import CATEGORIES, Refund, RefundContext, local_date
from services.taxrefund.settings import TaxrefundSettings
from services.workdays import CalendarUnknown, CalendarWatch

AGE_BUCKETS = ((2, "0-2"), (5, "3-5"), (10, "6-10"), (20, "11-20"), (10**9, "21+"))

ISSUED = Counter(
    "tradepulse_taxrefund_issued_total",
    "Refunds issued, by whether a normal refund met its category's limit (flagged: not normal).",
    ["mgmt_category", "within_limit"],
)
OPEN_AGE = Gauge(
    "tradepulse_taxrefund_open_age_refunds",
    "Open accepted refunds by age in working days (to the newest event time), for backlog graphs.",
    ["mgmt_category", "age_workdays"],
)
CALENDAR_UNKNOWN = Gauge(
    "tradepulse_taxrefund_calendar_unknown_refunds",
    "Issued refunds whose processing time needs a year the working-day calendar lacks.",
)
TARGET_AVERAGE = Gauge(
    "tradepulse_taxrefund_target_average_workdays",
    "Average processing-time targets the alerts compare against (from the service's settings).",
    ["scope"],
)


def age_label(workdays: int) -> str:
    return next(label for limit, label in AGE_BUCKETS if workdays <= limit)


class RefundMetrics(Backlog):
    def __init__(self, settings: TaxrefundSettings, context: RefundContext) -> None:
        super().__init__("taxrefund", "refund", "mgmt_category", CATEGORIES,
                         "Refunds declared or accepted, not yet issued or rejected")  # fmt: skip
        TARGET_AVERAGE.labels(scope="categories_1_2").set(settings.target_avg_wd_categories_1_2)
        TARGET_AVERAGE.labels(scope="overall").set(settings.target_avg_wd_overall)
        self.context = context
        self.calendar = CalendarWatch(context.calendar, "refunds", CALENDAR_UNKNOWN)

    def changed(self, kind: str, before: Any, after: Any, added: Sequence[Contribution]) -> None:
        assert isinstance(after, Refund)
        for c in added:
            if c.indicator != "taxrefund.processing_time":
                continue
            if "flagged" in after.milestones:
                within = "flagged"
            elif (category := after.category) is not None and category in self.context.limits:
                within = str(c.value <= self.context.limits[category]).lower()
            else:
                within = "unknown"
            ISSUED.labels(mgmt_category=after.group, within_limit=within).inc()

    def housekeeping(self, kind: str, survey: Survey) -> None:
        """The backlog by age (from open refunds counted by acceptance date), and the calendar:
        refunds waiting for a year of it, how far it reaches, a changed year file read again (the
        parked refunds are measured at the next pass)."""
        self.calendar.housekeeping(survey.tallies, survey.newest_event_s)
        today = local_date(max(survey.newest_event_s, 0.0))
        ages: Tally[tuple[str, str]] = Tally()
        for tally, n in survey.tallies.items():
            if tally[0] == "accepted":
                _, category, accepted = tally
                try:
                    age = self.context.calendar.workdays_between(date.fromisoformat(accepted), today)
                except CalendarUnknown:
                    continue
                ages[(category, age_label(max(age, 0)))] += n
        for category in CATEGORIES:
            for _, label in AGE_BUCKETS:
                OPEN_AGE.labels(mgmt_category=category, age_workdays=label).set(ages[(category, label)])
