"""Refund lifecycle: working-day processing time, the SLA ratio for normal refunds, any order
and duplication, and the calendar-unknown path."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import decode
from services.common.workdays import WorkdayCalendar
from services.taxrefund.lifecycle import INDICATORS, Refund, contributions
from services.taxrefund.simulator import simulate
from services.taxrefund.tracker import RefundTracker
from tests.batch_customs import compare
from tests.batch_taxrefund import batch
from tests.memory_store import MemoryStore
from tests.pipeline_memory import run

START = datetime.fromisoformat("2025-09-01T00:00:00+08:00").timestamp()
CAL = WorkdayCalendar()


def _refund(**times: str) -> Refund:
    r = Refund("RF1", category=1)
    for name, text in times.items():
        r.times[name] = datetime.fromisoformat(text).timestamp()
    return r


def test_processing_time_counts_working_days_across_national_day() -> None:
    # accepted Tue 30 Sep 2025; 1-8 Oct off; Sat 11 Oct is a working day
    r = _refund(accepted="2025-09-30T10:00:00+08:00", issued="2025-10-11T10:00:00+08:00")
    (time, within), _ = contributions(r, CAL, {1: 5})
    assert time.value == 3.0  # 9 Oct, 10 Oct, 11 Oct
    assert within.value == 1.0


def test_flagged_refunds_have_a_processing_time_but_are_not_normal() -> None:
    r = _refund(accepted="2025-03-03T10:00:00+08:00", flagged="2025-03-03T12:00:00+08:00",
                issued="2025-03-20T10:00:00+08:00")  # fmt: skip
    cs, _ = contributions(r, CAL, {1: 5})
    assert [c.indicator for c in cs] == ["taxrefund.processing_time"]


def test_same_day_is_zero_working_days() -> None:
    r = _refund(accepted="2025-03-03T09:00:00+08:00", issued="2025-03-03T17:00:00+08:00")
    (time, _), _ = contributions(r, CAL, {1: 5})
    assert time.value == 0.0


def test_a_year_without_calendar_data_parks_the_refund_and_a_yaml_file_unparks_it(tmp_path: Path) -> None:
    r = _refund(accepted="2026-12-28T10:00:00+08:00", issued="2027-01-05T10:00:00+08:00")
    if CAL.covers(2027):
        return
    cs, year = contributions(r, CAL, {1: 5})
    assert (cs, year) == ([], 2027)
    store = MemoryStore()
    tracker = RefundTracker(store=store, partitions=1)
    st = tracker.state(0)
    st.cases[r.key] = r
    r.parked_year = 2027
    store.put(0, "refund", r.key, orjson.dumps(r.to_json()))
    yaml_file = tmp_path / "cal.yaml"
    yaml_file.write_text("2027:\n  holidays: [2027-01-01]\n")
    restarted = RefundTracker(store=store, partitions=1, calendar=WorkdayCalendar.with_file(yaml_file))
    state = restarted.state(0)
    assert state.cases[r.key].parked_year is None
    assert next(c.value for c, _ in state.cases[r.key].applied) == 5.0
    assert state.partials.changed, "the unparked refund's windows are published again"


@given(st.integers(0, 10_000), st.randoms(use_true_random=False))
@settings(max_examples=20, deadline=None)
def test_pipeline_in_any_order_equals_the_batch_computation(seed: int, rnd: random.Random) -> None:
    events = simulate(cases=15, seed=seed, start_s=START, span_s=10 * 86400)
    shuffled = events + [rnd.choice(events) for _ in range(3)]
    rnd.shuffle(shuffled)
    got = run(shuffled, service="taxrefund", tracker=RefundTracker, indicators=INDICATORS)
    assert compare(batch(events), got) == []


def test_decoded_refund_events_apply_in_any_order() -> None:
    events = simulate(cases=1, seed=3, start_s=START, span_s=86400)
    decoded = [decode(orjson.dumps(e), [], topic="taxrefund.events.v1") for e in events]
    forward, backward = Refund(decoded[0].subject), Refund(decoded[0].subject)
    for ev in decoded:
        forward.apply(ev.type, ev.data, ev.time.timestamp(), ev.id)
    for ev in reversed(decoded):
        backward.apply(ev.type, ev.data, ev.time.timestamp(), ev.id)
    assert forward == backward
