"""China's official working-day calendar: statutory holidays removed, adjusted weekend working
days (调休) added. Data: the ``chinese-calendar`` package, plus years an operator adds from a YAML
file without a code change. A date outside the data is never guessed: :class:`CalendarUnknown`
names the year, and the caller parks the case until data exists.

Working days from date A to date B = the number of working days d with A < d <= B
(docs/contract.md section 4).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import yaml
from pydantic import FilePath
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CalendarUnknown", "WorkdayCalendar", "WorkdaySettings", "YearData", "local_date"]

_CHINA = timezone(timedelta(hours=8))  # China keeps one time zone, without daylight saving


def local_date(at_s: float) -> date:
    """The China (Asia/Shanghai) calendar date of an instant: working days count dates."""
    return datetime.fromtimestamp(at_s, _CHINA).date()


class WorkdaySettings(BaseSettings):
    """Where extra years of the calendar come from (``TRADEPULSE_WORKDAYS_FILE``); read by every
    service that counts working days."""

    model_config = SettingsConfigDict(env_prefix="TRADEPULSE_", extra="ignore", frozen=True)

    workdays_file: FilePath | None = None

    def calendar(self) -> WorkdayCalendar:
        return WorkdayCalendar.with_file(self.workdays_file)


class CalendarUnknown(LookupError):
    """No calendar data for a year; the message names the year and how to add it."""

    def __init__(self, year: int) -> None:
        super().__init__(
            f"no China working-day calendar for {year}: add its holidays and adjusted working days "
            f"to the YAML file of TRADEPULSE_WORKDAYS_FILE (or upgrade chinese-calendar)"
        )
        self.year = year

    @property
    def token(self) -> str:
        """What a case whose measure needs the year waits for (services.engine: parked cases)."""
        return f"calendar:{self.year}"


@dataclass(frozen=True, slots=True)
class YearData:
    """One year's official days off (any weekday) and adjusted weekend working days."""

    holidays: frozenset[date]
    workdays: frozenset[date]


def _builtin() -> dict[int, YearData]:
    from chinese_calendar import constants

    years: dict[int, tuple[set[date], set[date]]] = {}
    for d in constants.holidays:
        years.setdefault(d.year, (set(), set()))[0].add(d)
    for d in constants.workdays:
        years.setdefault(d.year, (set(), set()))[1].add(d)
    return {y: YearData(frozenset(h), frozenset(w)) for y, (h, w) in years.items()}


def _dates(values: Iterable[object], where: str) -> frozenset[date]:
    out = set()
    for v in values:
        if isinstance(v, date):
            out.add(v)
        else:
            try:
                out.add(date.fromisoformat(str(v)))
            except ValueError:
                msg = f"{where}: {v!r} is not a date (YYYY-MM-DD)"
                raise ValueError(msg) from None
    return frozenset(out)


@dataclass(slots=True)
class WorkdayCalendar:
    """Working days of the years with data; every other year raises :class:`CalendarUnknown`."""

    years: dict[int, YearData] = field(default_factory=_builtin)

    @classmethod
    def with_file(cls, path: Path | None) -> WorkdayCalendar:
        """The built-in data, with years from ``path`` added (a year there replaces the built-in)."""
        calendar = cls()
        if path is not None:
            calendar.add_years(load_yaml(path))
        return calendar

    def add_years(self, years: Mapping[int, YearData]) -> None:
        self.years.update(years)

    def covers(self, year: int) -> bool:
        return year in self.years

    def resolves(self, token: str) -> bool:
        """Whether the calendar now has the year of a :attr:`CalendarUnknown.token`."""
        kind, _, year = token.partition(":")
        return kind == "calendar" and year.isdigit() and self.covers(int(year))

    def is_workday(self, d: date) -> bool:
        data = self.years.get(d.year)
        if data is None:
            raise CalendarUnknown(d.year)
        if d in data.workdays:
            return True
        return d.weekday() < 5 and d not in data.holidays

    def workdays_between(self, start: date, end: date) -> int:
        """Working days d with start < d <= end; 0 for the same day, negative if end < start."""
        if end < start:
            return -self.workdays_between(end, start)
        count, d = 0, start
        while d < end:
            d += timedelta(days=1)
            count += self.is_workday(d)
        return count


def load_yaml(path: Path) -> dict[int, YearData]:
    """Read ``{year: {holidays: [dates], workdays: [dates]}}``; errors name the file and the year."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        msg = f"{path}: cannot read the working-day calendar: {exc}"
        raise ValueError(msg) from None
    if not isinstance(doc, dict):
        msg = f"{path}: expected a mapping of years"
        raise ValueError(msg)
    out = {}
    for year, entry in doc.items():
        where = f"{path}: {year}"
        if not isinstance(year, int) or not isinstance(entry, dict):
            msg = f"{where}: expected `YEAR: {{holidays: [...], workdays: [...]}}`"
            raise ValueError(msg)
        data = YearData(_dates(entry.get("holidays", []), where), _dates(entry.get("workdays", []), where))
        strays = [d for d in data.holidays | data.workdays if d.year != year]
        if strays:
            msg = f"{where}: {min(strays)} is not in {year}"
            raise ValueError(msg)
        out[year] = data
    return out
