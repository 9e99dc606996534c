"""``customs.events.v1``: international trade single window, customs declarations (docs/contract.md
section 2.1)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import model_validator

from services.contract.catalog import Catalog
from services.contract.fields import (
    CreditClass,
    CustomsCode,
    DataModel,
    EntryId,
    IeFlag,
    Money,
    NonEmptyStr,
    TradeMode,
    TransportMode,
    Uscc,
    examples,
)

ENTRY = "514120250000012345"  # Baiyun airport export entry number used in examples
ENTRY_IMPORT = "516520251000067890"

CATALOG = Catalog("customs.events.v1")


class EntryRef(DataModel):
    """Events that name only the declaration."""

    entry_id: EntryId
    model_config = examples({"entry_id": ENTRY})
    subject_field = "entry_id"


@CATALOG.event("customs.transport.arrived")
class TransportArrived(DataModel):
    bill_no: NonEmptyStr
    customs_code: CustomsCode
    ie_flag: IeFlag
    transport_mode: TransportMode
    model_config = examples(
        {"bill_no": "COSU6283715090", "customs_code": "5165", "ie_flag": "I", "transport_mode": "2"}
    )
    subject_field = "bill_no"  # arrivals are keyed by the bill of lading; the declaration names it too


@CATALOG.event("customs.declaration.lodged")
class DeclarationLodged(EntryRef):
    bill_no: NonEmptyStr | None = None
    customs_code: CustomsCode
    ie_flag: IeFlag
    trade_mode: TradeMode
    transport_mode: TransportMode
    credit_class: CreditClass
    declared_value: Money
    consignee_uscc: Uscc
    declaration_kind: Literal["one_time", "two_step_summary", "advance"] | None = None
    model_config = examples(
        {
            "entry_id": "516520251000067890",
            "bill_no": "COSU6283715090",
            "customs_code": "5165",
            "ie_flag": "I",
            "trade_mode": "0110",
            "transport_mode": "2",
            "credit_class": "general",
            "declared_value": {"amount": "812000.00", "currency": "CNY"},
            "consignee_uscc": "91440101MA5CXXXX1A",
            "declaration_kind": "advance",
        }
    )

    @model_validator(mode="after")
    def _entry_id_agrees(self) -> Self:
        """Digits 1-4 of the entry number are the customs office, digit 9 the import/export flag."""
        if self.entry_id[:4] != self.customs_code:
            msg = f"entry_id {self.entry_id} does not start with customs_code {self.customs_code}"
            raise ValueError(msg)
        if self.entry_id[8] != ("1" if self.ie_flag == "I" else "0"):
            msg = f"digit 9 of entry_id {self.entry_id} disagrees with ie_flag {self.ie_flag}"
            raise ValueError(msg)
        return self


@CATALOG.event("customs.declaration.accepted")
class DeclarationAccepted(EntryRef):
    pass


@CATALOG.event("customs.declaration.rejected")
class DeclarationRejected(EntryRef):
    reason_code: NonEmptyStr
    model_config = examples({"entry_id": ENTRY, "reason_code": "R012"})


@CATALOG.event("customs.declaration.risk_decided")
class RiskDecided(EntryRef):
    channel: Literal["auto_release", "document_review", "inspection"]
    model_config = examples({"entry_id": ENTRY, "channel": "auto_release"})


@CATALOG.event("customs.inspection.ordered")
class InspectionOrdered(EntryRef):
    pass


@CATALOG.event("customs.inspection.completed")
class InspectionCompleted(EntryRef):
    outcome: Literal["pass", "discrepancy", "seized"]
    model_config = examples({"entry_id": ENTRY, "outcome": "pass"})


@CATALOG.event("customs.duty.paid")
class DutyPaid(EntryRef):
    amount: Money
    method: Literal["cash", "guarantee", "auto"]
    model_config = examples(
        {"entry_id": ENTRY, "amount": {"amount": "10556.00", "currency": "CNY"}, "method": "auto"}
    )


@CATALOG.event("customs.declaration.released")
class DeclarationReleased(EntryRef):
    pass


@CATALOG.event("customs.goods.exited")
class GoodsExited(EntryRef):
    pass
