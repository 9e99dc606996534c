"""The export cycle: pure state and measures (docs/contract.md section 4).

Three kinds of case, each keyed the way its input is:

- ``Entry`` (an export declaration, key ``entry_id``): its release, the earliest credit among the
  linked goods payments, and the earliest-issued linked refund;
- ``Payment`` (key: the CIPS case id) and ``Refund`` (the refund case id): what their records say,
  passed on as messages to every entry they name, on whatever partition it lives.

Every register keeps the earliest thing it was offered, so records and messages in any order, any
number of times, give the same entry: a credit that arrives after an earlier one replaces it as
a correction, and a payment seen before its declaration simply waits in the entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from services.contract.envelope import Event
from services.cycle.events import CaseUpdate
from services.engine.domain import NO_MESSAGES, Case, Message
from services.engine.registers import EarliestWins, evolve
from services.engine.windows import Contribution, IndicatorSpec, Observed
from services.workdays import CalendarUnknown, WorkdayCalendar, local_date

__all__ = ["INDICATORS", "Credited", "Entry", "Issued", "Naming", "Payment", "Refund", "route"]

UNKNOWN = "unknown"
CUSTOMS_CODES = frozenset({"5130", "5141", "5165", "5201", "5208", UNKNOWN})
CATEGORIES = frozenset({"1", "2", "3", "4", UNKNOWN})
DAY = 86400.0

INDICATORS = (
    IndicatorSpec("cycle.export_to_cash", "seconds", "duration", ("customs_code",),
                  labels={"customs_code": CUSTOMS_CODES},
                  histogram=Observed("tradepulse_cycle_export_to_cash_seconds",
                                     "Export release to the earliest linked goods credit.",
                                     tuple(d * DAY for d in (1 / 24, 0.25, 1, 2, 5, 10, 20, 30, 60, 90)))),
    IndicatorSpec("cycle.prepaid_rate", "ratio", "ratio", ("customs_code",),
                  labels={"customs_code": CUSTOMS_CODES}),
    IndicatorSpec("cycle.export_to_refund", "working_days", "duration", ("mgmt_category",),
                  labels={"mgmt_category": CATEGORIES},
                  histogram=Observed("tradepulse_cycle_export_to_refund_workdays",
                                     "Export release date to the earliest linked refund's issue date, "
                                     "in working days.",
                                     (5, 10, 15, 20, 30, 40, 60, 90, 120))),
)  # fmt: skip


def route(event: Event) -> tuple[str, str] | None:
    """Export declarations to their entry, linked goods payments and refunds to themselves (they
    tell their entries); anything else is of no interest to the cycle."""
    data = event.data
    assert isinstance(data, CaseUpdate)
    if data.service == "customs":
        return ("entry", data.case_id) if data.attributes.get("ie_flag") == "E" else None
    if data.service == "cips":
        linked = data.attributes.get("purpose") == "goods" and data.entries("linked_entry_ids")
        return ("payment", data.case_id) if linked else None
    if data.service == "taxrefund":
        return ("refund", data.case_id) if data.entries("entry_ids") else None
    return None


@dataclass(frozen=True, slots=True)
class Credited:
    """A linked goods payment was credited at ``at_s`` (its earliest credit)."""

    payment: str
    at_s: float


@dataclass(frozen=True, slots=True)
class Issued:
    """A linked refund was issued at ``at_s``; ``category``: the exporter's management category."""

    refund: str
    at_s: float
    category: str


@dataclass(frozen=True, slots=True)
class Entry(Case):
    """One export declaration's cycle."""

    entry_id: str
    released: EarliestWins[str] = EarliestWins()  # the customs code, at the release
    credit: EarliestWins[str] = EarliestWins()  # the payment, at the earliest linked goods credit
    refund: EarliestWins[str] = EarliestWins()  # the category, at the earliest linked refund issue

    def apply(self, event: Event) -> Entry:
        data = event.data
        assert isinstance(data, CaseUpdate)
        released = data.at("released")
        if released is None:
            return self
        code = str(data.attributes.get("customs_code") or data.case_id[:4])
        return evolve(self, released=self.released.offer(code, released, data.case_id))

    def receive(self, message: Credited | Issued) -> Entry:
        if isinstance(message, Credited):
            return evolve(self, credit=self.credit.offer(message.payment, message.at_s, message.payment))
        return evolve(self, refund=self.refund.offer(message.category, message.at_s, message.refund))

    @property
    def milestones(self) -> Mapping[str, float]:
        named = (("released", self.released), ("credited", self.credit), ("refund_issued", self.refund))
        return {name: register.at_s for name, register in named if register.known}

    @property
    def prepaid(self) -> bool | None:
        """Whether the earliest credit preceded the release (None until both are known)."""
        if not (self.released.known and self.credit.known):
            return None
        return self.credit.at_s < self.released.at_s

    @property
    def customs_code(self) -> str:
        return self.released.value or UNKNOWN

    @property
    def open(self) -> bool:
        return self.released.known and not self.completed

    @property
    def completed(self) -> bool:
        return self.released.known and self.credit.known and self.refund.known

    def measures(self, context: WorkdayCalendar) -> Sequence[Contribution]:
        """Each measure in the window of the later of its two times (contract section 4)."""
        if not self.released.known:
            return []
        out: list[Contribution] = []
        released = self.released.at_s
        code = (("customs_code", self.customs_code),)
        if self.credit.known:
            credited = self.credit.at_s
            prepaid = credited < released
            share = 1.0 if prepaid else 0.0
            out.append(Contribution("cycle.prepaid_rate", max(released, credited), code, share))
            if not prepaid:
                out.append(Contribution("cycle.export_to_cash", credited, code, credited - released))
        if self.refund.known:
            issued = self.refund.at_s
            try:
                days = context.workdays_between(local_date(released), local_date(issued))
            except CalendarUnknown:  # a year the calendar lacks: unknown until it is added, never guessed
                return out
            if days >= 0:
                dims = (("mgmt_category", self.refund.value or UNKNOWN),)
                out.append(Contribution("cycle.export_to_refund", max(released, issued), dims, float(days)))
        return out

    def parked(self, context: WorkdayCalendar) -> Sequence[str]:
        """An entry whose release-to-refund needs a year the calendar lacks waits for it."""
        if not (self.released.known and self.refund.known):
            return ()
        try:
            context.workdays_between(local_date(self.released.at_s), local_date(self.refund.at_s))
        except CalendarUnknown as exc:
            return (exc.token,)
        return ()

    def attributes(self) -> Mapping[str, Any]:
        return {
            "customs_code": self.released.value, "prepaid": self.prepaid, "payment": self.credit.value,
            "mgmt_category": self.refund.value, "refund": self.refund.by or None,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Linked:
    """What a payment or refund record says about the entries it names: decided, like the
    upstream case, by its earliest initiation or declaration."""

    entries: tuple[str, ...]
    category: str = UNKNOWN


@dataclass(frozen=True, slots=True)
class Naming(Case):
    """A case of another service that names export entries (a payment, a refund): it tells every
    entry it names when its one milestone that matters happened (credited, issued)."""

    case_id: str
    linked: EarliestWins[Linked] = EarliestWins()
    done: EarliestWins[str] = EarliestWins()

    LINKS: ClassVar[str]  # the attribute listing the entries
    DECIDED_BY: ClassVar[str]  # the milestone whose earliest event decides the links upstream
    DONE: ClassVar[str]  # the milestone the entries are told of

    def apply(self, event: Event) -> Self:
        data = event.data
        assert isinstance(data, CaseUpdate)
        named = Linked(data.entries(self.LINKS), self.category(data))
        linked = self.linked.offer(named, data.at(self.DECIDED_BY) or event.time_s, "")
        at = data.at(self.DONE)
        done = self.done if at is None else self.done.offer(self.case_id, at, self.case_id)
        return evolve(self, linked=linked, done=done)

    def category(self, data: CaseUpdate) -> str:
        return UNKNOWN

    def body(self, linked: Linked) -> Credited | Issued:
        raise NotImplementedError

    @property
    def completed(self) -> bool:
        return self.done.known  # its entries were told: dropped once its windows are past

    def messages(self, before: Self) -> Sequence[Message]:
        linked = self.linked.value
        if not self.done.known or linked is None:
            return NO_MESSAGES
        if (before.linked.value, before.done.at_s) == (linked, self.done.at_s):
            return NO_MESSAGES
        body = self.body(linked)
        return tuple(Message("entry", entry, body) for entry in linked.entries)


class Payment(Naming):
    """A goods payment naming export entries (``linked_entry_ids``), credited at ``done``."""

    __slots__ = ()
    LINKS, DECIDED_BY, DONE = "linked_entry_ids", "initiated", "credited"

    def body(self, linked: Linked) -> Credited:
        return Credited(self.case_id, self.done.at_s)


class Refund(Naming):
    """A refund claim naming export entries (``entry_ids``), issued at ``done``."""

    __slots__ = ()
    LINKS, DECIDED_BY, DONE = "entry_ids", "declared", "issued"

    def category(self, data: CaseUpdate) -> str:
        category = data.attributes.get("mgmt_category")
        return str(category) if category is not None else UNKNOWN

    def body(self, linked: Linked) -> Issued:
        return Issued(self.case_id, self.done.at_s, linked.category)
