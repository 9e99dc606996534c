"""Memory one open CBEC order takes, for `tradepulse bench cbec`."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["bytes_per_open_order"]


def bytes_per_open_order(orders: int = 20_000) -> float:
    """Memory one open CBEC order takes in the tracker (state, index entries, its aggregates'
    share), measured with tracemalloc over ``orders`` orders that have a list but no release."""
    import tracemalloc

    import orjson

    from services.cbec.simulator import simulate
    from services.cbec.tracker import OrderTracker
    from services.common.codec import decode
    from services.common.state import StateStore

    class _Null:
        def put(self, partition: int, kind: str, name: str, value: bytes) -> None: ...
        def delete(self, partition: int, kind: str, name: str) -> None: ...
        def items(self, partition: int, kind: str) -> Any:
            return iter(())

        def owns(self, partition: int) -> bool:
            return True

        async def flush(self) -> None: ...

    store: StateStore = _Null()
    events = simulate(cases=orders, seed=3, start_s=time.time() - 86400, span_s=86400)
    open_events = [e for e in events if not (e["type"].endswith("status") and e["data"]["status"] != 120)]
    decoded = [decode(orjson.dumps(e), [], topic="cbec.events.v1") for e in open_events]
    tracker = OrderTracker(store=store, partitions=1)
    tracker.state(0)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for ev in decoded:
        tracker.on_event(0, ev)
    tracker.stage({0})
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return round(used / max(1, len(tracker.states[0].cases)), 1)
