"""The export refund service, declared: time-to-refund in China working days against the 5-day
(3-day for categories I and II) commitment. The fold is in lifecycle.py."""

from __future__ import annotations

from typing import Final

from services.engine.domain import Domain, by_subject
from services.engine.watch import WatchRule
from services.taxrefund.events import CATALOG
from services.taxrefund.lifecycle import INDICATORS, Refund, RefundContext, calendar_resolves
from services.taxrefund.metrics import RefundMetrics
from services.taxrefund.settings import TaxrefundSettings
from services.workdays import WorkdaySettings


def context(settings: TaxrefundSettings) -> RefundContext:
    return RefundContext(WorkdaySettings().calendar(), dict(settings.limits_wd))


def observer(settings: TaxrefundSettings) -> RefundMetrics:
    return RefundMetrics(settings, context(settings))


def _categories_1_2(refund: Refund) -> bool:
    return refund.category in (1, 2)


def _other_categories(refund: Refund) -> bool:
    return refund.category not in (1, 2)


WD: Final = "working_days"
# Refunds within 5 working days on average, 3 for categories I and II (the 2025 measures): a refund
# still not issued on the working day after its commitment has missed it. The other stages have no
# published commitment: their defaults are the operator's (TRADEPULSE_TAXREFUND_WATCH_LIMITS).
WATCH = (
    WatchRule("refund_acceptance", ("declared",), ("accepted", "rejected"), 1, 2, WD,
              description="refunds declared and not yet accepted"),
    WatchRule("refund_issue_categories_1_2", ("accepted",), ("issued", "rejected"), 2, 3, WD, _categories_1_2,
              description="refunds of category I and II exporters accepted and not yet issued"),
    WatchRule("refund_issue", ("accepted",), ("issued", "rejected"), 4, 5, WD, _other_categories,
              description="other refunds accepted and not yet issued"),
    WatchRule("refund_credit", ("issued",), ("credited",), 1, 2, WD,
              description="refunds issued by the treasury and not yet on the exporter's account"),
)  # fmt: skip


DOMAIN = Domain(
    name="taxrefund",
    catalog=CATALOG,
    kinds={"refund": Refund},
    route=by_subject("refund"),
    indicators=INDICATORS,
    settings=TaxrefundSettings,
    # refunds take days to weeks and are flagged for months
    defaults={
        "grace_s": 86400.0,
        "out_of_orderness_s": 3600.0,
        "case_expiry_s": 180 * 86400.0,
        "window_retention_s": 180 * 86400.0,
        "watch_idle_max_s": 86400.0,  # a night or a weekend without refund events still moves the watch
    },
    port=6062,
    context=context,
    observer=observer,
    resolves=calendar_resolves,
    contributor="taxpayer_uscc",
    watch=WATCH,
)
