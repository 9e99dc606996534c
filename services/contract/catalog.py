"""Event catalogs: which CloudEvent ``type`` s one topic carries and the ``data`` model of each
(docs/contract.md section 2). A domain declares its catalog with its events; nothing here lists
the domains."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import Field, TypeAdapter, create_model

from services.contract.envelope import CloudEvent
from services.contract.fields import DataModel

__all__ = ["Catalog", "EventSpec"]

M = TypeVar("M", bound=type[DataModel])


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event type."""

    name: str
    topic: str
    data_model: type[DataModel]
    model: type[CloudEvent]
    """The whole CloudEvent with ``type`` fixed and ``data`` typed; generates the JSON Schema."""


class Catalog:
    """The event types of one topic, each declared on its data model with :meth:`event` (or all at
    once with :meth:`of`)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.events: dict[str, EventSpec] = {}
        self._validator: TypeAdapter[CloudEvent] | None = None

    @classmethod
    def of(cls, topic: str, events: Mapping[str, type[DataModel]]) -> Catalog:
        catalog = cls(topic)
        for name, model in events.items():
            catalog.event(name)(model)
        return catalog

    def event(self, type_name: str) -> Callable[[M], M]:
        """Declares the decorated model as the ``data`` of the events of ``type_name``."""

        def declare(model: M) -> M:
            self.events[type_name] = EventSpec(type_name, self.topic, model, _event_model(type_name, model))
            self._validator = None
            return model

        return declare

    @property
    def validator(self) -> TypeAdapter[CloudEvent]:
        """Validates a whole event (attributes and typed ``data``) in one call, choosing the model by
        ``type``: the codec's fast path, half the cost of validating envelope and data apart."""
        if self._validator is None:
            models = tuple(spec.model for spec in self.events.values())
            union: Any = Union[models]  # noqa: UP007  # built at run time
            tagged = models[0] if len(models) == 1 else Annotated[union, Field(discriminator="type")]
            self._validator = TypeAdapter(tagged)
        return self._validator


def _event_model(type_name: str, data_model: type[DataModel]) -> type[CloudEvent]:
    class_name = "".join(part.capitalize() for part in type_name.replace("_", ".").split("."))
    fields: dict[str, Any] = {"type": (Literal[type_name], ...), "data": (data_model, ...)}
    model: type[CloudEvent] = create_model(class_name, __base__=CloudEvent, **fields)
    model.__doc__ = f"CloudEvent ``{type_name}``: {data_model.__doc__ or data_model.__name__}"
    return model
