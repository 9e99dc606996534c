"""The China working-day calendar: adjusted weekend working days, the Spring Festival, a second
source, and years without data that are never guessed."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import holidays
import pytest

from services.workdays import CalendarUnknown, WorkdayCalendar

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
