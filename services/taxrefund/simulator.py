"""Realistic export refund lifecycles (pure), from docs/simulation.md (modelling assumptions
and anchors): categories I 10 %, II 45 %, III 40 %, IV 5 %; working days from acceptance to issue by
category (I/II median 2, p90 3; III 8/15; IV 15/20); 7 % flagged doubtful (+10 to +60 working
days); 2 % rejected; issue to credit 0-2 working days; filings peak in the first half of each month.
Time is advanced in China working days, so holidays stretch lifecycles as they do in reality.
"""

from __future__ import annotations

import math
import random
from datetime import date, datetime, time, timedelta
from typing import Any

from services.engine.windows import SHANGHAI
from services.simulation import CaseEvents, shipment
from services.workdays import CalendarUnknown, WorkdayCalendar

__all__ = ["lifecycle", "simulate"]

CATEGORIES = [(1, 0.10), (2, 0.45), (3, 0.40), (4, 0.05)]
PROCESSING_WD = {1: (2, 3), 2: (2, 3), 3: (8, 15), 4: (15, 20)}  # median, p90
FLAGGED, REJECTED = 0.07, 0.02
CLAIMS_PLANNED = 0.8  # refunds for export shipments the customs simulator declares
OFFICES = ["14401060000", "14401120000", "14401150000", "14401830000"]


def _lognormal_int(rng: random.Random, median: float, p90: float) -> int:
    sigma = math.log(p90 / median) / 1.2816
    return max(0, min(round(rng.lognormvariate(math.log(median), sigma)), int(4 * p90)))


def _is_workday(calendar: WorkdayCalendar, d: date) -> bool:
    try:
        return calendar.is_workday(d)
    except CalendarUnknown:
        return d.weekday() < 5  # the simulator may approximate beyond the data; the service never does


def add_workdays(calendar: WorkdayCalendar, d: date, n: int) -> date:
    """The date ``n`` working days after ``d`` (``d`` itself when n is 0)."""
    while n > 0:
        d += timedelta(days=1)
        n -= _is_workday(calendar, d)
    return d


def _at(rng: random.Random, d: date) -> float:
    moment = datetime.combine(d, time(9, 0), SHANGHAI) + timedelta(seconds=rng.uniform(0, 8 * 3600))
    return moment.timestamp()


def lifecycle(
    rng: random.Random,
    serial: int,
    filed: date,
    calendar: WorkdayCalendar,
    entries: list[str] | None = None,
) -> list[dict[str, Any]]:
    """One refund's events (CloudEvent dicts) in event-time order; ``entries``: the export entries
    it claims for (drawn when not given)."""
    category = rng.choices([c for c, _ in CATEGORIES], [w for _, w in CATEGORIES])[0]
    refund = f"RF{filed:%Y%m}{serial:08d}"
    office = rng.choice(OFFICES)
    events = CaseEvents(refund, f"/etax/{office}", refund_id=refund)
    emit = events.emit

    while not _is_workday(calendar, filed):
        filed += timedelta(days=1)
    declared = _at(rng, filed)
    amount = f"{rng.lognormvariate(math.log(80_000), 1.0):.2f}"
    drawn = [f"5141{filed.year}0{rng.randrange(10**9):09d}" for _ in range(rng.randint(1, 4))]
    entries = entries or drawn
    emit("taxrefund.refund.declared", declared, taxpayer_uscc=f"91440101MA5C{serial % 10**6:06d}",
         mgmt_category=category, tax_office=office, claimed_amount={"amount": amount, "currency": "CNY"},
         entry_ids=entries)  # fmt: skip
    accepted_day = add_workdays(calendar, filed, rng.choice([0, 0, 1]))
    accepted = max(_at(rng, accepted_day), declared + 60)
    emit("taxrefund.refund.accepted", accepted)
    days = _lognormal_int(rng, *PROCESSING_WD[category])
    if rng.random() < FLAGGED:
        emit("taxrefund.refund.flagged", accepted + rng.uniform(3600, 86400), doubt_codes=["D03"])
        days += rng.randint(10, 60)
    if rng.random() < REJECTED:
        emit(
            "taxrefund.refund.rejected",
            _at(rng, add_workdays(calendar, accepted_day, days)),
            reason_code="T21",
        )
        return events
    issued_day = add_workdays(calendar, accepted_day, days)
    issued = max(_at(rng, issued_day), accepted + 60)
    emit("taxrefund.refund.approved", issued - rng.uniform(60, 3600),
         approved_amount={"amount": amount, "currency": "CNY"})  # fmt: skip
    emit("taxrefund.refund.issued", issued, amount={"amount": amount, "currency": "CNY"})
    credited = max(_at(rng, add_workdays(calendar, issued_day, rng.randint(0, 2))), issued + 60)
    emit("taxrefund.refund.credited", credited, amount={"amount": amount, "currency": "CNY"})
    events.sort(key=lambda e: e["time"])
    return events


def simulate(*, cases: int, seed: int, start_s: float, span_s: float) -> list[dict[str, Any]]:
    """Every event of ``cases`` refunds filed over ``span_s`` (more in each month's first half).
    Most claim export shipments of the shared plan (services/simulation.py), in plan order, filed
    weeks after the last of them was declared."""
    rng = random.Random(seed)
    calendar = WorkdayCalendar()
    events: list[dict[str, Any]] = []
    planned = 0
    for _ in range(cases):
        at = start_s + rng.uniform(0, span_s)
        day = datetime.fromtimestamp(at, SHANGHAI).date()
        if day.day > 15 and rng.random() < 0.5:  # monthly filing peak
            day = day.replace(day=rng.randint(1, 15))
        serial, entries = rng.randrange(10**8), None  # random serials: seeds differ
        if rng.random() < CLAIMS_PLANNED:
            shipments = [shipment(seed, planned + i, start_s, span_s) for i in range(rng.randint(1, 4))]
            planned += len(shipments)
            after = max(s.lodged_s for s in shipments) + rng.uniform(7 * 86400, 60 * 86400)
            day, entries = datetime.fromtimestamp(after, SHANGHAI).date(), [s.entry_id for s in shipments]
        events.extend(lifecycle(rng, serial, day, calendar, entries))
    events.sort(key=lambda e: datetime.fromisoformat(e["time"]).timestamp())
    return events
