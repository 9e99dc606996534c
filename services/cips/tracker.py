"""Stage one of the CIPS pipeline: payments per input partition on the shared case tracker."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from services.cips import metrics
from services.cips.lifecycle import INDICATORS, Payment, contributions
from services.common.cases import CaseTracker
from services.common.events import Event
from services.common.events.cips import PaymentRef
from services.common.windows import Contribution

FINAL = frozenset({"credited", "rejected", "returned"})  # what makes Payment.status not "open"


class PaymentTracker(CaseTracker[Payment]):
    kind = "payment"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("specs", INDICATORS)
        super().__init__(**kwargs)

    def load_case(self, doc: dict[str, Any]) -> Payment:
        return Payment.from_json(doc)

    def contributions(self, case: Payment) -> list[Contribution]:
        return contributions(case)

    def on_new_contribution(self, c: Contribution, case: Payment) -> None:
        if c.indicator == "cips.credit_time":
            metrics.CREDIT_SECONDS.labels(msg_type=case.group).observe(c.value)
        elif c.indicator == "cips.settled_value":
            metrics.SETTLED_CNY.labels(msg_type=case.group, purpose=case.purpose or "unknown").inc(
                float(Decimal(c.amount))
            )

    def attributes(self, case: Payment) -> dict[str, Any]:
        return {"msg_type": case.msg_type, "purpose": case.purpose, "amount": case.amount,
                "status": case.status, "linked_entry_ids": case.linked_entry_ids}  # fmt: skip

    def on_expired(self, case: Payment) -> None:
        metrics.CASES_EXPIRED.labels(msg_type=case.group).inc()

    def set_gauge(self, open_by_group: Counter[str]) -> None:
        for msg_type in metrics.MSG_TYPES:
            metrics.OPEN_PAYMENTS.labels(msg_type=msg_type).set(open_by_group[msg_type])

    def new_case(self, key: str) -> Payment:
        return Payment(key)

    def on_event(self, p: int, event: Event) -> None:
        if not isinstance(event.data, PaymentRef):
            return
        pay, had = self.apply_event(p, event)
        if not FINAL & had.keys() and pay.status != "open":
            metrics.PAYMENTS.labels(msg_type=pay.group, status=pay.status).inc()
        t = pay.times
        if "submitted" in t and "settled" in t and not ("submitted" in had and "settled" in had):
            metrics.SETTLEMENT_SECONDS.labels(msg_type=pay.group).observe(
                max(0.0, t["settled"] - t["submitted"])
            )

    def expire(self) -> None:
        super().expire()
        oldest = 0.0
        for st in self.states.values():
            for pay in st.cases.values():
                if pay.open:
                    oldest = max(oldest, st.partials.max_event_s - pay.times["initiated"])
        metrics.OLDEST_OPEN.set(oldest)
