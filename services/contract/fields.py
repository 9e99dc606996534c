"""Field types shared by the event models of every domain (docs/contract.md, preamble and section 1).

Every model here is frozen. Envelope models forbid unknown attributes; ``data`` models ignore
unknown fields, because the contract lets producers add optional fields.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

__all__ = [
    "ContractModel",
    "CreditClass",
    "CustomsCode",
    "DataModel",
    "EntryId",
    "IeFlag",
    "Money",
    "NonEmptyStr",
    "Personal",
    "Rfc3339",
    "TradeMode",
    "TransportMode",
    "Uscc",
    "examples",
]

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def _parse_rfc3339(value: Any) -> datetime:
    """Accept only an RFC 3339 timestamp string with an offset; never a number or a naive time."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            msg = "timestamp has no UTC offset"
            raise ValueError(msg)
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        msg = "expected an RFC 3339 timestamp with offset, e.g. 2025-03-01T08:30:00+08:00"
        raise ValueError(msg)
    try:
        # Since Python 3.11 fromisoformat takes RFC 3339 with "Z" and truncates fractions past 6
        # digits (CloudEvents producers may send 9); the pattern above has let through nothing else.
        return datetime.fromisoformat(value.upper())
    except ValueError as exc:
        msg = f"not a valid date or time: {exc}"
        raise ValueError(msg) from None


Rfc3339 = Annotated[datetime, BeforeValidator(_parse_rfc3339)]
NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
EntryIdPattern = r"^\d{4}(19|20)\d{2}[01]\d{9}$"
EntryId = Annotated[str, StringConstraints(pattern=EntryIdPattern)]
CustomsCode = Annotated[str, StringConstraints(pattern=r"^\d{4}$")]
TradeMode = Annotated[str, StringConstraints(pattern=r"^\d{4}$")]
TransportMode = Annotated[str, StringConstraints(pattern=r"^[0-9A-Z]$")]
Uscc = Annotated[str, StringConstraints(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")]
IeFlag = Literal["I", "E"]
CreditClass = Literal["aeo", "general", "discredited"]


def _check_decimal(value: str) -> str:
    Decimal(value)  # the pattern already guarantees this parses
    return value


def examples(*items: Any) -> ConfigDict:
    """Model config carrying JSON examples; every example must validate (a test checks)."""
    return ConfigDict(json_schema_extra={"examples": list(items)})


class ContractModel(BaseModel):
    """Base of every contract model: immutable, strict about types."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")


class Personal:
    """Marks a ``data`` field as personal data (docs/contract.md section 6), as
    ``Annotated[str, Personal()]``: validated like any field, but nothing past the intake keeps it
    (:meth:`DataModel.without_personal_data`), and no error quotes its value."""

    def __repr__(self) -> str:
        return "Personal()"


class DataModel(BaseModel):
    """Base of ``data`` payloads: strict types, unknown (future optional) fields ignored."""

    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")

    @classmethod
    def personal_fields(cls) -> frozenset[str]:
        """Names of the fields marked :class:`Personal`."""
        return frozenset(
            name for name, f in cls.model_fields.items() if any(isinstance(m, Personal) for m in f.metadata)
        )

    def without_personal_data(self) -> dict[str, Any]:
        """The JSON form of this payload with every personal field left out."""
        return self.model_dump(mode="json", exclude_none=True, exclude=set(self.personal_fields()))

    @property
    def subject(self) -> str:
        """The entity id the contract names as this event's CloudEvent ``subject``."""
        msg = f"{type(self).__name__} names no subject"
        raise NotImplementedError(msg)


class Money(ContractModel):
    """An amount of money: a decimal string (never a float) and an ISO 4217 code."""

    amount: Annotated[
        str,
        StringConstraints(pattern=r"^-?\d{1,18}(\.\d{1,6})?$"),
        AfterValidator(_check_decimal),
        Field(description="decimal string, e.g. 1234.50"),
    ]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]

    model_config = ConfigDict(json_schema_extra={"examples": [{"amount": "1234.50", "currency": "CNY"}]})

    @property
    def value(self) -> Decimal:
        """The amount as an exact decimal."""
        return Decimal(self.amount)
