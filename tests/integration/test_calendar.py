"""The working-day calendar on the real broker: refunds of a year the calendar lacks wait, counted
and alerted on, nothing guessed; the year written into the file while the worker runs is picked
up, and the waiting refunds are then measured to the batch computation's working days. The
reach gauge says how many days the calendar has left."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from services.engine.windows import SHANGHAI
from services.taxrefund.simulator import simulate
from services.workdays import WorkdayCalendar
from tests.batch_taxrefund import batch
from tests.integration.domain import differences
from tests.integration.harness import StartWorker, eventually, latest, produce
from tests.integration.test_domains import REFUNDS

YEAR = 2003  # before the built-in data, so it stays unknown whatever data is installed
HOLIDAYS = [date(YEAR, 5, d) for d in range(1, 8)]  # a week off in May: this test's year, not a notice
WORKDAYS = [date(YEAR, 4, 26), date(YEAR, 4, 27)]  # the weekend before, made working days


def _records(events: list[dict[str, Any]]) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    structured = [("content-type", b"application/cloudevents+json")]
    return [(str(e["subject"]).encode(), orjson.dumps(e), structured) for e in events]


def _workdays(a: date, b: date) -> int:
    """The test year's working days, counted here without the service's code."""
    days = (a + timedelta(days=i) for i in range(1, (b - a).days + 1))
    return sum(d in WORKDAYS or (d.weekday() < 5 and d not in HOLIDAYS) for d in days)


async def test_refunds_of_an_unknown_year_wait_and_are_measured_once_the_year_is_added(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    year_file = tmp_path / "workdays.yaml"
    year_file.write_text("{}\n")
    worker = start_worker(
        "taxrefund", **REFUNDS.fast, TRADEPULSE_WORKDAYS_FILE=str(year_file),
        TRADEPULSE_TAXREFUND_HOUSEKEEPING_INTERVAL_S="1",
    )  # fmt: skip
    start = datetime(YEAR, 4, 1, tzinfo=SHANGHAI).timestamp()
    events = simulate(cases=40, seed=3, start_s=start, span_s=20 * 86400)
    events = [e for e in events if e["time"].startswith(str(YEAR))]
    await produce(kafka_bootstrap, prefix + REFUNDS.topic, _records(events))
    assert await eventually(
        lambda: worker.metric("tradepulse_events_processed_total") >= len(events), timeout_s=60
    )
    assert await eventually(
        lambda: worker.metric("tradepulse_taxrefund_calendar_unknown_refunds") > 0, timeout_s=30
    )
    parked = worker.metric("tradepulse_taxrefund_calendar_unknown_refunds")
    assert worker.metric("tradepulse_taxrefund_processing_workdays_count") == 0  # nothing guessed
    holidays = ", ".join(str(d) for d in HOLIDAYS)
    workdays = ", ".join(str(d) for d in WORKDAYS)
    year_file.write_text(f"{YEAR}:\n  holidays: [{holidays}]\n  workdays: [{workdays}]\n")
    assert await eventually(
        lambda: worker.metric("tradepulse_taxrefund_calendar_unknown_refunds") == 0, timeout_s=60
    )
    assert worker.metric("tradepulse_taxrefund_processing_workdays_count") == parked
    await REFUNDS.settle(kafka_bootstrap, prefix)
    topic = f"{prefix}indicators.taxrefund.v1"
    assert await differences(batch(events, _workdays), lambda: latest(kafka_bootstrap, topic)) == []


async def test_the_calendar_says_how_many_days_it_has_left_after_the_newest_event(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    """Within 45 days of the calendar's end the alert's expression holds; a file with the next year
    lifts it (the promtool tests cover the alert's timing)."""
    year_file = tmp_path / "workdays.yaml"
    year_file.write_text("{}\n")
    worker = start_worker(
        "taxrefund", **REFUNDS.fast, TRADEPULSE_WORKDAYS_FILE=str(year_file),
        TRADEPULSE_TAXREFUND_HOUSEKEEPING_INTERVAL_S="1",
        TRADEPULSE_MAX_CLOCK_SKEW_S=str(400 * 86400),  # events at the end of the data, whenever that is
    )  # fmt: skip
    last = max(WorkdayCalendar().years)
    newest = datetime(last, 12, 5, 10, tzinfo=SHANGHAI)  # 26 days before the end of the data
    events = simulate(cases=5, seed=4, start_s=newest.timestamp() - 10 * 86400, span_s=86400)
    events = [e for e in events if datetime.fromisoformat(e["time"]) <= newest]
    await produce(kafka_bootstrap, prefix + REFUNDS.topic, _records(events))

    def days_left() -> float:
        return worker.metric("tradepulse_workdays_calendar_days_left")

    assert await eventually(lambda: 0 < days_left() < 45, timeout_s=60), days_left()
    year_file.write_text(f"{last + 1}:\n  holidays: [{last + 1}-01-01]\n")
    assert await eventually(lambda: days_left() > 45, timeout_s=60), days_left()
