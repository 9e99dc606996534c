"""The event contract in code: one module per domain, and the catalog that maps each CloudEvent
``type`` to its ``data`` model and its topic (docs/contract.md sections 1-4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import create_model

from services.common.events import cbec, cips, customs, taxrefund
from services.common.events.base import DataModel
from services.common.events.envelope import CloudEvent, Envelope, Event
from services.common.events.indicator import INDICATOR_TYPE, IndicatorWindow

__all__ = [
    "CATALOG",
    "DOMAINS",
    "INDICATOR_TYPE",
    "CloudEvent",
    "DataModel",
    "Domain",
    "Envelope",
    "Event",
    "EventSpec",
    "IndicatorEvent",
    "IndicatorWindow",
]


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event type of the catalog."""

    name: str
    topic: str
    data_model: type[DataModel]
    model: type[CloudEvent]
    """The full CloudEvent with ``type`` fixed and ``data`` typed; generates the JSON Schema."""


@dataclass(frozen=True, slots=True)
class Domain:
    """One input topic and its event types."""

    name: str
    topic: str
    events: dict[str, EventSpec]


def _event_model(type_name: str, data_model: type[DataModel]) -> type[CloudEvent]:
    class_name = "".join(part.capitalize() for part in type_name.replace("_", ".").split("."))
    fields: dict[str, Any] = {"type": (Literal[type_name], ...), "data": (data_model, ...)}
    model: type[CloudEvent] = create_model(class_name, __base__=CloudEvent, **fields)
    model.__doc__ = f"CloudEvent ``{type_name}``: {data_model.__doc__ or data_model.__name__}"
    return model


def _domain(name: str, module: Any) -> Domain:
    events = {
        type_name: EventSpec(type_name, module.TOPIC, data_model, _event_model(type_name, data_model))
        for type_name, data_model in module.EVENTS.items()
    }
    return Domain(name=name, topic=module.TOPIC, events=events)


DOMAINS: dict[str, Domain] = {
    name: _domain(name, module)
    for name, module in (
        ("customs", customs),
        ("taxrefund", taxrefund),
        ("cips", cips),
        ("cbec", cbec),
    )
}
CATALOG: dict[str, EventSpec] = {t: s for d in DOMAINS.values() for t, s in d.events.items()}


class IndicatorEvent(Envelope):
    """An output record: a structured-mode CloudEvent carrying one indicator window revision."""

    type: Literal["tradepulse.indicator.window"] = INDICATOR_TYPE  # type: ignore[assignment]
    data: IndicatorWindow
