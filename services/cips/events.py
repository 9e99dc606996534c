"""``cips.events.v1``: CIPS RMB cross-border payments (contract 2.3)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

from services.contract.catalog import Catalog
from services.contract.fields import DataModel, EntryId, Money, NonEmptyStr, examples

UETR = "8a562c67-ca16-48ba-b074-65581be6f011"
Uetr = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"),
]

CATALOG = Catalog("cips.events.v1")


class PaymentRef(DataModel):
    uetr: Uetr
    model_config = examples({"uetr": UETR})
    subject_field = "uetr"


@CATALOG.event("cips.payment.initiated")
class PaymentInitiated(PaymentRef):
    msg_type: Literal["customer", "fi"]
    debtor_agent: NonEmptyStr
    creditor_agent: NonEmptyStr
    participant_type: Literal["direct", "indirect"]
    amount: Money
    purpose: Literal["goods", "services", "capital", "other"]
    linked_entry_ids: list[EntryId] | None = None
    model_config = examples(
        {
            "uetr": UETR,
            "msg_type": "customer",
            "debtor_agent": "ICBKCNBJGDG",
            "creditor_agent": "HSBCHKHHHKH",
            "participant_type": "direct",
            "amount": {"amount": "2000000.00", "currency": "CNY"},
            "purpose": "goods",
            "linked_entry_ids": ["514120250000012345"],
        }
    )


@CATALOG.event("cips.payment.submitted")
class PaymentSubmitted(PaymentRef):
    pass


@CATALOG.event("cips.payment.settled")
class PaymentSettled(PaymentRef):
    pass


@CATALOG.event("cips.payment.rejected")
class PaymentRejected(PaymentRef):
    reason_code: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{4}$")]
    model_config = examples({"uetr": UETR, "reason_code": "AC04"})


@CATALOG.event("cips.payment.credited")
class PaymentCredited(PaymentRef):
    pass


@CATALOG.event("cips.payment.returned")
class PaymentReturned(PaymentRef):
    reason_code: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{4}$")]
    amount: Money
    model_config = examples(
        {"uetr": UETR, "reason_code": "AC01", "amount": {"amount": "2000000.00", "currency": "CNY"}}
    )
