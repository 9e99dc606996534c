"""Field types shared by the event models of every domain (docs/contract.md, preamble and section 1).

Every model here is frozen. Envelope models forbid unknown attributes; ``data`` models ignore
unknown fields, because the contract lets producers add optional fields.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

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
    "PersonalText",
    "Phone",
    "Rfc3339",
    "TradeMode",
    "TransportMode",
    "Uscc",
    "examples",
    "resident_id_check",
    "resident_id_valid",
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

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> Any:
        """Mark the field in the JSON Schemas, for producers and data-protection reviews."""
        out = handler(schema)
        out["x-personal-data"] = True
        return out


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_RESIDENT_ID = re.compile(r"^\d{6}(18|19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\d{3}[\dX]$")


def resident_id_check(body: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits of an identity card number."""
    return _ID_CHECK[sum(int(c) * w for c, w in zip(body, _ID_WEIGHTS, strict=True)) % 11]


def resident_id_valid(number: str) -> bool:
    """A resident identity card number (GB 11643-1999): 18 characters, a plausible birth date, and
    the check character last."""
    return bool(_RESIDENT_ID.match(number)) and resident_id_check(number[:17]) == number[17]


def _phone(value: str) -> str:
    # the message names the rule only: personal values are never quoted (contract section 6)
    if not re.fullmatch(r"\+?\d{5,20}", value):
        msg = "must be 5 to 20 digits, optionally after a leading +"
        raise ValueError(msg)
    return value


Phone = Annotated[str, AfterValidator(_phone), Personal()]
"""A telephone number, personal data: digits only (a leading + allowed)."""
PersonalText = Annotated[str, StringConstraints(min_length=1, max_length=500), Personal()]
"""A name or an address: personal data, 1 to 500 characters."""


def _marked_personal(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        inner, *meta = get_args(annotation)
        return any(isinstance(m, Personal) for m in meta) or _marked_personal(inner)
    return any(_marked_personal(arg) for arg in get_args(annotation))


class DataModel(BaseModel):
    """Base of ``data`` payloads: strict types, unknown (future optional) fields ignored."""

    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")
    subject_field: ClassVar[str | None] = None
    """The field holding the entity id the contract names as the event's CloudEvent ``subject``."""

    @classmethod
    def personal_fields(cls) -> frozenset[str]:
        """Names of the fields marked :class:`Personal`, also inside ``Optional`` and unions."""
        found = cls.__dict__.get("_personal")
        if found is None:
            found = frozenset(
                name
                for name, f in cls.model_fields.items()
                if any(isinstance(m, Personal) for m in f.metadata) or _marked_personal(f.annotation)
            )
            type.__setattr__(cls, "_personal", found)  # per class, computed once
        return found

    def without_personal_data(self) -> dict[str, Any]:
        """The JSON form of this payload with every personal field left out."""
        return self.model_dump(mode="json", exclude_none=True, exclude=set(self.personal_fields()))

    @property
    def subject(self) -> str:
        """The entity id the contract names as this event's CloudEvent ``subject``."""
        if self.subject_field is None:
            msg = f"{type(self).__name__} names no subject"
            raise NotImplementedError(msg)
        value: str = getattr(self, self.subject_field)
        return value


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
