"""Event catalogs: which CloudEvent ``type`` s one topic carries and the ``data`` model of each
(docs/contract.md section 2). A domain declares its catalog with its events; nothing here lists
the domains."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, create_model

from services.contract.envelope import CloudEvent
from services.contract.fields import DataModel

__all__ = ["Catalog", "EventSpec"]


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event type."""

    name: str
    topic: str
    data_model: type[DataModel]
    model: type[CloudEvent]
    """The whole CloudEvent with ``type`` fixed and ``data`` typed; generates the JSON Schema."""


@dataclass(frozen=True, slots=True)
class Catalog:
    """The event types of one topic."""

    topic: str
    events: Mapping[str, EventSpec]
    validator: TypeAdapter[CloudEvent] = field(compare=False, repr=False)
    """Validates a whole event (attributes and typed ``data``) in one call, choosing the model by
    ``type``: the codec's fast path, half the cost of validating envelope and data apart."""

    @classmethod
    def of(cls, topic: str, events: Mapping[str, type[DataModel]]) -> Catalog:
        specs = {
            name: EventSpec(name, topic, model, _event_model(name, model)) for name, model in events.items()
        }
        models = tuple(spec.model for spec in specs.values())
        tagged: Any = models[0] if len(models) == 1 else Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007
        return cls(topic, specs, TypeAdapter(tagged))

    def __contains__(self, type_name: object) -> bool:
        return type_name in self.events


def _event_model(type_name: str, data_model: type[DataModel]) -> type[CloudEvent]:
    class_name = "".join(part.capitalize() for part in type_name.replace("_", ".").split("."))
    fields: dict[str, Any] = {"type": (Literal[type_name], ...), "data": (data_model, ...)}
    model: type[CloudEvent] = create_model(class_name, __base__=CloudEvent, **fields)
    model.__doc__ = f"CloudEvent ``{type_name}``: {data_model.__doc__ or data_model.__name__}"
    return model
