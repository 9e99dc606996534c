"""China's official working-day calendar: statutory holidays removed, adjusted weekend working
days (调休) added. Data: the ``chinese-calendar`` package, plus years an operator adds from a YAML
file without a code change (docs/calendar.md). A date outside the data is never guessed:
:class:`CalendarUnknown` names the year, and the caller parks the case until data exists.

The State Council's General Office publishes next year's arrangement each autumn; until someone
adds it, every refund and export cycle reaching the new year waits. So the calendar says how far
it reaches (:meth:`WorkdayCalendar.last_date`, the gauges of :func:`report`, alerts 45 days
ahead), a year file is checked before it is used (:func:`load_yaml`, ``tradepulse calendar
check``), and a running service picks up a changed file (:meth:`WorkdayCalendar.refresh`).

Working days from date A to date B = the number of working days d with A < d <= B
(docs/contract.md section 4).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import yaml
from prometheus_client import Gauge
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "CalendarError",
    "CalendarUnknown",
    "CalendarWatch",
    "WorkdayCalendar",
    "WorkdaySettings",
    "YearData",
    "holiday_blocks",
    "load_yaml",
    "local_date",
    "report",
    "shared_calendar",
]

log = logging.getLogger(__name__)

_CHINA = timezone(timedelta(hours=8))  # China keeps one time zone, without daylight saving
_DAY = timedelta(days=1)

_GAUGES: list[Gauge] = []


def _gauges() -> tuple[Gauge, Gauge]:
    """The calendar's gauges, registered by the first :func:`report`: only processes that count
    working days export them (a gauge never set would read 0, 'no days left', everywhere else)."""
    if not _GAUGES:
        _GAUGES.append(Gauge(
            "tradepulse_workdays_calendar_end_timestamp_seconds",
            "End of the last day the working-day calendar knows (every year before it known too).",
        ))  # fmt: skip
        _GAUGES.append(Gauge(
            "tradepulse_workdays_calendar_days_left",
            "Days from the newest event time this process has seen to the end of the calendar's data.",
        ))  # fmt: skip
    return _GAUGES[0], _GAUGES[1]


def local_date(at_s: float) -> date:
    """The China (Asia/Shanghai) calendar date of an instant: working days count dates."""
    return datetime.fromtimestamp(at_s, _CHINA).date()


class WorkdaySettings(BaseSettings):
    """Where extra years of the calendar come from (``TRADEPULSE_WORKDAYS_FILE``); read by every
    service that counts working days."""

    model_config = SettingsConfigDict(env_prefix="TRADEPULSE_", extra="ignore", frozen=True)

    workdays_file: Path | None = None  # a missing file is one line at start-up (load_yaml)

    def calendar(self) -> WorkdayCalendar:
        """The process's calendar for this file: one object, shared by the engine and the metrics,
        so a reload reaches both."""
        return shared_calendar(self.workdays_file)


class CalendarUnknown(LookupError):
    """No calendar data for a year; the message names the year and how to add it."""

    def __init__(self, year: int) -> None:
        super().__init__(
            f"no China working-day calendar for {year}: add its holidays and adjusted working days "
            f"to the YAML file of TRADEPULSE_WORKDAYS_FILE (docs/calendar.md)"
        )
        self.year = year

    @property
    def token(self) -> str:
        """What a case whose measure needs the year waits for (services.engine: parked cases)."""
        return f"calendar:{self.year}"


class CalendarError(ValueError):
    """A year file that cannot be used; the message names the file, the year and the problem."""


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
                raise CalendarError(msg) from None
    return frozenset(out)


@dataclass(slots=True)
class WorkdayCalendar:
    """Working days of the years with data; every other year raises :class:`CalendarUnknown`."""

    years: dict[int, YearData] = field(default_factory=_builtin)
    file: Path | None = None
    _stamp: tuple[float, int] | None = None  # the file's (mtime, size) when it was read
    _builtin_years: dict[int, YearData] = field(default_factory=dict)
    _starts: dict[tuple[int, int], float] = field(default_factory=dict)  # workday_start, remembered

    @classmethod
    def with_file(cls, path: Path | None) -> WorkdayCalendar:
        """The built-in data, with years from ``path`` added (a year there replaces the built-in).
        :class:`CalendarError` names what is wrong with the file."""
        calendar = cls()
        calendar._builtin_years = dict(calendar.years)
        if path is not None:
            calendar.file = path
            calendar._stamp = _stamp(path)
            calendar.add_years(load_yaml(path))
        return calendar

    def add_years(self, years: Mapping[int, YearData]) -> None:
        self.years.update(years)
        self._starts.clear()

    def refresh(self) -> bool:
        """Read the year file again if it changed since it was read; True when the years changed.
        A file that no longer checks out is refused (one error line, the data as it was): a
        running service keeps counting with what it has."""
        if self.file is None:
            return False
        try:
            stamp = _stamp(self.file)
        except OSError as exc:
            log.error("cannot read the working-day calendar file", extra={"file": str(self.file),
                      "error": exc.strerror, "fix": "TRADEPULSE_WORKDAYS_FILE"})  # fmt: skip
            return False
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            added = load_yaml(self.file)
        except CalendarError as exc:
            log.error("working-day calendar file refused; still counting with the years before",
                      extra={"problem": str(exc), "fix": "tradepulse calendar check FILE"})  # fmt: skip
            return False
        years = {**self._builtin_years, **added}
        if years == self.years:
            return False
        self.years.clear()
        self._starts.clear()
        self.years.update(years)
        log.info(
            "working-day calendar reloaded",
            extra={"file": str(self.file), "last_date": str(self.last_date())},
        )
        return True

    def covers(self, year: int) -> bool:
        return year in self.years

    def resolves(self, token: str) -> bool:
        """Whether the calendar now has the year of a :attr:`CalendarUnknown.token`."""
        kind, _, year = token.partition(":")
        return kind == "calendar" and year.isdigit() and self.covers(int(year))

    def last_date(self) -> date | None:
        """The last day of the last year the calendar knows without a gap before it."""
        if not self.years:
            return None
        year = min(self.years)
        while year + 1 in self.years:
            year += 1
        return date(year, 12, 31)

    def is_workday(self, d: date) -> bool:
        data = self.years.get(d.year)
        if data is None:
            raise CalendarUnknown(d.year)
        if d in data.workdays:
            return True
        return d.weekday() < 5 and d not in data.holidays

    def workday_start(self, day: int, n: int) -> float:
        """When (Unix time) working day ``n`` after local day ``day`` (days since 1970-01-01 in
        China) begins, at 00:00 China time. Remembered per (day, n) until the years change: the SLA
        watch asks it on every change of a refund (services.engine.watch)."""
        hit = self._starts.get((day, n))
        if hit is None:
            d, seen = date(1970, 1, 1) + timedelta(days=day), 0
            while seen < n:
                d += _DAY
                seen += self.is_workday(d)
            hit = datetime(d.year, d.month, d.day, tzinfo=_CHINA).timestamp()
            if len(self._starts) > 100_000:
                self._starts.clear()
            self._starts[(day, n)] = hit
        return hit

    def workdays_between(self, start: date, end: date) -> int:
        """Working days d with start < d <= end; 0 for the same day, negative if end < start."""
        if end < start:
            return -self.workdays_between(end, start)
        count, d = 0, start
        while d < end:
            d += _DAY
            count += self.is_workday(d)
        return count


_SHARED: dict[Path | None, WorkdayCalendar] = {}


def shared_calendar(path: Path | None) -> WorkdayCalendar:
    """One calendar per year file in a process (see :meth:`WorkdaySettings.calendar`)."""
    calendar = _SHARED.get(path)
    if calendar is None:
        calendar = _SHARED[path] = WorkdayCalendar.with_file(path)
    return calendar


def _stamp(path: Path) -> tuple[float, int]:
    stat = path.stat()
    return stat.st_mtime, stat.st_size


def report(calendar: WorkdayCalendar, newest_event_s: float) -> None:
    """Set the gauges of how far the calendar reaches: its last date, and the days from the newest
    event time to it (the alert fires 45 days before)."""
    last = calendar.last_date()
    if last is None:
        return
    end, days_left = _gauges()
    end_s = datetime.combine(last + _DAY, time(0), _CHINA).timestamp()
    end.set(end_s)
    if newest_event_s > 0:
        days_left.set(round((end_s - newest_event_s) / 86400, 2))


class CalendarWatch:
    """What a service that counts working days does at each housekeeping pass: read a changed year
    file again, report how far the calendar reaches, count the cases parked for a year it lacks
    (``waiting``, from the engine's tallies) and name each such year once in the log, with the fix."""

    def __init__(self, calendar: WorkdayCalendar, cases: str, waiting: Gauge) -> None:
        self.calendar = calendar
        self._cases = cases
        self._waiting = waiting
        self._named: set[int] = set()

    def housekeeping(self, tallies: Mapping[tuple[str, ...], int], newest_event_s: float) -> None:
        self.calendar.refresh()
        report(self.calendar, newest_event_s)
        years: dict[int, int] = {}
        for tally, n in tallies.items():
            if tally[0] == "parked" and tally[1].startswith("calendar:"):
                year = int(tally[1].split(":", 1)[1])
                years[year] = years.get(year, 0) + n
        self._waiting.set(sum(years.values()))
        for year in sorted(set(years) - self._named):
            self._named.add(year)
            log.warning(
                "calendar unknown: %s wait for the working days of %s",
                self._cases,
                year,
                extra={"year": year, "fix": "add the year to TRADEPULSE_WORKDAYS_FILE (docs/calendar.md)"},
            )


def load_yaml(path: Path) -> dict[int, YearData]:
    """Read ``{year: {holidays: [dates], workdays: [dates]}}`` and check each year as the State
    Council's notice has it: dates inside the year, no date both a holiday and a working day,
    adjusted working days only on Saturdays and Sundays. :class:`CalendarError` names the file,
    the year and the first problem."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError, ValueError) as exc:  # ValueError: YAML's own dates, e.g. 2027-13-01
        msg = f"{path}: cannot read the working-day calendar: {' '.join(str(exc).split())}"
        raise CalendarError(msg) from None
    if not isinstance(doc, dict):
        msg = f"{path}: expected a mapping of years, e.g. `2027: {{holidays: [...], workdays: [...]}}`"
        raise CalendarError(msg)
    out = {}
    for year, entry in doc.items():
        where = f"{path}: {year}"
        if not isinstance(year, int) or not isinstance(entry, dict):
            msg = f"{where}: expected `YEAR: {{holidays: [...], workdays: [...]}}`"
            raise CalendarError(msg)
        unknown = sorted(set(entry) - {"holidays", "workdays"})
        if unknown:
            msg = f"{where}: unknown key {unknown[0]!r} (only holidays and workdays)"
            raise CalendarError(msg)
        data = YearData(
            _dates(entry.get("holidays") or [], where), _dates(entry.get("workdays") or [], where)
        )
        strays = [d for d in data.holidays | data.workdays if d.year != year]
        if strays:
            msg = f"{where}: {min(strays)} is not in {year}"
            raise CalendarError(msg)
        both = sorted(data.holidays & data.workdays)
        if both:
            msg = f"{where}: {both[0]} is both a holiday and a working day"
            raise CalendarError(msg)
        weekdays = sorted(d for d in data.workdays if d.weekday() < 5)
        if weekdays:
            d = weekdays[0]
            msg = f"{where}: working day {d} is a {d:%A}; only Saturdays and Sundays become working days"
            raise CalendarError(msg)
        out[year] = data
    return out


def holiday_blocks(calendar: WorkdayCalendar, year: int) -> list[tuple[date, date]]:
    """The year's runs of consecutive days off that hold a statutory holiday (weekends beside a
    holiday join it, as the notices count the days off), first and last day of each."""
    data = calendar.years[year]
    blocks: list[tuple[date, date]] = []
    for day in sorted(data.holidays):
        if blocks and blocks[-1][1] >= day:
            continue
        first, last = day, day
        while first - _DAY >= date(year, 1, 1) and not calendar.is_workday(first - _DAY):
            first -= _DAY
        while last + _DAY <= date(year, 12, 31) and not calendar.is_workday(last + _DAY):
            last += _DAY
        blocks.append((first, last))
    return blocks
