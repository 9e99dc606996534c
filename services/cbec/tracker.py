"""Stage one of the CBEC pipeline: orders per input partition on the shared case tracker."""

from __future__ import annotations

from collections import Counter
from typing import Any

from services.cbec import metrics
from services.cbec.lifecycle import INDICATORS, Order, contributions, exception_of, match_result
from services.common.cases import CaseTracker
from services.common.events import Event
from services.common.events.cbec import ListStatus, OrderRef, ReturnRequested
from services.common.windows import Contribution


class OrderTracker(CaseTracker[Order]):
    kind = "order"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("specs", INDICATORS)
        kwargs.setdefault("window_retention_s", 7 * 86400.0)
        kwargs.setdefault("case_expiry_s", 30 * 86400.0)
        super().__init__(**kwargs)

    def load_case(self, doc: dict[str, Any]) -> Order:
        return Order.from_json(doc)

    def contributions(self, case: Order) -> list[Contribution]:
        return contributions(case)

    def on_new_contribution(self, c: Contribution, case: Order) -> None:
        mode = case.group
        if c.indicator == "cbec.release_time":
            metrics.RELEASE_SECONDS.labels(supervision_mode=mode, ie_flag=case.ie_flag or "unknown").observe(
                c.value
            )
        elif c.indicator == "cbec.doc_match_rate":
            metrics.DOC_MATCH.labels(supervision_mode=mode, result=match_result(case) or "unknown").inc()

    def attributes(self, case: Order) -> dict[str, Any]:
        return {"supervision_mode": case.supervision_mode, "ie_flag": case.ie_flag,
                "goods_value": case.goods_value, "doc_match": match_result(case)}  # fmt: skip

    def on_expired(self, case: Order) -> None:
        metrics.CASES_EXPIRED.labels(supervision_mode=case.group).inc()

    def set_gauge(self, open_by_group: Counter[str]) -> None:
        for mode in metrics.MODES:
            metrics.OPEN_ORDERS.labels(supervision_mode=mode).set(open_by_group[mode])

    def new_case(self, key: str) -> Order:
        return Order(key)

    def on_event(self, p: int, event: Event) -> None:
        data = event.data
        if not isinstance(data, OrderRef):
            return
        order, seen = self.apply_event(p, event)
        if isinstance(data, ListStatus) and f"s{data.status}" not in seen:
            exception = exception_of(data.status)
            if exception is not None:
                metrics.LIST_EXCEPTIONS.labels(supervision_mode=order.group, exception=exception).inc()
        elif isinstance(data, ReturnRequested) and "return" not in seen:
            metrics.RETURNS.labels(supervision_mode=order.group).inc()
