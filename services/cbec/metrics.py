"""CBEC metrics (docs/contract.md section 5), plus list exceptions and returns by supervision mode:
an observer of the engine's changes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter

from services.cbec.lifecycle import MODES, Order, exception_of, match_result
from services.engine.domain import EngineSettings
from services.engine.metrics import Backlog
from services.engine.windows import Contribution

DOC_MATCH = Counter(
    "tradepulse_cbec_doc_match_total",
    "Three-document match at the list's first customs decision, by result (match or the reason).",
    ["supervision_mode", "result"],
)
LIST_EXCEPTIONS = Counter(
    "tradepulse_cbec_list_exceptions_total",
    "Lists rejected (100), inspected (500), detained (501-599) or sent back (700).",
    ["supervision_mode", "exception"],
)
RETURNS = Counter(
    "tradepulse_cbec_returns_total", "Return requests, by supervision mode.", ["supervision_mode"]
)


class CbecMetrics(Backlog):
    def __init__(self, settings: EngineSettings) -> None:
        super().__init__("cbec", "order", "supervision_mode", MODES,
                         "Orders with a list not yet in a final state")  # fmt: skip

    def changed(self, kind: str, before: Any, after: Any, added: Sequence[Contribution]) -> None:
        assert isinstance(after, Order)
        mode = after.group
        for c in added:
            if c.indicator == "cbec.doc_match_rate":
                DOC_MATCH.labels(supervision_mode=mode, result=match_result(after) or "unknown").inc()
        for name in after.milestones.keys() - before.milestones.keys():
            if name.startswith("s") and (exception := exception_of(int(name[1:]))) is not None:
                LIST_EXCEPTIONS.labels(supervision_mode=mode, exception=exception).inc()
            elif name == "return":
                RETURNS.labels(supervision_mode=mode).inc()
