"""The CIPS service, declared: payment speed against the FSB hour and settled value. The fold is in
lifecycle.py."""

from __future__ import annotations

from services.cips.events import CATALOG
from services.cips.lifecycle import INDICATORS, Payment
from services.cips.metrics import CipsMetrics
from services.engine.domain import Domain, by_subject

DOMAIN = Domain(
    name="cips",
    catalog=CATALOG,
    kinds={"payment": Payment},
    route=by_subject("payment"),
    indicators=INDICATORS,
    port=6063,
    observer=CipsMetrics,
    contributor="debtor_agent",
)
