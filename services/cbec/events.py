"""``cbec.events.v1``: cross-border e-commerce clearance (contract 2.4)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from services.contract.catalog import Catalog
from services.contract.fields import CustomsCode, DataModel, IeFlag, Money, NonEmptyStr, examples

ORDER: dict[str, object] = {"order_no": "SO20251111000123", "ebp_code": "4401986XYZ"}
LIST: dict[str, object] = {**ORDER, "invt_no": "51412025I000012345"}


class OrderRef(DataModel):
    order_no: NonEmptyStr
    ebp_code: NonEmptyStr

    @property
    def subject(self) -> str:
        """``<ebp_code>:<order_no>``: order numbers are unique per e-commerce platform."""
        return f"{self.ebp_code}:{self.order_no}"


class OrderDeclared(OrderRef):
    ebc_code: NonEmptyStr
    ie_flag: IeFlag
    goods_value: Money
    model_config = examples(
        {
            **ORDER,
            "ebc_code": "4401960ABC",
            "ie_flag": "I",
            "goods_value": {"amount": "299.00", "currency": "CNY"},
        }
    )


class PaymentDeclared(OrderRef):
    pay_code: NonEmptyStr
    amount: Money
    model_config = examples(
        {**ORDER, "pay_code": "312226T001", "amount": {"amount": "299.00", "currency": "CNY"}}
    )


class WaybillDeclared(OrderRef):
    logistics_code: NonEmptyStr
    logistics_no: NonEmptyStr
    model_config = examples({**ORDER, "logistics_code": "4401984XXX", "logistics_no": "SF1234567890"})


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


class ListStatus(OrderRef):
    """A customs receipt: 100 rejected, 120 accepted, 300 manual review, 399 reviewed, 500 inspection,
    501-599 detained, 700 sent back, 800 released, 899 closed (other codes are kept as sent)."""

    invt_no: NonEmptyStr
    status: Annotated[int, Field(ge=1, le=999)]
    model_config = examples({**LIST, "status": 120}, {**LIST, "status": 800})


class ReturnRequested(OrderRef):
    invt_no: NonEmptyStr
    model_config = examples(LIST)


TOPIC = "cbec.events.v1"
EVENTS: dict[str, type[DataModel]] = {
    "cbec.order.declared": OrderDeclared,
    "cbec.payment.declared": PaymentDeclared,
    "cbec.waybill.declared": WaybillDeclared,
    "cbec.list.declared": ListDeclared,
    "cbec.list.status": ListStatus,
    "cbec.return.requested": ReturnRequested,
}


CATALOG = Catalog.of(TOPIC, EVENTS)
