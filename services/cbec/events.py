"""``cbec.events.v1``: cross-border e-commerce clearance (contract 2.4)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from services.contract.catalog import Catalog
from services.contract.fields import (
    CustomsCode,
    DataModel,
    IeFlag,
    Money,
    NonEmptyStr,
    Personal,
    PersonalText,
    Phone,
    examples,
    resident_id_valid,
)

ORDER: dict[str, object] = {"order_no": "SO20251111000123", "ebp_code": "4401986XYZ"}
LIST: dict[str, object] = {**ORDER, "invt_no": "51412025I000012345"}

CATALOG = Catalog("cbec.events.v1")


class OrderRef(DataModel):
    order_no: NonEmptyStr
    ebp_code: NonEmptyStr

    @property
    def subject(self) -> str:
        """``<ebp_code>:<order_no>``: order numbers are unique per e-commerce platform."""
        return f"{self.ebp_code}:{self.order_no}"


def _id_type(value: object) -> object:
    """``1`` and ``"1"`` alike: the single window's XML has it as text, JSON producers send either."""
    return str(value) if value in (1, 2) and not isinstance(value, bool) else value


@CATALOG.event("cbec.order.declared")
class OrderDeclared(OrderRef):
    """An e-commerce order. The buyer and consignee fields are personal data (contract sections 2.4
    and 6): validated here, left out of everything past the intake, never quoted in an error."""

    ebc_code: NonEmptyStr
    ie_flag: IeFlag
    goods_value: Money
    buyer_reg_no: PersonalText | None = None
    buyer_name: PersonalText | None = None
    buyer_id_type: Annotated[Literal["1", "2"], BeforeValidator(_id_type), Personal()] | None = None
    buyer_id_number: PersonalText | None = None
    buyer_phone: Phone | None = None
    consignee_name: PersonalText | None = None
    consignee_phone: Phone | None = None
    consignee_address: PersonalText | None = None
    model_config = examples(
        {
            **ORDER,
            "ebc_code": "4401960ABC",
            "ie_flag": "I",
            "goods_value": {"amount": "299.00", "currency": "CNY"},
        },
        {
            **ORDER,
            "ebc_code": "4401960ABC",
            "ie_flag": "I",
            "goods_value": {"amount": "299.00", "currency": "CNY"},
            "buyer_reg_no": "TESTBUYER0001",
            "buyer_name": "Test Buyer",
            "buyer_id_type": "1",
            "buyer_id_number": "000000199001010018",
            "buyer_phone": "10000000001",
            "consignee_name": "Test Consignee",
            "consignee_phone": "10000000002",
            "consignee_address": "1 Example Road, Test District",
        },
    )

    @field_validator("buyer_id_number")
    @classmethod
    def _resident_id(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("buyer_id_type") == "1" and not resident_id_valid(value):
            msg = (
                "buyer_id_type 1 needs a resident identity card number: 18 characters, a birth "
                "date, and the ISO 7064 MOD 11-2 check character"
            )
            raise ValueError(msg)
        return value


@CATALOG.event("cbec.payment.declared")
class PaymentDeclared(OrderRef):
    pay_code: NonEmptyStr
    amount: Money
    model_config = examples(
        {**ORDER, "pay_code": "312226T001", "amount": {"amount": "299.00", "currency": "CNY"}}
    )


@CATALOG.event("cbec.waybill.declared")
class WaybillDeclared(OrderRef):
    logistics_code: NonEmptyStr
    logistics_no: NonEmptyStr
    model_config = examples({**ORDER, "logistics_code": "4401984XXX", "logistics_no": "SF1234567890"})


@CATALOG.event("cbec.list.declared")
class ListDeclared(OrderRef):
    invt_no: NonEmptyStr
    customs_code: CustomsCode
    supervision_mode: Literal["9610", "1210", "9710", "9810"]
    ie_flag: IeFlag
    total_value: Money
    model_config = examples(
        {
            **LIST,
            "customs_code": "5141",
            "supervision_mode": "1210",
            "ie_flag": "I",
            "total_value": {"amount": "299.00", "currency": "CNY"},
        }
    )


@CATALOG.event("cbec.list.status")
class ListStatus(OrderRef):
    """A customs receipt: 100 rejected, 120 accepted, 300 manual review, 399 reviewed, 500 inspection,
    501-599 detained, 700 sent back, 800 released, 899 closed (other codes are kept as sent)."""

    invt_no: NonEmptyStr
    status: Annotated[int, Field(ge=1, le=999)]
    model_config = examples({**LIST, "status": 120}, {**LIST, "status": 800})


@CATALOG.event("cbec.return.requested")
class ReturnRequested(OrderRef):
    invt_no: NonEmptyStr
    model_config = examples(LIST)
