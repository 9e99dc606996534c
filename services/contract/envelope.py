"""The CloudEvents 1.0 envelope (docs/contract.md section 1) and the decoded event type."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

from services.contract.fields import ContractModel, DataModel, NonEmptyStr, Rfc3339

__all__ = [
    "JSON_DATA",
    "OPTIONAL_ATTRIBUTES",
    "REQUIRED_ATTRIBUTES",
    "CloudEvent",
    "Envelope",
    "Event",
    "cloud_event",
    "path_safe",
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


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DOT_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)")
_ENCODED_DOT_OR_SLASH = re.compile(r"%(2e|2f)", re.IGNORECASE)
_NO_CONTROL_PATTERN = "^[^\\u0000-\\u001f\\u007f]+$"


def _no_control(value: Any) -> Any:
    """Contract section 1: ids, sources and subjects hold no control characters (a NUL or an
    escape sequence in a log line, a CR/LF splitting a header). Runs before the type's other
    rules, so that is what the refusal says."""
    if isinstance(value, str) and _CONTROL.search(value):
        msg = "control characters (U+0000-U+001F, U+007F) are not allowed"
        raise ValueError(msg)
    return value


def _no_space(value: str) -> str:
    if any(c.isspace() for c in value):
        msg = "white space is not allowed in a URI reference"
        raise ValueError(msg)
    return value


def path_safe(value: str) -> str:
    """Contract section 1: ``source`` is matched as a URI path (a producer's rights are path
    prefixes), so it may hold no ``.`` or ``..`` segment and no percent-encoded ``.`` or ``/``:
    ``/singlewindow/../etax`` must never pass for a source under ``/singlewindow/``."""
    path = value.split("?", 1)[0].split("#", 1)[0]
    if _DOT_SEGMENT.search(path):
        msg = "a '.' or '..' path segment is not allowed"
        raise ValueError(msg)
    if _ENCODED_DOT_OR_SLASH.search(path):
        msg = "a percent-encoded '.' or '/' (%2E, %2F) is not allowed"
        raise ValueError(msg)
    return value


NoControl = Annotated[
    str, BeforeValidator(_no_control), Field(json_schema_extra={"pattern": _NO_CONTROL_PATTERN})
]
UriReference = Annotated[
    str,
    BeforeValidator(_no_control),
    StringConstraints(min_length=1, max_length=2048),
    AfterValidator(_no_space),
    Field(json_schema_extra={"pattern": "^\\S+$"}),
]
Source = Annotated[UriReference, AfterValidator(path_safe)]


class Envelope(ContractModel):
    """CloudEvent context attributes, without ``data``.

    Unknown attributes are refused (``extra="forbid"``); the optional CloudEvents attributes and the
    extensions producers commonly set (partitioning, tracing) are declared here.
    """

    specversion: Literal["1.0"]
    id: Annotated[NoControl, StringConstraints(min_length=1, max_length=128)]
    source: Source
    type: NonEmptyStr
    time: Rfc3339
    subject: Annotated[NoControl, StringConstraints(min_length=1, max_length=1024)]
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
