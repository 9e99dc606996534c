"""Stage two: partials replace (never add), revisions grow, windows become final by watermark,
keys of one series meet on one partition, and the indicator gauges mirror the records."""

from __future__ import annotations

from datetime import datetime

import orjson
from prometheus_client import REGISTRY

from services.contract.records import IndicatorWindow
from services.engine.aggregations import Durations
from services.engine.merge import Merger, StageTwo, stage_two_partition
from services.engine.metrics import IndicatorGauges
from services.engine.state import MemoryStore
from services.engine.windows import Contribution, IndicatorSpec, WindowKey

SPECS = {
    "t.d": IndicatorSpec("t.d", "seconds", "duration", ("d",), grace_s=600, labels={"d": frozenset({"a"})})
}
START = int(datetime.fromisoformat("2025-03-01T08:00:00+08:00").timestamp())
KEY = WindowKey("t.d", "PT1H", START, ())
END = START + 3600


def _agg(*seconds: float) -> Durations:
    agg = Durations()
    for s in seconds:
        agg.add(Durations.prepare(Contribution("t.d", 0.0, (), s)), 1)
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
    first = StageTwo(store, SPECS)
    bundle = {"src": 2, "wm": END, "aggs": {KEY.text: _agg(5, 7).to_json()}}
    first.on_partials(0, orjson.dumps(bundle, option=orjson.OPT_NON_STR_KEYS))
    (before,) = first.due()
    again = StageTwo(store, SPECS)
    again.merger(0).partial(KEY, 3, _agg(9))
    (after,) = again.due()
    assert (before.record.count, before.record.revision) == (2, 1)
    assert (after.record.count, after.record.revision) == (3, 2)


def test_every_window_of_a_series_is_merged_on_one_partition() -> None:
    series = {
        stage_two_partition(WindowKey("t.d", "PT1H", START + h * 3600, (("d", "a"),)), 8) for h in range(48)
    }
    assert len(series) == 1


def _sample(labels: dict[str, str]) -> float | None:
    return REGISTRY.get_sample_value("tradepulse_indicator_t_d_seconds", labels)


def _record(key: WindowKey, count: int, final: bool) -> IndicatorWindow:
    m = Merger(SPECS)
    m.partial(key, 0, _agg(*([10.0] * count)))
    ((_, merged),) = m.due()
    merged.final = final
    return m.record(key, merged)


def test_gauges_show_the_latest_and_the_latest_final_window_of_each_series() -> None:
    gauges = IndicatorGauges(SPECS)
    hour = (("d", "a"),)
    gauges.published(0, WindowKey("t.d", "PT1H", START, hour), _record(KEY, 3, final=True))
    gauges.published(0, WindowKey("t.d", "PT1H", START + 3600, hour), _record(KEY, 5, final=False))
    gauges.published(0, WindowKey("t.d", "PT1H", START - 3600, hour), _record(KEY, 7, final=True))  # older
    labels = {"window": "PT1H", "stat": "count", "d": "a"}
    assert _sample({**labels, "phase": "current"}) == 5
    assert _sample({**labels, "phase": "final"}) == 3
    assert _sample({**labels, "phase": "final", "stat": "window_start"}) == START
    gauges.forget({0})
    assert _sample({**labels, "phase": "current"}) is None


def test_a_series_outside_the_closed_label_sets_is_not_mirrored() -> None:
    gauges = IndicatorGauges(SPECS)
    gauges.published(1, WindowKey("t.d", "P1D", START, (("d", "unheard-of"),)), _record(KEY, 2, final=False))
    assert _sample({"window": "P1D", "phase": "current", "stat": "count", "d": "unheard-of"}) is None
    gauges.published(1, WindowKey("t.d", "P1D", START, ()), _record(KEY, 2, final=False))
    assert _sample({"window": "P1D", "phase": "current", "stat": "count", "d": "all"}) == 2
