"""Customs metrics (docs/contract.md section 5) that no indicator spec describes: an observer of
the engine's changes. The duration histograms are declared with the indicators (lifecycle.py) and
kept by the engine; the indicator values in event time are the ``tradepulse_indicator_customs_*``
gauges.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from prometheus_client import Counter, Gauge

from services.customs.lifecycle import CREDIT_CLASSES, Declaration
from services.customs.settings import CustomsSettings
from services.engine.metrics import Backlog, label_or_other
from services.engine.windows import Contribution

RISK_DECISIONS = Counter(
    "tradepulse_customs_risk_decisions_total",
    "First risk decision of each declaration, by channel.",
    ["ie_flag", "credit_class", "channel"],
)
RELEASE_P90_THRESHOLD = Gauge(
    "tradepulse_customs_release_p90_threshold_seconds",
    "The release-time p90 the alert compares against (TRADEPULSE_CUSTOMS_RELEASE_P90_THRESHOLD_S).",
)


@lru_cache(maxsize=256)
def _risk(ie_flag: str, credit_class: str, channel: str) -> Any:
    return RISK_DECISIONS.labels(
        ie_flag=ie_flag, credit_class=label_or_other(credit_class, CREDIT_CLASSES), channel=channel
    )


class CustomsMetrics(Backlog):
    def __init__(self, settings: CustomsSettings) -> None:
        super().__init__("customs", "declaration", "ie_flag", ("I", "E"),
                         "Declarations lodged and neither released nor rejected")  # fmt: skip
        RELEASE_P90_THRESHOLD.set(settings.release_p90_threshold_s)

    def changed(self, kind: str, before: Any, after: Any, added: Sequence[Contribution]) -> None:
        if not isinstance(after, Declaration):
            return
        if after.channel is not before.channel and not before.channel.known:
            lodging = after.lodging.value
            credit = lodging.credit_class if lodging else "unknown"
            _risk(after.ie_flag, credit, after.channel.value or "unknown").inc()
