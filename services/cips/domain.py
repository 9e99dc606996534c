"""The CIPS service, declared: payment speed against the FSB hour and settled value. The fold is in
lifecycle.py."""

from __future__ import annotations

from services.cips.events import CATALOG
from services.cips.lifecycle import INDICATORS, Payment
from services.cips.metrics import CipsMetrics
from services.engine.domain import Domain, by_subject
from services.engine.watch import WatchRule

# The FSB target: 75 % of cross-border payments credited within an hour; warn at 50 minutes.
WATCH = (
    WatchRule("credit_within_1h", ("initiated",), ("credited", "rejected", "returned"), 3000.0, 3600.0,
              description="payments initiated and not yet credited"),
)  # fmt: skip

DOMAIN = Domain(
    name="cips",
    catalog=CATALOG,
    kinds={"payment": Payment},
    route=by_subject("payment"),
    indicators=INDICATORS,
    port=6063,
    observer=CipsMetrics,
    contributor="debtor_agent",
    watch=WATCH,
)
