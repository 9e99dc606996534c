"""Customs metrics (docs/contract.md section 5): an observer of the engine's changes.

The histograms observe each measure once, when it is first known (processing time): operational
views. The indicator values in event time are the ``tradepulse_indicator_customs_*`` gauges.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from services.customs.lifecycle import CREDIT_CLASSES, CUSTOMS_CODES, STAGES, TRANSPORT_MODES, Declaration
from services.customs.settings import CustomsSettings
from services.engine.metrics import Backlog, label_or_other
from services.engine.windows import Contribution

RELEASE_BUCKETS_S = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 172800, 345600, 604800)
STAGE_BUCKETS_S = (1, 10, 60, 300, 900, 3600, 7200, 14400, 43200, 86400, 172800, 345600, 604800)

RELEASE_SECONDS = Histogram(
    "tradepulse_customs_release_seconds",
    "Release time of declarations (arrival or lodging to release), when first known.",
    ["ie_flag", "customs_code", "transport_mode"],
    buckets=RELEASE_BUCKETS_S,
)
STAGE_SECONDS = Histogram(
    "tradepulse_customs_stage_seconds",
    "Duration of each clearance stage (WCO TRS), when first known.",
    ["stage", "ie_flag"],
    buckets=STAGE_BUCKETS_S,
)
RISK_DECISIONS = Counter(
    "tradepulse_customs_risk_decisions_total",
    "First risk decision of each declaration, by channel.",
    ["ie_flag", "credit_class", "channel"],
)
OPEN_DECLARATIONS = Gauge(
    "tradepulse_customs_open_declarations",
    "Declarations lodged and neither released nor rejected, on this worker's partitions.",
    ["ie_flag"],
)
CASES_EXPIRED = Counter(
    "tradepulse_customs_cases_expired_total",
    "Declarations dropped unfinished after TRADEPULSE_CUSTOMS_CASE_EXPIRY_S without events.",
    ["ie_flag"],
)
RELEASE_P90_THRESHOLD = Gauge(
    "tradepulse_customs_release_p90_threshold_seconds",
    "The release-time p90 the alert compares against (TRADEPULSE_CUSTOMS_RELEASE_P90_THRESHOLD_S).",
)


@lru_cache(maxsize=4096)
def _release(ie_flag: str, customs_code: str, transport_mode: str) -> Any:
    return RELEASE_SECONDS.labels(
        ie_flag=ie_flag,
        customs_code=label_or_other(customs_code, CUSTOMS_CODES),
        transport_mode=label_or_other(transport_mode, TRANSPORT_MODES),
    )


@lru_cache(maxsize=256)
def _stage(stage: str, ie_flag: str) -> Any:
    return STAGE_SECONDS.labels(stage=label_or_other(stage, frozenset(STAGES)), ie_flag=ie_flag)


@lru_cache(maxsize=256)
def _risk(ie_flag: str, credit_class: str, channel: str) -> Any:
    return RISK_DECISIONS.labels(
        ie_flag=ie_flag, credit_class=label_or_other(credit_class, CREDIT_CLASSES), channel=channel
    )


class CustomsMetrics(Backlog):
    def __init__(self, settings: CustomsSettings) -> None:
        super().__init__("declaration", OPEN_DECLARATIONS, CASES_EXPIRED, ("I", "E"))
        RELEASE_P90_THRESHOLD.set(settings.release_p90_threshold_s)

    def changed(self, kind: str, before: Any, after: Any, added: Sequence[Contribution]) -> None:
        if not isinstance(after, Declaration):
            return
        for c in added:
            dims = dict(c.dims)
            if c.indicator == "customs.release_time":
                _release(dims["ie_flag"], dims["customs_code"], dims["transport_mode"]).observe(c.value)
            elif c.indicator == "customs.stage_time":
                _stage(dims["stage"], dims["ie_flag"]).observe(c.value)
        if after.channel is not before.channel and not before.channel.known:
            lodging = after.lodging.value
            credit = lodging.credit_class if lodging else "unknown"
            _risk(after.ie_flag, credit, after.channel.value or "unknown").inc()
