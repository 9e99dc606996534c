"""The SLA watch: open cases against a commitment, by the clock (docs/design.md "SLA watch",
docs/contract.md section 9).

A :class:`WatchRule` names where a commitment starts (a milestone), what ends it (milestones), when
to warn and when it is missed, in seconds or in China working days. The state of a case under its
rules is a pure function of the case and a clock (:func:`flag_of`): the same case and the same clock
give the same flag, so replaying history gives the records living through it gave. The engine keeps
the flag each case last published, indexes the case under the time its flag will change by the
clock alone, and looks at nothing else when the clock moves (services.engine.cases).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

__all__ = ["ACTIVE", "STATES", "WATCHED", "Flag", "WatchRule", "Workdays", "clock_name", "flag_of"]

Unit = Literal["seconds", "working_days"]
STATES = ("warning", "breached", "cleared", "expired")
ACTIVE = ("warning", "breached")  # the states an operator acts on (gauges, /watch)
WATCHED = "watched"  # the engine's tally of flagged cases: (WATCHED, rule, state, group)


def clock_name(rule: str, state: str) -> str:
    """The engine clock a flagged case is under, at its start (the oldest one's age, /watch's order)."""
    return f"watch:{rule}:{state}"


_NEVER = float("inf")
_CHINA_OFFSET_S = 8 * 3600  # China keeps one time zone (UTC+8), without daylight saving


class Workdays(Protocol):
    """A working-day calendar (services.workdays): raises LookupError for a year it lacks."""

    def workday_start(self, day: int, n: int, /) -> float:
        """When working day ``n`` after local day ``day`` (days since 1970-01-01 in China) begins."""
        ...


def _every_case(case: Any) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class WatchRule:
    """A commitment on the domain's own cases: from ``start`` (the first of these milestones the case
    has: an import's release time runs from the arrival, or the lodging) until any of ``ends``,
    ``due`` (seconds, or working days counted as the refund measure counts them: A < d <= B), with a
    warning at ``warning``. ``when`` picks the cases the rule is about (refunds of categories 1-2);
    it reads what the case knows once a milestone of the rule is there (the category comes with
    the declaration), since the engine computes a flag again only when such a milestone moves."""

    name: str
    start: tuple[str, ...]
    ends: tuple[str, ...]
    warning: float
    due: float
    unit: Unit = "seconds"
    when: Callable[[Any], bool] = _every_case
    description: str = ""

    def __post_init__(self) -> None:
        if "|" in self.name or ":" in self.name:
            msg = f"watch rule {self.name}: a name without '|' or ':' (they separate index keys)"
            raise ValueError(msg)
        if not 0 < self.warning <= self.due:
            msg = f"watch rule {self.name}: needs 0 < warning <= due (warning {self.warning}, due {self.due})"
            raise ValueError(msg)
        if self.unit == "working_days" and (self.warning != int(self.warning) or self.due != int(self.due)):
            msg = f"watch rule {self.name}: working days are whole numbers"
            raise ValueError(msg)

    def points(self, start_s: float, calendar: Workdays | None) -> tuple[float, float]:
        """(warning, due) instants of a case started at ``start_s``: from ``due`` on, completing
        misses the commitment. In working days, the warning is the start of working day ``warning``
        after the start date and the deadline the start of working day ``due + 1`` (completing on
        working day ``due`` still meets a ``due``-day commitment). Raises LookupError
        when a date lies beyond the calendar."""
        if self.unit == "seconds":
            return start_s + self.warning, start_s + self.due
        if calendar is None:
            msg = f"watch rule {self.name} counts working days: the domain's context has no calendar"
            raise TypeError(msg)
        day = int((start_s + _CHINA_OFFSET_S) // 86400)
        return calendar.workday_start(day, int(self.warning)), calendar.workday_start(day, int(self.due) + 1)


class Flag(NamedTuple):
    """A case's watch flag: its state under ``rule`` since ``since``; ``due`` the deadline, ``start``
    when the commitment started, ``reached`` the worst of warning / breached it reached (what a
    cleared or expired case had come to)."""

    rule: str
    state: str
    since: float
    due: float
    start: float
    reached: str

    def expired(self, at_s: float) -> Flag:
        return self._replace(state="expired", since=at_s)


def flag_of(
    rules: Sequence[WatchRule], case: Any, clock_s: float, calendar: Workdays | None
) -> tuple[Flag | None, float]:
    """The case's flag at ``clock_s`` and the instant it would next change by the clock alone
    (``inf``: only an event changes it).

    Per rule: a case that ended before its warning point was never a concern (no flag); one that
    ended later is ``cleared`` (since its end); an open one is ``breached`` from the deadline,
    ``warning`` from the warning point. Of the rules with a flag, the case's is the one that started
    last (the stage it is at). A deadline beyond the calendar flags nothing: never guessed."""
    get = case.milestones.get
    best: Flag | None = None
    best_start = -_NEVER
    next_s = _NEVER
    # Loops, not generators, and seconds inline: this runs on every change of a watched milestone.
    # Later stages first (rules are declared in the order of the case's stages): a flag of a later
    # start settles the case's.
    for rule in reversed(rules):
        for name in rule.start:
            start_s = get(name)
            if start_s is not None:
                break
        else:
            continue
        if start_s < best_start or (rule.when is not _every_case and not rule.when(case)):
            continue  # its flag would not be the case's, and the case's stays whatever the clock does
        if rule.unit == "seconds":
            warning_s, due_s = start_s + rule.warning, start_s + rule.due
        else:
            try:
                warning_s, due_s = rule.points(start_s, calendar)
            except LookupError:  # a date the calendar lacks: never guessed
                continue
        end_s = _NEVER
        for name in rule.ends:
            at_s = get(name)
            if at_s is not None and at_s < end_s:
                end_s = at_s
        if end_s != _NEVER:
            if end_s < warning_s:
                continue
            reached = "breached" if end_s >= due_s else "warning"
            flag = Flag(rule.name, "cleared", end_s, due_s, start_s, reached)
        elif clock_s >= due_s:
            flag = Flag(rule.name, "breached", due_s, due_s, start_s, "breached")
        elif clock_s >= warning_s:
            flag = Flag(rule.name, "warning", warning_s, due_s, start_s, "warning")
            if due_s < next_s:
                next_s = due_s
        else:
            if warning_s < next_s:
                next_s = warning_s
            continue
        if start_s >= best_start:  # a tie: the rule declared first
            best, best_start = flag, start_s
    return best, next_s
