"""Stage one of the refund pipeline: refunds per input partition on the shared case tracker."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from services.common.cases import CaseTracker
from services.common.events import Event
from services.common.events.taxrefund import RefundRef
from services.common.windows import Contribution, with_late
from services.common.workdays import CalendarUnknown, WorkdayCalendar
from services.taxrefund import metrics
from services.taxrefund.lifecycle import DEFAULT_LIMITS_WD, Refund, contributions, local_date

log = logging.getLogger(__name__)


class RefundTracker(CaseTracker[Refund]):
    kind = "refund"

    def __init__(
        self,
        *,
        calendar: WorkdayCalendar | None = None,
        limits: Mapping[int, int] | None = None,
        **kwargs: Any,
    ) -> None:
        from services.taxrefund.lifecycle import INDICATORS

        kwargs.setdefault("specs", INDICATORS)
        kwargs.setdefault("window_retention_s", 180 * 86400.0)  # flagged refunds take months
        kwargs.setdefault("case_expiry_s", 180 * 86400.0)
        super().__init__(**kwargs)
        self.calendar = calendar or WorkdayCalendar()
        self.limits = dict(limits or DEFAULT_LIMITS_WD)
        self._warned_years: set[int] = set()

    def load_case(self, doc: dict[str, Any]) -> Refund:
        r = Refund.from_json(doc)
        cs, year = contributions(r, self.calendar, self.limits)
        r.applied = with_late(cs, doc.get("L", {}))
        r.parked_year = year
        return r

    def contributions(self, case: Refund) -> list[Contribution]:
        cs, year = contributions(case, self.calendar, self.limits)
        if year is not None and year not in self._warned_years:
            self._warned_years.add(year)
            log.warning(
                "calendar unknown: refunds issued or accepted in %s wait for its working-day data", year,
                extra={"year": year, "fix": "set TRADEPULSE_WORKDAYS_FILE to a YAML with that year"},
            )  # fmt: skip
        case.parked_year = year
        return cs

    def on_new_contribution(self, c: Contribution, case: Refund) -> None:
        if c.indicator != "taxrefund.processing_time":
            return
        category = case.group
        metrics.PROCESSING_WORKDAYS.labels(mgmt_category=category).observe(c.value)
        if "flagged" in case.times:
            within = "flagged"
        elif case.category in self.limits:
            within = str(c.value <= self.limits[case.category]).lower()
        else:
            within = "unknown"
        metrics.ISSUED.labels(mgmt_category=category, within_limit=within).inc()

    def attributes(self, case: Refund) -> dict[str, Any]:
        return {"mgmt_category": case.category, "entry_ids": case.entry_ids,
                "calendar_unknown_year": case.parked_year}  # fmt: skip

    def on_expired(self, case: Refund) -> None:
        metrics.CASES_EXPIRED.labels(mgmt_category=case.group).inc()

    def set_gauge(self, open_by_group: Counter[str]) -> None:
        for category in metrics.CATEGORIES:
            metrics.OPEN_REFUNDS.labels(mgmt_category=category).set(open_by_group[category])

    def new_case(self, key: str) -> Refund:
        return Refund(key)

    def on_event(self, p: int, event: Event) -> None:
        if isinstance(event.data, RefundRef):
            self.apply_event(p, event)

    def expire(self) -> None:
        """Besides expiry: the backlog by age and the calendar-unknown count, for the gauges."""
        super().expire()
        ages: Counter[tuple[str, str]] = Counter()
        parked = 0
        for st in self.states.values():
            today = local_date(max(st.partials.max_event_s, 0.0))
            for r in st.cases.values():
                parked += r.parked_year is not None
                if r.open and "accepted" in r.times:
                    try:
                        age = self.calendar.workdays_between(local_date(r.times["accepted"]), today)
                    except CalendarUnknown:
                        continue
                    ages[(r.group, metrics.age_label(max(age, 0)))] += 1
        for category in metrics.CATEGORIES:
            for _, label in metrics.AGE_BUCKETS:
                metrics.OPEN_AGE.labels(mgmt_category=category, age_workdays=label).set(
                    ages[(category, label)]
                )
        metrics.CALENDAR_UNKNOWN.set(parked)
