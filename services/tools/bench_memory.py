"""Memory one decoded case takes in the engine's cache (cases themselves live in the state store, on
disk): a CBEC order (`tradepulse bench cbec`) and an export entry of the cycle waiting for its cash
and refund (`tradepulse bench cycle-memory`). The worker sizes its cache of cases with it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.engine.domain import Domain

__all__ = ["bytes_per_open_entry", "bytes_per_open_order"]


def bytes_per_open_order(orders: int = 20_000) -> float:
    """Memory one open CBEC order takes in the engine (case, entry, its aggregates' share), measured
    with tracemalloc over ``orders`` orders that have a list but no release."""
    from services.cbec.domain import DOMAIN
    from services.cbec.simulator import simulate

    events = simulate(cases=orders, seed=3, start_s=time.time() - 86400, span_s=86400)
    open_events = [e for e in events if not (e["type"].endswith("status") and e["data"]["status"] != 120)]
    return _bytes_per_case(DOMAIN, open_events, "order")


def bytes_per_open_entry(entries: int = 20_000) -> float:
    """Memory one released export entry takes in the cycle's engine while it waits for its cash and
    refund (case, table entry, its share of the aggregates), measured with tracemalloc over
    ``entries`` entries built from customs case records, as the worker builds them."""
    from services.contract.envelope import cloud_event
    from services.contract.records import CASE_TYPE
    from services.cycle.domain import DOMAIN
    from services.engine.windows import SHANGHAI

    def iso(at_s: float) -> str:
        from datetime import datetime

        return datetime.fromtimestamp(at_s, SHANGHAI).isoformat(timespec="milliseconds")

    start = time.time() - 30 * 86400
    records = []
    for i in range(entries):
        entry, released = f"5165{2025}0{i:09d}", start + i * 60
        data = {"service": "customs", "case_id": entry, "status": "open",
                "milestones": {"lodged": iso(released - 3600), "released": iso(released)}, "measures": {},
                "attributes": {"ie_flag": "E", "customs_code": entry[:4]}, "revision": 3}  # fmt: skip
        records.append(
            cloud_event(f"{entry}|r3", "/tradepulse/customs", CASE_TYPE, iso(released), entry, data)
        )
    return _bytes_per_case(DOMAIN, records, "entry")


def _bytes_per_case(domain: Domain, events: list[dict[str, Any]], kind: str) -> float:
    """Memory the engine holds per case of ``kind`` after folding ``events`` (tracemalloc)."""
    import tracemalloc

    import orjson

    from services.contract.codec import decode
    from services.engine.cases import CaseEngine
    from services.engine.domain import Observer
    from services.engine.state import MemoryStore

    decoded = [decode(orjson.dumps(e), [], catalog=domain.catalog) for e in events]
    settings = domain.settings()
    engine = CaseEngine(domain, settings=settings, context=domain.context(settings), store=MemoryStore(),
                        observer=Observer())  # fmt: skip
    engine.state(0)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for ev in decoded:
        routed = domain.route(ev)
        if routed is not None:
            engine.apply_event(0, *routed, ev)
    engine.take_changes()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    cases = sum(1 for k, _ in engine.states[0].dirty if k == kind)
    return round(used / max(1, cases), 1)
