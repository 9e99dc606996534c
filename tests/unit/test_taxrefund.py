"""Refund lifecycle: working-day processing time, the SLA ratio for normal refunds, any order
and duplication, and the calendar-unknown path."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from services.engine.registers import EarliestWins, Milestones
from services.taxrefund.domain import DOMAIN
from services.taxrefund.events import CATALOG
from services.taxrefund.lifecycle import Declared, Refund, RefundContext, processing_workdays
from services.taxrefund.simulator import simulate
from services.workdays import CalendarUnknown, WorkdayCalendar
from tests.batch_customs import compare
from tests.batch_taxrefund import batch
from tests.folds import decoded, fold
from tests.wiring import Wiring

START = datetime.fromisoformat("2025-09-01T00:00:00+08:00").timestamp()
CAL = WorkdayCalendar()
CONTEXT = RefundContext(CAL, {1: 5})


def _refund(**times: str) -> Refund:
    milestones = Milestones({name: datetime.fromisoformat(text).timestamp() for name, text in times.items()})
    return Refund("RF1", milestones, EarliestWins(Declared(1), 0.0, "d"))


def test_processing_time_counts_working_days_across_national_day() -> None:
    # accepted Tue 30 Sep 2025; 1-8 Oct off; Sat 11 Oct is a working day
    r = _refund(accepted="2025-09-30T10:00:00+08:00", issued="2025-10-11T10:00:00+08:00")
    time, within = r.measures(CONTEXT)
    assert time.value == 3.0  # 9 Oct, 10 Oct, 11 Oct
    assert within.value == 1.0


def test_flagged_refunds_have_a_processing_time_but_are_not_normal() -> None:
    r = _refund(accepted="2025-03-03T10:00:00+08:00", flagged="2025-03-03T12:00:00+08:00",
                issued="2025-03-20T10:00:00+08:00")  # fmt: skip
    assert [c.indicator for c in r.measures(CONTEXT)] == ["taxrefund.processing_time"]


def test_same_day_is_zero_working_days() -> None:
    r = _refund(accepted="2025-03-03T09:00:00+08:00", issued="2025-03-03T17:00:00+08:00")
    time, _ = r.measures(CONTEXT)
    assert time.value == 0.0


def test_a_year_without_calendar_data_parks_the_refund_and_a_yaml_file_unparks_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """2003 is before the built-in calendar's first year (a year after its last would do too, but
    that year changes as data is added; this one does not)."""
    r = _refund(accepted="2003-03-10T10:00:00+08:00", issued="2003-03-17T10:00:00+08:00")
    assert not CAL.covers(2003)
    gap = processing_workdays(r, CAL)
    assert isinstance(gap, CalendarUnknown)
    assert gap.year == 2003
    assert r.measures(CONTEXT) == []
    # the pipeline parks it: counted, the year named once with the fix, no measure guessed
    events = _events_of_a_refund("2003-03-07T10:00:00+08:00", accepted="2003-03-10T10:00:00+08:00",
                                 issued="2003-03-17T10:00:00+08:00")  # fmt: skip
    parked = Wiring(DOMAIN, partitions=1, context=CONTEXT)
    latest = parked.run(events)
    assert not any(k.startswith("taxrefund.processing_time") and v["count"] for k, v in latest.items())
    for _ in range(2):
        asyncio.run(parked.tick(parked.pipeline.housekeeping))
    assert REGISTRY.get_sample_value("tradepulse_taxrefund_calendar_unknown_refunds") == 1
    warned = [rec for rec in caplog.records if "calendar unknown" in rec.getMessage()]
    assert len(warned) == 1
    assert getattr(warned[0], "year", None) == 2003
    assert "TRADEPULSE_WORKDAYS_FILE" in getattr(warned[0], "fix", "")
    # restarted with the year added: housekeeping measures the parked refund, and only it
    yaml_file = tmp_path / "cal.yaml"
    yaml_file.write_text("2003:\n  holidays: [2003-01-01]\n")
    context = RefundContext(WorkdayCalendar.with_file(yaml_file), {1: 5})
    restarted = Wiring(DOMAIN, partitions=1, store=parked.store, context=context)
    asyncio.run(restarted.tick(restarted.pipeline.housekeeping))
    asyncio.run(restarted.settle())
    latest = asyncio.run(restarted.publish())
    day = "taxrefund.processing_time|P1D|2003-03-17T00:00:00+08:00|"
    rollup = latest[day]
    assert (rollup["count"], rollup["mean"]) == (1, 5.0)
    assert REGISTRY.get_sample_value("tradepulse_taxrefund_calendar_unknown_refunds") == 0


def _events_of_a_refund(declared: str, **times: str) -> list[dict[str, object]]:
    """A category 1 refund's events as CloudEvent dicts: declared at ``declared``, then ``times``."""
    data = {"refund_id": "RF1", "taxpayer_uscc": "91440101MA5C000001", "mgmt_category": 1,
            "tax_office": "14401060000", "claimed_amount": {"amount": "100.00", "currency": "CNY"},
            "entry_ids": ["514120030000000001"]}  # fmt: skip
    out: list[dict[str, object]] = [_refund_event("declared", declared, data)]
    amount = {"amount": "100.00", "currency": "CNY"}
    extra = {"approved": {"approved_amount": amount}, "issued": {"amount": amount}}
    for name, at in times.items():
        out.append(_refund_event(name, at, {"refund_id": "RF1", **extra.get(name, {})}))
    return out


def _refund_event(name: str, at: str, data: dict[str, object]) -> dict[str, object]:
    return {"specversion": "1.0", "id": f"RF1-{name}", "source": "/etax/14401060000",
            "type": f"taxrefund.refund.{name}", "time": at, "subject": "RF1", "data": data}  # fmt: skip


@given(st.integers(0, 10_000), st.randoms(use_true_random=False))
@settings(max_examples=20, deadline=None)
def test_pipeline_in_any_order_equals_the_batch_computation(seed: int, rnd: random.Random) -> None:
    events = simulate(cases=15, seed=seed, start_s=START, span_s=10 * 86400)
    shuffled = events + [rnd.choice(events) for _ in range(3)]
    rnd.shuffle(shuffled)
    got = Wiring(DOMAIN).run(shuffled)
    assert compare(batch(events), got) == []


def test_decoded_refund_events_apply_in_any_order() -> None:
    events = decoded(simulate(cases=1, seed=3, start_s=START, span_s=86400), CATALOG)
    forward = fold(Refund(events[0].subject), events)
    backward = fold(Refund(events[0].subject), reversed(events))
    assert forward == backward
