"""Memory one open CBEC order takes, for `tradepulse bench cbec`."""

from __future__ import annotations

import time

__all__ = ["bytes_per_open_order"]


def bytes_per_open_order(orders: int = 20_000) -> float:
    """Memory one open CBEC order takes in the engine (case, entry, its aggregates' share), measured
    with tracemalloc over ``orders`` orders that have a list but no release."""
    import tracemalloc

    import orjson

    from services.cbec.domain import DOMAIN
    from services.cbec.simulator import simulate
    from services.contract.codec import decode
    from services.engine.cases import CaseEngine
    from services.engine.domain import Observer
    from services.engine.state import MemoryStore

    events = simulate(cases=orders, seed=3, start_s=time.time() - 86400, span_s=86400)
    open_events = [e for e in events if not (e["type"].endswith("status") and e["data"]["status"] != 120)]
    decoded = [decode(orjson.dumps(e), [], catalog=DOMAIN.catalog) for e in open_events]
    store = MemoryStore()
    engine = CaseEngine(DOMAIN, settings=DOMAIN.settings(), context=None, store=store, observer=Observer())
    engine.state(0)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for ev in decoded:
        routed = DOMAIN.route(ev)
        if routed is not None:
            engine.apply_event(0, *routed, ev)
    engine.take_changes()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return round(used / max(1, len(engine.states[0].tables["order"])), 1)
