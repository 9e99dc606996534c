"""The refund metrics of contract section 5, plus backlog by age and the calendar-unknown path."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CATEGORIES = ("1", "2", "3", "4", "unknown")
AGE_BUCKETS = ((2, "0-2"), (5, "3-5"), (10, "6-10"), (20, "11-20"), (10**9, "21+"))

PROCESSING_WORKDAYS = Histogram(
    "tradepulse_taxrefund_processing_workdays",
    "Working days from acceptance to treasury issue, when first known.",
    ["mgmt_category"],
    buckets=(1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 45, 60, 90),
)
ISSUED = Counter(
    "tradepulse_taxrefund_issued_total",
    "Refunds issued, by whether a normal refund met its category's limit (flagged: not normal).",
    ["mgmt_category", "within_limit"],
)
OPEN_REFUNDS = Gauge(
    "tradepulse_taxrefund_open_refunds",
    "Refunds declared or accepted, not yet issued or rejected.",
    ["mgmt_category"],
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
CASES_EXPIRED = Counter(
    "tradepulse_taxrefund_cases_expired_total",
    "Refunds dropped unfinished after TRADEPULSE_TAXREFUND_CASE_EXPIRY_S without events.",
    ["mgmt_category"],
)


def age_label(workdays: int) -> str:
    return next(label for limit, label in AGE_BUCKETS if workdays <= limit)


TARGET_AVERAGE = Gauge(
    "tradepulse_taxrefund_target_average_workdays",
    "Average processing-time targets the alerts compare against (from the service's settings).",
    ["scope"],
)
