"""A toy domain for testing the engine itself: parcels sent from depots and delivered.

Parcels are keyed by parcel id, depots by depot id; a parcel learns when its depot opened by
messages (the join), which is what ``toy.wait_time`` needs. ``recipient`` is personal data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from services.contract.catalog import Catalog
from services.contract.envelope import Event
from services.contract.fields import DataModel, NonEmptyStr, Personal
from services.engine.domain import NO_MESSAGES, Case, Domain, EngineSettings, Message, Observer
from services.engine.registers import EarliestWins, Milestones, evolve
from services.engine.windows import Contribution, IndicatorSpec


class ParcelRef(DataModel):
    parcel_id: NonEmptyStr

    @property
    def subject(self) -> str:
        return self.parcel_id


class Sent(ParcelRef):
    depot: NonEmptyStr
    recipient: Annotated[str | None, Personal()] = None


class Opened(DataModel):
    depot: NonEmptyStr

    @property
    def subject(self) -> str:
        return self.depot


CATALOG = Catalog.of("toy.events.v1", {"toy.parcel.sent": Sent, "toy.parcel.delivered": ParcelRef,
                                        "toy.depot.opened": Opened})  # fmt: skip
DEPOTS = frozenset({"north", "south"})
INDICATORS = (
    IndicatorSpec("toy.delivery_time", "seconds", "duration", ("depot",), labels={"depot": DEPOTS}),
    IndicatorSpec("toy.wait_time", "seconds", "duration", ("depot",), labels={"depot": DEPOTS}),
)


@dataclass(frozen=True, slots=True)
class Named:
    parcel_id: str


@dataclass(frozen=True, slots=True)
class DepotOpened:
    at_s: float


@dataclass(frozen=True, slots=True)
class Parcel(Case):
    parcel_id: str
    milestones: Milestones = Milestones()
    depot: EarliestWins[str] = EarliestWins()

    def apply(self, event: Event) -> Parcel:
        milestones = self.milestones.earliest(event.type.rsplit(".", 1)[1], event.time_s)
        if isinstance(event.data, Sent):
            return evolve(
                self, milestones=milestones, depot=self.depot.offer(event.data.depot, event.time_s, event.id)
            )
        return evolve(self, milestones=milestones)

    def receive(self, message: DepotOpened) -> Parcel:
        return evolve(self, milestones=self.milestones.earliest("opened", message.at_s))

    def messages(self, before: Parcel) -> Sequence[Message]:
        if self.depot.value and self.depot.value != before.depot.value:
            return (Message("depot", self.depot.value, Named(self.parcel_id)),)
        return NO_MESSAGES

    def measures(self, context: Any = None) -> Sequence[Contribution]:
        t, dims = self.milestones, (("depot", self.depot.value or "unknown"),)
        out = []
        if "sent" in t and "delivered" in t and t["delivered"] >= t["sent"]:
            out.append(Contribution("toy.delivery_time", t["delivered"], dims, t["delivered"] - t["sent"]))
        if "opened" in t and "delivered" in t and t["delivered"] >= t["opened"]:
            out.append(Contribution("toy.wait_time", t["delivered"], dims, t["delivered"] - t["opened"]))
        return out

    @property
    def open(self) -> bool:
        return "delivered" not in self.milestones

    @property
    def completed(self) -> bool:
        return "delivered" in self.milestones


@dataclass(frozen=True, slots=True)
class Depot(Case):
    depot: str
    opened: EarliestWins[None] = EarliestWins()
    parcels: frozenset[str] = frozenset()

    def apply(self, event: Event) -> Depot:
        return evolve(self, opened=self.opened.offer(None, event.time_s, event.id))

    def receive(self, message: Named) -> Depot:
        return (
            self
            if message.parcel_id in self.parcels
            else evolve(self, parcels=self.parcels | {message.parcel_id})
        )

    def messages(self, before: Depot) -> Sequence[Message]:
        if not self.opened.known:
            return NO_MESSAGES
        told = self.parcels if self.opened != before.opened else self.parcels - before.parcels
        return tuple(Message("parcel", p, DepotOpened(self.opened.at_s)) for p in sorted(told))


class ToySettings(EngineSettings):
    pass


class Seen(Observer):
    """Remembers what the engine told it."""

    def __init__(self, settings: Any = None) -> None:
        self.added: list[Contribution] = []
        self.expired_cases: list[Any] = []
        self.open: dict[str, int] = {}

    def changed(self, kind: str, before: Any, after: Any, added: Sequence[Contribution]) -> None:
        self.added.extend(added)

    def expired(self, kind: str, case: Any) -> None:
        self.expired_cases.append(case)

    def open_cases(self, kind: str, by_group: Any) -> None:
        if kind == "parcel":
            self.open = dict(by_group)


def route(event: Event) -> tuple[str, str]:
    return ("depot" if isinstance(event.data, Opened) else "parcel", event.subject)


TOY = Domain(
    name="toy", catalog=CATALOG, kinds={"parcel": Parcel, "depot": Depot}, route=route, indicators=INDICATORS,
    settings=ToySettings, port=0, messages=(Named, DepotOpened), observer=Seen,
)  # fmt: skip


def event(type_: str, subject: str, at: str, n: int, **data: Any) -> dict[str, Any]:
    """A toy CloudEvent as a dict (``at``: RFC 3339 time)."""
    key = "depot" if type_ == "toy.depot.opened" else "parcel_id"
    return {"specversion": "1.0", "id": f"{subject}-{n}", "source": "/toy", "type": type_, "time": at,
            "subject": subject, "data": {key: subject, **data}}  # fmt: skip
