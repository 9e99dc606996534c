"""Decoding: both content modes give the same model; each class of bad input has its reason."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.contract.codec import DecodeError, DlqReason, _checked, _valid, decode
from services.customs.events import CATALOG, DeclarationAccepted, DeclarationLodged
from tests.factories import TOPIC, accepted_event, binary, lodged_event, structured
from tests.sdk_events import VARIANTS, sdk_record


def _decode(headers: list[tuple[str, bytes]], value: bytes | None) -> Any:
    return decode(value, headers, catalog=CATALOG)


def _reject(headers: list[tuple[str, bytes]], value: bytes | None) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        _decode(headers, value)
    return info.value


@pytest.mark.parametrize("make", [accepted_event, lodged_event])
def test_structured_and_binary_modes_give_identical_models(make: Any) -> None:
    event = make()
    got = _decode(*binary(event))
    assert got.datacontenttype == "application/json"  # binary mode: content-type is the data's type
    assert _decode(*structured({**event, "datacontenttype": "application/json"})) == got


def test_structured_without_content_type_is_taken_when_it_has_specversion() -> None:
    event = accepted_event()
    assert _decode([], orjson.dumps(event)).id == event["id"]


def test_decoded_event_carries_typed_data_and_offset_aware_time() -> None:
    got = _decode(*structured(lodged_event()))
    assert isinstance(got.data, DeclarationLodged)
    assert got.data.declared_value.value == pytest.approx(812000)
    assert got.time.utcoffset() is not None
    assert got.dedup_key == ("/singlewindow/5141", got.id)


def test_nanosecond_timestamps_are_accepted() -> None:
    got = _decode(*structured(accepted_event(time="2025-03-01T08:30:00.123456789Z")))
    assert got.time.microsecond == 123456


def test_not_json_is_invalid_json() -> None:
    err = _reject(*structured(accepted_event())[:1], b"{not json")
    assert err.reason is DlqReason.INVALID_JSON


@pytest.mark.parametrize("value", [b"[1, 2]", b'"text"', b"42", b"null"])
def test_json_that_is_not_an_object_is_invalid_envelope(value: bytes) -> None:
    err = _reject([("content-type", b"application/cloudevents+json")], value)
    assert err.reason is DlqReason.INVALID_ENVELOPE
    assert "expected a CloudEvent JSON object" in err.detail


@pytest.mark.parametrize("attribute", ["specversion", "id", "source", "type", "time", "subject"])
@pytest.mark.parametrize("mode", [structured, binary])
def test_each_missing_required_attribute_is_named(attribute: str, mode: Any) -> None:
    event = accepted_event()
    del event[attribute]
    err = _reject(*mode(event))
    assert err.reason is DlqReason.INVALID_ENVELOPE
    assert attribute in err.detail


@pytest.mark.parametrize("attribute", ["id", "source", "subject", "type"])
def test_empty_string_attributes_are_refused(attribute: str) -> None:
    err = _reject(*structured(accepted_event(**{attribute: ""})))
    assert err.reason is DlqReason.INVALID_ENVELOPE
    assert attribute in err.detail


@pytest.mark.parametrize(
    "time",
    ["2025-03-01 08:30", "2025-03-01T08:30:00", "yesterday", 1740789000, "2025-02-30T08:30:00+08:00"],
)
def test_bad_time_is_invalid_envelope(time: Any) -> None:
    err = _reject(*structured(accepted_event(time=time)))
    assert err.reason is DlqReason.INVALID_ENVELOPE
    assert err.detail.startswith("time:")


def test_wrong_specversion_is_refused() -> None:
    err = _reject(*structured(accepted_event(specversion="0.3")))
    assert "specversion" in err.detail


def test_unknown_attribute_is_refused_and_named() -> None:
    err = _reject(*structured(accepted_event(colour="blue")))
    assert err.reason is DlqReason.INVALID_ENVELOPE
    assert err.detail.startswith("colour:")


def test_unknown_type_is_unknown_type() -> None:
    err = _reject(*structured(accepted_event(type="customs.declaration.teleported")))
    assert err.reason is DlqReason.UNKNOWN_TYPE


def test_type_of_another_topic_is_unknown_type_here() -> None:
    err = _reject(*structured(accepted_event(type="cips.payment.settled")))
    assert err.reason is DlqReason.UNKNOWN_TYPE
    assert TOPIC in err.detail


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "data.entry_id"),
        ({"entry_id": 514120250000012345}, "data.entry_id"),
        ({"entry_id": "12345"}, "data.entry_id"),
    ],
)
def test_data_field_missing_or_of_wrong_type_is_invalid_data(data: dict[str, Any], field: str) -> None:
    err = _reject(*structured(accepted_event(data=data)))
    assert err.reason is DlqReason.INVALID_DATA
    assert err.detail.startswith(field)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"declared_value": {"amount": 812000.0, "currency": "CNY"}}, "data.declared_value.amount"),
        ({"declared_value": {"amount": "1.2.3", "currency": "CNY"}}, "data.declared_value.amount"),
        ({"credit_class": "excellent"}, "data.credit_class"),
        ({"ie_flag": "X"}, "data.ie_flag"),
        ({"customs_code": "5141"}, "does not start with customs_code"),
        ({"ie_flag": "E"}, "disagrees with ie_flag"),
    ],
)
def test_lodged_data_is_checked_field_by_field(overrides: dict[str, Any], field: str) -> None:
    err = _reject(*structured(lodged_event(**overrides)))
    assert err.reason is DlqReason.INVALID_DATA
    assert field in err.detail


def test_data_that_is_not_an_object_is_invalid_data_in_both_modes() -> None:
    assert _reject(*structured(accepted_event(data=[1]))).reason is DlqReason.INVALID_DATA
    headers, _ = binary(accepted_event())
    assert _reject(headers, b"[1]").reason is DlqReason.INVALID_DATA


def test_missing_data_is_invalid_data() -> None:
    event = accepted_event()
    del event["data"]
    err = _reject(*structured(event))
    assert (err.reason, err.detail) == (DlqReason.INVALID_DATA, "data: missing")


def test_subject_must_name_the_entity_in_data() -> None:
    err = _reject(*structured(accepted_event(subject="516520251000067890")))
    assert err.reason is DlqReason.INVALID_ENVELOPE
    assert err.detail.startswith("subject:")


def test_record_over_the_size_limit_is_refused_before_parsing() -> None:
    headers, value = structured(accepted_event(data={"entry_id": "5", "pad": "x" * 2000}))
    with pytest.raises(DecodeError) as info:
        decode(value, headers, catalog=CATALOG, max_bytes=1024)
    assert info.value.reason is DlqReason.INVALID_ENVELOPE
    assert "over the limit of 1024 bytes" in info.value.detail


def test_tombstone_is_refused() -> None:
    assert _reject([], None).reason is DlqReason.INVALID_JSON


def test_binary_header_that_is_not_utf8_is_named() -> None:
    headers, value = binary(accepted_event())
    headers = [(k, b"\xff\xfe" if k == "ce_source" else v) for k, v in headers]
    err = _reject(headers, value)
    assert "ce_source" in err.detail


def test_unknown_data_fields_are_ignored_for_forward_compatibility() -> None:
    got = _decode(*structured(accepted_event(data={"entry_id": "514120250000012345", "new": 1})))
    assert isinstance(got.data, DeclarationAccepted)


def test_envelope_round_trips_through_binary_encoding() -> None:
    event = {**accepted_event(), "datacontenttype": "application/json"}  # binary mode always says it
    assert _decode(*binary(event)) == _decode(*structured(event))


@pytest.mark.parametrize("variant", [name for name, *_ in VARIANTS])
def test_records_written_by_the_cloudevents_sdk_decode_to_the_same_event(variant: str) -> None:
    event = lodged_event()
    key, value, headers = sdk_record(event, variant)
    got = decode(value, headers, catalog=CATALOG)
    ours = _decode(*structured(event))
    core = ("specversion", "id", "source", "type", "time", "subject", "data")
    assert [getattr(got, a) for a in core] == [getattr(ours, a) for a in core]
    assert key == event["subject"].encode()


def test_sdk_structured_record_keeps_its_content_type_as_datacontenttype() -> None:
    _, value, headers = sdk_record(accepted_event(), "http structured datacontenttype")
    assert ("content-type", b"application/json") in headers  # not application/cloudevents+json
    assert decode(value, headers, catalog=CATALOG).datacontenttype == "application/json"


def test_null_optional_attributes_count_as_absent() -> None:
    got = _decode(*structured(accepted_event(dataschema=None, traceparent=None)))
    assert got.dataschema is None


def test_json_object_without_specversion_and_without_ce_headers_is_refused() -> None:
    event = {k: v for k, v in accepted_event().items() if k != "specversion"}
    err = _reject([("content-type", b"application/json")], orjson.dumps(event))
    assert err.reason is DlqReason.INVALID_ENVELOPE
    assert "specversion" in err.detail
    assert "neither a structured-mode nor a binary-mode" in err.detail


def _both_paths(headers: list[tuple[str, bytes]], value: bytes) -> tuple[Any, Any]:
    """What the one-pass validation and the step-by-step decode make of one record."""
    hmap = {k.lower(): v for k, v in headers}
    content_type = hmap.get("content-type", b"").decode("latin-1").strip()
    structured_ct = content_type.lower().startswith("application/cloudevents")
    fast = _valid(value, hmap, content_type, structured_ct, CATALOG)
    try:
        checked: Any = _checked(value, hmap, content_type, structured_ct, CATALOG)
    except DecodeError as exc:
        checked = exc.reason
    return fast, checked


EDGE_RECORDS = {
    "structured": structured(lodged_event()),
    "binary": binary(lodged_event()),
    "sniffed with null datacontenttype": (
        [("content-type", b"application/json")],
        orjson.dumps({**accepted_event(), "datacontenttype": None}),
    ),
    "null extension attribute": structured({**accepted_event(), "comexampleext": None}),
    "ce_data header": ([*binary(accepted_event())[0], ("ce_data", b"{}")], binary(accepted_event())[1]),
    "NaN in an ignored data field": (
        structured(accepted_event())[0],
        structured(accepted_event())[1].replace(b'"data":{', b'"data":{"x":NaN,'),
    ),
    "header that is not UTF-8": ([*binary(accepted_event())[0], ("ce_traceparent", b"\xff")], b"{}"),
    "unknown type": structured(accepted_event(type="customs.unknown")),
}


@pytest.mark.parametrize("case", list(EDGE_RECORDS))
def test_one_pass_validation_takes_exactly_what_the_checked_decode_takes(case: str) -> None:
    fast, checked = _both_paths(*EDGE_RECORDS[case])
    if isinstance(checked, DlqReason):
        assert fast is None, f"one pass took a record the checked decode refuses as {checked}"
    else:
        assert fast is None or fast == checked
    if case in ("structured", "binary"):
        assert fast is not None, "a valid record must not need the slow path"
