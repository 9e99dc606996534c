"""Stage two: partials replace (never add), revisions grow, windows become final by watermark."""

from __future__ import annotations

from datetime import datetime

import orjson

from services.common.indicators import Merger, StageTwo
from services.common.windows import Agg, Contribution, IndicatorSpec
from tests.memory_store import MemoryStore

SPECS = {"t.d": IndicatorSpec("t.d", "seconds", "duration", ("d",), grace_s=600)}
KEY = "t.d|PT1H|2025-03-01T08:00:00+08:00|"
END = datetime.fromisoformat("2025-03-01T09:00:00+08:00").timestamp()


def _agg(*seconds: float) -> Agg:
    agg = Agg()
    for s in seconds:
        agg.add(Contribution("t.d", 0.0, (), s), "duration")
    return agg


def test_a_new_partial_from_a_source_replaces_its_previous_one() -> None:
    m = Merger(SPECS)
    m.partial(KEY, 0, _agg(10))
    m.partial(KEY, 0, _agg(10, 20))  # the same source, later: its whole state, not a delta
    m.partial(KEY, 1, _agg(30))
    ((key, merged),) = m.due()
    record = m.record(key, merged)
    assert record.count == 3
    assert record.mean == 20.0
    assert record.revision == 1
    assert record.final is False


def test_unchanged_keys_are_not_republished_and_revisions_grow() -> None:
    m = Merger(SPECS)
    m.partial(KEY, 0, _agg(10))
    assert len(m.due()) == 1
    assert m.due() == []
    m.partial(KEY, 0, _agg(12))
    ((_, merged),) = m.due()
    assert merged.revision == 2


def test_window_becomes_final_when_the_slowest_source_passes_end_plus_grace() -> None:
    now = [0.0]
    m = Merger(SPECS, idle_after_s=60, clock=lambda: now[0])
    m.partial(KEY, 0, _agg(10))
    m.due()
    m.watermark(0, END + 601)
    m.watermark(1, END)  # source 1 lags: not final yet
    assert m.due() == []
    m.watermark(1, END + 600)
    ((_, merged),) = m.due()
    assert merged.final is True


def test_an_idle_source_stops_holding_windows_open() -> None:
    now = [0.0]
    m = Merger(SPECS, idle_after_s=60, clock=lambda: now[0])
    m.partial(KEY, 0, _agg(10))
    m.due()
    m.watermark(1, END - 3600)
    now[0] = 30.0
    m.watermark(0, END + 700)
    assert m.due() == []
    now[0] = 100.0  # source 1 silent for 100 s
    m.watermark(0, END + 800)
    ((_, merged),) = m.due()
    assert merged.final


def test_stage_two_state_survives_a_restart_through_the_store() -> None:
    store = MemoryStore()
    first = StageTwo(store, SPECS, "test")
    bundle = {"src": 2, "wm": END, "aggs": {KEY: _agg(5, 7).to_json()}}
    first.on_partials(0, orjson.dumps(bundle))
    ((_, value, _),) = first.due()
    again = StageTwo(store, SPECS, "test")
    again.merger(0).partial(KEY, 3, _agg(9))
    ((_, value2, _),) = again.due()
    before, after = orjson.loads(value)["data"], orjson.loads(value2)["data"]
    assert (before["count"], before["revision"]) == (2, 1)
    assert (after["count"], after["revision"]) == (3, 2)
