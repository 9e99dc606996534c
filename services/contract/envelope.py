"""The CloudEvents 1.0 envelope (docs/contract.md section 1) and the decoded event type."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from services.contract.fields import ContractModel, DataModel, NonEmptyStr, Rfc3339

__all__ = [
    "JSON_DATA",
    "OPTIONAL_ATTRIBUTES",
    "REQUIRED_ATTRIBUTES",
    "CloudEvent",
    "Envelope",
    "Event",
    "cloud_event",
]

REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type", "time", "subject")
OPTIONAL_ATTRIBUTES = ("datacontenttype", "dataschema", "partitionkey", "traceparent", "tracestate")

JSON_DATA = {"datacontenttype": "application/json"}  # the optional attribute of TradePulse's records


def cloud_event(
    id: str, source: str, type: str, time: str, subject: str, data: Any, **optional: str
) -> dict[str, Any]:
    """A structured-mode CloudEvent as a JSON object: the required attributes in the contract's
    order, then ``optional`` ones (``datacontenttype``, ...), then ``data``."""
    return {"specversion": "1.0", "id": id, "source": source, "type": type, "time": time,
            "subject": subject, **optional, "data": data}  # fmt: skip


UriReference = Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=r"^\S+$")]


class Envelope(ContractModel):
    """CloudEvent context attributes, without ``data``.

    Unknown attributes are refused (``extra="forbid"``); the optional CloudEvents attributes and the
    extensions producers commonly set (partitioning, tracing) are declared here.
    """

    specversion: Literal["1.0"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    source: UriReference
    type: NonEmptyStr
    time: Rfc3339
    subject: NonEmptyStr
    datacontenttype: NonEmptyStr | None = None
    dataschema: UriReference | None = None
    partitionkey: NonEmptyStr | None = None
    traceparent: NonEmptyStr | None = None
    tracestate: NonEmptyStr | None = None


class CloudEvent(Envelope):
    """A decoded, validated input event: envelope attributes plus the typed ``data`` model.

    Subclasses in the catalog fix ``type`` to one literal and ``data`` to its model; those classes
    generate the committed JSON Schemas. At run time the codec builds this class directly.
    """

    data: DataModel = Field(description="the event payload, a JSON object")


@dataclass(frozen=True, slots=True)
class Event:
    """A decoded, validated input event, as the services receive it.

    The codec validates with :class:`Envelope` and the ``data`` model of the catalog, then hands
    out this plain immutable object: cheaper to build than a pydantic model, and hashable.
    """

    specversion: str
    id: str
    source: str
    type: str
    time: datetime
    subject: str
    data: DataModel
    time_s: float  # ``time`` as epoch seconds, computed once: every stage compares event times
    datacontenttype: str | None = None
    dataschema: str | None = None
    partitionkey: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None

    @property
    def milestone(self) -> str:
        """The milestone the event marks: its type's last segment (docs/contract.md section 7)."""
        return self.type.rpartition(".")[2]

    @property
    def dedup_key(self) -> tuple[str, str]:
        """(source, id): the contract's deduplication key."""
        return (self.source, self.id)

    def without_personal_data(self) -> dict[str, Any]:
        """The event as a structured-mode JSON object, its personal data left out: what may travel
        past the intake (docs/contract.md section 6)."""
        return {**self.attributes(), "data": self.data.without_personal_data()}

    def attributes(self) -> dict[str, Any]:
        """Context attributes as JSON values, absent ones left out (for re-encoding)."""
        out: dict[str, Any] = {}
        for name in (*REQUIRED_ATTRIBUTES, *OPTIONAL_ATTRIBUTES):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out
