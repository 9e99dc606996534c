"""The China working-day calendar: adjusted weekend working days, the Spring Festival, a second
source, and years without data that are never guessed."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import holidays
import pytest
from prometheus_client import REGISTRY, Gauge

from services.cli import main
from services.workdays import CalendarError, CalendarUnknown, CalendarWatch, WorkdayCalendar, load_yaml

CAL = WorkdayCalendar()


def test_adjusted_weekend_working_days_of_2025_are_working_days() -> None:
    assert date(2025, 9, 28).weekday() == 6  # a Sunday ...
    assert CAL.is_workday(date(2025, 9, 28))  # ... made a working day
    assert date(2025, 10, 11).weekday() == 5  # a Saturday ...
    assert CAL.is_workday(date(2025, 10, 11))
    assert not CAL.is_workday(date(2025, 10, 8))  # National Day / Mid-Autumn holiday


def test_spring_festival_2026() -> None:
    festival = [date(2026, 2, 15) + timedelta(days=i) for i in range(9)]  # 15-23 February
    assert not any(CAL.is_workday(d) for d in festival)
    assert CAL.is_workday(date(2026, 2, 14))  # Saturday made a working day
    assert CAL.is_workday(date(2026, 2, 28))  # Saturday made a working day
    assert CAL.workdays_between(date(2026, 2, 13), date(2026, 2, 24)) == 2  # the 14th and the 24th


def test_counting_excludes_the_start_and_includes_the_end() -> None:
    monday = date(2025, 3, 3)
    assert CAL.workdays_between(monday, monday) == 0
    assert CAL.workdays_between(monday, monday + timedelta(days=1)) == 1
    assert CAL.workdays_between(monday, monday + timedelta(days=7)) == 5
    assert CAL.workdays_between(monday + timedelta(days=7), monday) == -5


def _second_source(year: int) -> tuple[set[date], set[date]]:
    """Days off and adjusted working days as the `holidays` package records them."""
    days_off, working = set(), set()
    for d, name in holidays.country_holidays("CN", years=year, language="en_US").items():
        days_off.add(d)
        if m := re.search(r"substituted from (\d\d)/(\d\d)/(\d{4})", name):
            working.add(date(int(m[3]), int(m[1]), int(m[2])))
    return days_off, working


@pytest.mark.parametrize("year", [2023, 2024, 2025, 2026])
def test_every_day_agrees_with_a_second_source(year: int) -> None:
    days_off, working = _second_source(year)
    d = date(year, 1, 1)
    disagree = []
    while d.year == year:
        other = d in working or (d.weekday() < 5 and d not in days_off)
        if other != CAL.is_workday(d):
            disagree.append(d)
        d += timedelta(days=1)
    assert disagree == []


def test_a_year_without_data_is_never_guessed() -> None:
    with pytest.raises(CalendarUnknown, match="2090") as info:
        CAL.is_workday(date(2090, 3, 1))
    assert info.value.year == 2090


def test_refund_accepted_in_december_and_issued_in_january_of_a_year_without_data(tmp_path: Path) -> None:
    """The year after the last one the calendar knows (whichever that is when the test runs)."""
    year = max(CAL.years) + 1
    accepted, issued = date(year - 1, 12, 28), date(year, 1, 5)
    with pytest.raises(CalendarUnknown, match=str(year)):
        CAL.workdays_between(accepted, issued)
    yaml_file = tmp_path / "workdays.yaml"
    yaml_file.write_text(f"{year}:\n  holidays: [{year}-01-01]\n  workdays: []\n")
    extended = WorkdayCalendar.with_file(yaml_file)
    december = sum(CAL.is_workday(date(year - 1, 12, d)) for d in (29, 30, 31))
    january = sum(date(year, 1, d).weekday() < 5 for d in (2, 3, 4, 5))  # 1 Jan: the file's holiday
    assert extended.workdays_between(accepted, issued) == december + january


def test_bad_yaml_names_the_file_and_the_year(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("2027:\n  holidays: [2028-01-01]\n")
    with pytest.raises(ValueError, match=r"bad.yaml: 2027: 2028-01-01 is not in 2027"):
        WorkdayCalendar.with_file(bad)


EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "calendar" / "workdays.example.yaml"


def test_the_documented_example_year_is_the_official_2026_arrangement() -> None:
    """The example operators copy (docs/calendar.md) says what the State Council's notice says."""
    assert load_yaml(EXAMPLE) == {2026: CAL.years[2026]}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "2027:\n  holidays: [2027-10-01]\n  workdays: [2027-10-01]\n",
            "2027: 2027-10-01 is both a holiday and a working day",
        ),
        (
            "2027:\n  workdays: [2027-10-11]\n",
            "2027: working day 2027-10-11 is a Monday; only Saturdays and Sundays",
        ),
        ("2027:\n  holiday: [2027-10-01]\n", "2027: unknown key 'holiday'"),
        ("2027:\n  holidays: [2027-13-01]\n", "cannot read the working-day calendar: month must be in 1..12"),
        ("2027:\n  holidays: [13 March]\n", "2027: '13 March' is not a date"),
        ("- 2027\n", "expected a mapping of years"),
    ],
)
def test_a_year_file_is_refused_in_one_line_naming_the_file_the_year_and_the_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(CalendarError) as info:
        load_yaml(bad)
    assert str(info.value).startswith(f"{bad}: ")
    assert problem in str(info.value)
    assert "\n" not in str(info.value)


def test_the_calendar_reaches_the_end_of_the_last_year_without_a_gap(tmp_path: Path) -> None:
    last = max(CAL.years)
    assert CAL.last_date() == date(last, 12, 31)
    later = tmp_path / "later.yaml"
    later.write_text(f"{last + 2}:\n  holidays: []\n")  # a year added with a gap before it
    assert WorkdayCalendar.with_file(later).last_date() == date(last, 12, 31)
    later.write_text(f"{last + 1}:\n  holidays: []\n{last + 2}:\n  holidays: []\n")
    assert WorkdayCalendar.with_file(later).last_date() == date(last + 2, 12, 31)


def test_a_changed_file_is_read_again_and_a_bad_one_refused_keeping_the_years(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    year = max(CAL.years) + 1
    path = tmp_path / "workdays.yaml"
    path.write_text(f"{year - 1}:\n  holidays: []\n")
    calendar = WorkdayCalendar.with_file(path)
    assert not calendar.covers(year)
    assert calendar.refresh() is False  # unchanged
    path.write_text(f"{year - 1}:\n  holidays: []\n{year}:\n  holidays: [{year}-01-01]\n")
    assert calendar.refresh() is True
    assert calendar.covers(year)
    assert calendar.resolves(f"calendar:{year}")
    path.write_text(f"{year}:\n  workdays: [{year}-01-01, {year}-01-01]\n  holidays: [{year}-01-01]\n")
    assert calendar.refresh() is False
    assert calendar.covers(year)  # still counting with what it had
    assert any("refused" in r.getMessage() for r in caplog.records)


def test_the_check_command_prints_each_year_and_refuses_a_bad_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["calendar", "check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "2026: 248 working days" in out
    assert "2026-02-15..2026-02-23 (9)" in out  # the Spring Festival
    assert "weekend working days: 2026-01-04, 2026-02-14" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("2027:\n  workdays: [2027-10-11]\n")
    assert main(["calendar", "check", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith(f"tradepulse calendar: {bad}: 2027: working day 2027-10-11 is a Monday")
    assert main(["calendar", "check", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read the working-day calendar" in capsys.readouterr().err


def test_the_watch_counts_parked_cases_names_each_year_once_and_says_how_far_the_calendar_reaches(
    caplog: pytest.LogCaptureFixture,
) -> None:
    waiting = Gauge("test_waiting_cases", "parked")
    watch = CalendarWatch(CAL, "refunds", waiting)
    last = CAL.last_date()
    assert last is not None
    newest = datetime(last.year, 12, 1, 12, 0, tzinfo=timezone(timedelta(hours=8))).timestamp()
    tallies: dict[tuple[str, ...], int] = {("parked", f"calendar:{last.year + 1}"): 3, ("open", "1"): 7}
    for _ in range(2):
        watch.housekeeping(tallies, newest)
    assert REGISTRY.get_sample_value("test_waiting_cases") == 3
    assert REGISTRY.get_sample_value("tradepulse_workdays_calendar_days_left") == 30.5
    named = [r for r in caplog.records if "calendar unknown" in r.getMessage()]
    assert len(named) == 1
    assert getattr(named[0], "year", None) == last.year + 1
