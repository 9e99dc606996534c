"""Export VAT refunds: pure state and measures (docs/contract.md sections 2.2 and 4).

A refund keeps the earliest time of every milestone and the attributes of the earliest
``refund.declared``, so any order or repetition of its events gives the same refund. Processing
time is counted in China working days from the acceptance date to the issue date (Asia/Shanghai
dates, A < d <= B); a date beyond the calendar's data leaves the measure unknown ("calendar
unknown") instead of guessing, until the year is added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.contract.envelope import Event
from services.engine.domain import Case
from services.engine.registers import EarliestWins, Milestones
from services.engine.windows import Contribution, IndicatorSpec, Observed
from services.taxrefund.events import RefundDeclared
from services.workdays import CalendarUnknown, WorkdayCalendar, local_date

__all__ = [
    "DEFAULT_LIMITS_WD",
    "INDICATORS",
    "Declared",
    "Refund",
    "RefundContext",
    "calendar_resolves",
    "local_date",
    "processing_workdays",
]

DEFAULT_LIMITS_WD: dict[int, int] = {1: 5, 2: 10, 3: 15, 4: 20}
UNKNOWN = "unknown"
CATEGORIES = frozenset({"1", "2", "3", "4", UNKNOWN})

INDICATORS = (
    IndicatorSpec("taxrefund.processing_time", "working_days", "duration", ("mgmt_category",),
                  grace_s=86400.0, labels={"mgmt_category": CATEGORIES}, milestone="issued",
                  histogram=Observed("tradepulse_taxrefund_processing_workdays",
                                     "Working days from acceptance to treasury issue, when first known.",
                                     (1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 45, 60, 90))),
    IndicatorSpec("taxrefund.within_limit", "ratio", "ratio", ("mgmt_category",),
                  grace_s=86400.0, labels={"mgmt_category": CATEGORIES}, milestone="issued"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RefundContext:
    """What the measures depend on besides the refund: the calendar and the limits per category."""

    calendar: WorkdayCalendar
    limits: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class Declared:
    category: int
    entry_ids: tuple[str, ...] = ()
    taxpayer_uscc: str | None = None  # the contributor disclosure control protects (contract 8)


@dataclass(frozen=True, slots=True)
class Refund(Case):
    """What is known of one ``refund_id``."""

    refund_id: str
    milestones: Milestones = Milestones()
    declared: EarliestWins[Declared] = EarliestWins()

    def apply(self, event: Event) -> Refund:
        data, milestone = event.data, event.milestone
        if isinstance(data, RefundDeclared):
            return self.noted(
                milestone,
                event,
                declared=Declared(data.mgmt_category, tuple(data.entry_ids), data.taxpayer_uscc),
            )
        return self.noted(milestone, event)

    @property
    def category(self) -> int | None:
        return self.declared.value.category if self.declared.value else None

    @property
    def group(self) -> str:
        return str(self.category) if self.category else UNKNOWN

    @property
    def open(self) -> bool:
        t = self.milestones
        return ("declared" in t or "accepted" in t) and "issued" not in t and "rejected" not in t

    @property
    def completed(self) -> bool:
        t = self.milestones
        return "rejected" in t or ("issued" in t and "credited" in t)

    def measures(self, context: RefundContext) -> Sequence[Contribution]:
        """Processing time, and (normal refunds of a known category) whether it met the limit."""
        workdays = processing_workdays(self, context.calendar)
        if workdays is None or isinstance(workdays, CalendarUnknown) or workdays < 0:
            return []
        issued = self.milestones["issued"]
        dims = (("mgmt_category", self.group),)
        out = [Contribution("taxrefund.processing_time", issued, dims, float(workdays))]
        category = self.category
        if "flagged" not in self.milestones and category is not None and category in context.limits:
            within = 1.0 if workdays <= context.limits[category] else 0.0
            out.append(Contribution("taxrefund.within_limit", issued, dims, within))
        return out

    def tallies(self, context: RefundContext) -> Sequence[tuple[str, ...]]:
        """An open, accepted refund counts under its acceptance date (the backlog by age)."""
        if self.open and "accepted" in self.milestones:
            return (("accepted", self.group, local_date(self.milestones["accepted"]).isoformat()),)
        return ()

    def parked(self, context: RefundContext) -> Sequence[str]:
        """An issued refund whose processing time needs a year the calendar lacks waits for it."""
        gap = processing_workdays(self, context.calendar)
        return (gap.token,) if isinstance(gap, CalendarUnknown) else ()

    def attributes(self) -> Mapping[str, object]:
        declared = self.declared.value
        return {"mgmt_category": self.category, "entry_ids": list(declared.entry_ids) if declared else [],
                "taxpayer_uscc": declared.taxpayer_uscc if declared else None}  # fmt: skip


def calendar_resolves(context: RefundContext, token: str) -> bool:
    """Whether the calendar now has the year a parked refund waits for."""
    return context.calendar.resolves(token)


def processing_workdays(refund: Refund, calendar: WorkdayCalendar) -> int | CalendarUnknown | None:
    """Working days from acceptance to issue; None before both are known; :class:`CalendarUnknown`
    (naming the year) when a date lies beyond the calendar's data."""
    t = refund.milestones
    if "accepted" not in t or "issued" not in t:
        return None
    try:
        return calendar.workdays_between(local_date(t["accepted"]), local_date(t["issued"]))
    except CalendarUnknown as exc:
        return exc
