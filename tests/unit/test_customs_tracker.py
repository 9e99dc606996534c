"""Stage one's housekeeping: unfinished cases expire into a counter, too-late changes are refused,
and a restart rebuilds the same aggregates from the stored cases."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest

from services.common.codec import decode
from services.common.events import Event
from services.customs import metrics
from services.customs.tracker import TooLate, Tracker
from tests.memory_store import MemoryStore

DAY = 86400.0
T0 = datetime.fromisoformat("2025-03-01T08:00:00+08:00").timestamp()


def _event(entry: str, type_: str, at_s: float, n: int, **data: object) -> Event:
    doc = {
        "specversion": "1.0", "id": f"{entry}-{n}", "source": "/t", "type": type_,
        "time": datetime.fromtimestamp(at_s).astimezone().isoformat(), "subject": entry,
        "data": {"entry_id": entry, **data},
    }  # fmt: skip
    return decode(orjson.dumps(doc), [], topic="customs.events.v1")


def _lodged(entry: str, at_s: float, n: int = 0) -> Event:
    return _event(
        entry, "customs.declaration.lodged", at_s, n, customs_code=entry[:4], ie_flag="E", trade_mode="0110",
        transport_mode="5", credit_class="general", declared_value={"amount": "1.00", "currency": "CNY"},
        consignee_uscc="91440101MA5C000001",
    )  # fmt: skip


def test_unfinished_cases_expire_into_a_counter() -> None:
    tracker = Tracker(store=MemoryStore(), partitions=1, case_expiry_s=90 * DAY)
    tracker.on_event(0, _lodged("514120250000000001", T0))
    before = metrics.CASES_EXPIRED.labels(ie_flag="E")._value.get()
    tracker.on_event(0, _lodged("514120250000000002", T0 + 91 * DAY))
    tracker.expire()
    assert "514120250000000001" not in tracker.states[0].cases
    assert "514120250000000002" in tracker.states[0].cases
    assert metrics.CASES_EXPIRED.labels(ie_flag="E")._value.get() == before + 1


def test_a_change_to_a_window_past_the_retention_is_refused_and_leaves_the_case_alone() -> None:
    tracker = Tracker(store=MemoryStore(), partitions=1, window_retention_s=7 * DAY)
    entry = "514120250000000003"
    tracker.on_event(0, _lodged(entry, T0))
    tracker.on_event(0, _lodged("514120250000000004", T0 + 30 * DAY))  # the watermark moves on
    with pytest.raises(TooLate):
        tracker.on_event(0, _event(entry, "customs.declaration.released", T0 + 600, 1))
    assert "released" not in tracker.states[0].cases[entry].times


def test_restart_rebuilds_the_same_aggregates_from_stored_cases() -> None:
    store = MemoryStore()
    live = Tracker(store=store, partitions=1)
    for n, entry in enumerate(("514120250000000005", "514120250000000006")):
        live.on_event(0, _lodged(entry, T0 + n))
        live.on_event(0, _event(entry, "customs.declaration.accepted", T0 + 60 + n, 1))
        live.on_event(0, _event(entry, "customs.declaration.released", T0 + 600 + n, 2))
    live.stage({0})
    restarted = Tracker(store=store, partitions=1)
    aggs = {k: v.to_json() for k, v in restarted.state(0).partials.aggs.items()}
    assert aggs == {k: v.to_json() for k, v in live.states[0].partials.aggs.items()}
    assert restarted.states[0].open_by == live.states[0].open_by
