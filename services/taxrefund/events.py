"""``taxrefund.events.v1``: export VAT refund applications (contract 2.2)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from services.contract.catalog import Catalog
from services.contract.fields import DataModel, EntryId, Money, NonEmptyStr, Uscc, examples

REFUND = "RF4401012025110000123"

CATALOG = Catalog("taxrefund.events.v1")


class RefundRef(DataModel):
    refund_id: NonEmptyStr
    model_config = examples({"refund_id": REFUND})
    subject_field = "refund_id"


@CATALOG.event("taxrefund.refund.declared")
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


@CATALOG.event("taxrefund.refund.accepted")
class RefundAccepted(RefundRef):
    pass


@CATALOG.event("taxrefund.refund.flagged")
class RefundFlagged(RefundRef):
    doubt_codes: list[NonEmptyStr]
    model_config = examples({"refund_id": REFUND, "doubt_codes": ["D03"]})


@CATALOG.event("taxrefund.refund.rejected")
class RefundRejected(RefundRef):
    reason_code: NonEmptyStr
    model_config = examples({"refund_id": REFUND, "reason_code": "T21"})


@CATALOG.event("taxrefund.refund.approved")
class RefundApproved(RefundRef):
    approved_amount: Money
    model_config = examples(
        {"refund_id": REFUND, "approved_amount": {"amount": "105560.00", "currency": "CNY"}}
    )


@CATALOG.event("taxrefund.refund.issued")
class RefundIssued(RefundRef):
    """Treasury refund issued (退库)."""

    amount: Money
    model_config = examples({"refund_id": REFUND, "amount": {"amount": "105560.00", "currency": "CNY"}})


@CATALOG.event("taxrefund.refund.credited")
class RefundCredited(RefundIssued):
    """Money on the exporter's account."""
