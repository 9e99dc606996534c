"""CIPS metrics (docs/contract.md section 5), plus payments by final status, the open backlog and
the settlement leg: an observer of the engine's changes."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from services.cips.lifecycle import MSG_TYPES, Payment
from services.engine.domain import EngineSettings, Survey
from services.engine.metrics import Backlog
from services.engine.windows import Contribution

SETTLEMENT_SECONDS = Histogram(
    "tradepulse_cips_settlement_seconds", "The CIPS leg: submitted to settled.", ["msg_type"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
)  # fmt: skip
SETTLED_CNY = Counter(
    "tradepulse_cips_settled_cny_total", "Value of payments settled, in CNY.", ["msg_type", "purpose"]
)
PAYMENTS = Counter(
    "tradepulse_cips_payments_total", "Payments reaching a final status.", ["msg_type", "status"]
)
OLDEST_OPEN = Gauge(
    "tradepulse_cips_oldest_open_payment_seconds",
    "Age of the oldest open payment, to the newest event time seen.",
)


class CipsMetrics(Backlog):
    def __init__(self, settings: EngineSettings) -> None:
        super().__init__("cips", "payment", "msg_type", MSG_TYPES,
                         "Payments initiated and not yet final")  # fmt: skip

    def changed(self, kind: str, before: Any, after: Any, added: Sequence[Contribution]) -> None:
        assert isinstance(after, Payment)
        for c in added:
            if c.indicator == "cips.settled_value":
                SETTLED_CNY.labels(msg_type=after.msg_type, purpose=after.purpose).inc(
                    float(Decimal(c.amount))
                )
        if before.outcome == "open" and after.outcome != "open":
            PAYMENTS.labels(msg_type=after.msg_type, status=after.outcome).inc()
        t, had = after.milestones, before.milestones
        if "submitted" in t and "settled" in t and not ("submitted" in had and "settled" in had):
            SETTLEMENT_SECONDS.labels(msg_type=after.msg_type).observe(
                max(0.0, t["settled"] - t["submitted"])
            )

    def housekeeping(self, kind: str, survey: Survey) -> None:
        since = survey.earliest.get("open")
        OLDEST_OPEN.set(max(0.0, survey.newest_event_s - since) if since is not None else 0.0)
