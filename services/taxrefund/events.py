"""``taxrefund.events.v1``: export VAT refund applications (contract 2.2)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from services.contract.catalog import Catalog
from services.contract.fields import DataModel, EntryId, Money, NonEmptyStr, Uscc, examples

REFUND = "RF4401012025110000123"


class RefundRef(DataModel):
    refund_id: NonEmptyStr
    model_config = examples({"refund_id": REFUND})
    subject_field = "refund_id"


class RefundDeclared(RefundRef):
    taxpayer_uscc: Uscc
    mgmt_category: Annotated[int, Field(ge=1, le=4)]
    tax_office: NonEmptyStr
    claimed_amount: Money
    entry_ids: list[EntryId]
    model_config = examples(
        {
            "refund_id": REFUND,
            "taxpayer_uscc": "91440101MA5CXXXX1A",
            "mgmt_category": 2,
            "tax_office": "14401060000",
            "claimed_amount": {"amount": "105560.00", "currency": "CNY"},
            "entry_ids": ["514120250000012345"],
        }
    )


class RefundAccepted(RefundRef):
    pass


class RefundFlagged(RefundRef):
    doubt_codes: list[NonEmptyStr]
    model_config = examples({"refund_id": REFUND, "doubt_codes": ["D03"]})


class RefundRejected(RefundRef):
    reason_code: NonEmptyStr
    model_config = examples({"refund_id": REFUND, "reason_code": "T21"})


class RefundApproved(RefundRef):
    approved_amount: Money
    model_config = examples(
        {"refund_id": REFUND, "approved_amount": {"amount": "105560.00", "currency": "CNY"}}
    )


class RefundIssued(RefundRef):
    """Treasury refund issued (退库)."""

    amount: Money
    model_config = examples({"refund_id": REFUND, "amount": {"amount": "105560.00", "currency": "CNY"}})


class RefundCredited(RefundIssued):
    """Money on the exporter's account."""


TOPIC = "taxrefund.events.v1"
EVENTS: dict[str, type[DataModel]] = {
    "taxrefund.refund.declared": RefundDeclared,
    "taxrefund.refund.accepted": RefundAccepted,
    "taxrefund.refund.flagged": RefundFlagged,
    "taxrefund.refund.rejected": RefundRejected,
    "taxrefund.refund.approved": RefundApproved,
    "taxrefund.refund.issued": RefundIssued,
    "taxrefund.refund.credited": RefundCredited,
}


CATALOG = Catalog.of(TOPIC, EVENTS)
