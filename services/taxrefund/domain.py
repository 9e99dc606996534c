"""The export refund service, declared: time-to-refund in China working days against the 5-day
(3-day for categories I and II) commitment. The fold is in lifecycle.py."""

from __future__ import annotations

from services.engine.domain import Domain, by_subject
from services.taxrefund.events import CATALOG
from services.taxrefund.lifecycle import INDICATORS, Refund, RefundContext, calendar_resolves
from services.taxrefund.metrics import RefundMetrics
from services.taxrefund.settings import TaxrefundSettings
from services.workdays import WorkdaySettings


def context(settings: TaxrefundSettings) -> RefundContext:
    return RefundContext(WorkdaySettings().calendar(), dict(settings.limits_wd))


def observer(settings: TaxrefundSettings) -> RefundMetrics:
    return RefundMetrics(settings, context(settings))


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
    },
    port=6062,
    context=context,
    observer=observer,
    resolves=calendar_resolves,
    contributor="taxpayer_uscc",
)
