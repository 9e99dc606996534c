"""The export cycle service, declared: release to cash, prepaid share, release to refund, across
customs, CIPS and the tax bureau. It reads their case topics, joins them by entry number (payments
and refunds tell the entries they name) and imports none of their code. The fold is in
lifecycle.py."""

from __future__ import annotations

from services.cycle.events import CATALOG, INPUTS
from services.cycle.lifecycle import INDICATORS, Credited, Entry, Issued, Payment, Refund, route
from services.cycle.metrics import CycleMetrics
from services.engine.domain import Domain, EngineSettings
from services.workdays import WorkdayCalendar, WorkdaySettings


def context(settings: EngineSettings) -> WorkdayCalendar:
    return WorkdaySettings().calendar()


def resolves(calendar: WorkdayCalendar, token: str) -> bool:
    return calendar.resolves(token)


DOMAIN = Domain(
    name="cycle",
    catalog=CATALOG,  # cases.customs.v1, with cases.cips.v1 and cases.taxrefund.v1 (inputs)
    inputs=INPUTS,
    derived=True,
    kinds={"entry": Entry, "payment": Payment, "refund": Refund},
    route=route,
    indicators=INDICATORS,
    # A cycle spans agencies and months (payment terms, refund filings): a window stays correctable
    # for half a year, and an entry whose cycle never completes is kept 400 days.
    defaults={
        "grace_s": 86400.0,
        "out_of_orderness_s": 3600.0,
        "window_retention_s": 180 * 86400.0,
        "case_expiry_s": 400 * 86400.0,
    },
    port=6065,
    messages=(Credited, Issued),
    context=context,
    observer=CycleMetrics,
    resolves=resolves,
)
