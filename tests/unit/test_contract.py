"""The contract in code: catalog completeness, examples that validate, committed schemas in step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from services.contract import schemas as schemas_export
from services.contract.codec import decode, encode
from services.contract.records import CaseEvent, IndicatorEvent, IndicatorWindow, ReleaseEvent
from services.contract.topics import case_topic, dlq_topic, indicator_topic, watch_topic
from services.gateway import openapi
from services.registry import DOMAINS, SOURCES, catalogs, derived
from services.registry import EVENT_TYPES as CATALOG
from services.release.service import release_topic

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contract.md"

EXTRA = openapi.documents()


def test_catalog_has_exactly_the_event_types_of_the_contract() -> None:
    """The types of section 2 of docs/contract.md (the owner's list, not one kept here), each on
    its domain's topic."""
    import re

    text = CONTRACT.read_text()
    section = text[text.index("## 2. Input topics") : text.index("## 3. Bad input")]
    rows = re.findall(r"^\| `([a-z0-9_]+\.[a-z0-9_.]+)` \|", section, re.M)
    named = {name for name in rows if not re.search(r"\.v\d+$", name)}  # not the topics' rows
    assert named == set(CATALOG)
    for d in SOURCES.values():
        assert all(t.startswith(f"{d.name}.") for t in d.catalog.events), d.name


@pytest.mark.parametrize("type_name", sorted(CATALOG))
def test_every_example_validates_and_decodes_in_both_modes(type_name: str) -> None:
    spec = CATALOG[type_name]
    examples = schemas_export.event_examples(spec)
    assert examples, f"{type_name} has no example"
    catalog = DOMAINS[type_name.split(".")[0]].catalog
    for example in examples:
        spec.model.model_validate(example, strict=False)
        example = {**example, "datacontenttype": "application/json"}  # binary mode always says it
        s_headers, s_value = encode(example)
        b_headers, b_value = encode(example, binary=True)
        assert decode(s_value, s_headers, catalog=catalog) == decode(b_value, b_headers, catalog=catalog)


@pytest.mark.parametrize("type_name", sorted(CATALOG))
def test_committed_json_schema_accepts_the_examples(type_name: str) -> None:
    schema = json.loads((schemas_export.SCHEMA_DIR / f"{type_name}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for example in schema["examples"]:
        jsonschema.validate(example, schema)


def test_indicator_examples_validate() -> None:
    schema = json.loads((schemas_export.SCHEMA_DIR / "indicator.window.json").read_text())
    for example in schema["examples"]:
        jsonschema.validate(example, schema)
        event = IndicatorEvent.model_validate(example, strict=False)
        assert event.subject == event.data.key


def test_indicator_key_sorts_dimensions() -> None:
    window = IndicatorWindow.model_validate(schemas_export.indicator_examples()[0]["data"], strict=False)
    assert window.key == (
        "customs.release_time|PT1H|2025-03-01T08:00:00+08:00|customs_code=5165,ie_flag=I,transport_mode=2"
    )


def test_committed_schemas_equal_what_the_models_generate() -> None:
    drift = schemas_export.check(catalogs(), derived=derived(), extra=EXTRA)
    assert drift == [], f"run `tradepulse schemas export`; stale: {drift}"


def test_drift_check_notices_a_changed_file(tmp_path: Path) -> None:
    schemas_export.write(catalogs(), tmp_path, derived=derived(), extra=EXTRA)
    assert schemas_export.check(catalogs(), tmp_path, derived=derived(), extra=EXTRA) == []
    victim = tmp_path / "customs.declaration.lodged.json"
    victim.write_text(victim.read_text().replace("entry_id", "entry_no"))
    (tmp_path / "obsolete.json").write_text("{}")
    assert schemas_export.check(catalogs(), tmp_path, derived=derived(), extra=EXTRA) == [
        "customs.declaration.lodged.json",
        "obsolete.json",
    ]


def test_asyncapi_names_every_topic_with_its_senders_and_receivers() -> None:
    doc: dict[str, Any] = yaml.safe_load((schemas_export.SCHEMA_DIR / "asyncapi.yaml").read_text())
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    inputs = {d.topic for d in SOURCES.values()}
    assert addresses == (
        inputs
        | {dlq_topic(t) for t in inputs}
        | {dlq_topic(t) for inputs in derived().values() for t in inputs}
        | {indicator_topic(n) for n in DOMAINS}
        | {case_topic(n) for n in DOMAINS}
        | {release_topic("{destination}")}
        | {watch_topic("{service}")}
    )
    refs = {op["channel"]["$ref"].split("/")[-1]: op["action"] for op in doc["operations"].values()}
    for name in SOURCES:
        assert refs[name] == "receive"
        assert refs[f"{name}_dlq"] == "send"
        assert refs[f"{name}_indicators"] == "send"
        assert refs[f"{name}_cases"] == "send"
    received = {
        (op["channel"]["$ref"].split("/")[-1])
        for op in doc["operations"].values()
        if op["action"] == "receive"
    }
    for name, topics in derived().items():  # a derived service receives the case channels it reads
        assert {f"{t.split('.')[1]}_cases" for t in topics} <= received, name
        assert refs[f"{name}_indicators"] == "send"
    messages = {m["name"] for m in doc["components"]["messages"].values()}
    assert set(CATALOG) <= messages
    assert refs["release"] == "send"  # the release reads every source's cases and sends its cells
    assert {f"{name}_cases" for name in SOURCES} <= received


def test_release_examples_validate() -> None:
    schema = json.loads((schemas_export.SCHEMA_DIR / "release.cell.json").read_text())
    assert len(schema["examples"]) == 2
    for example in schema["examples"]:
        jsonschema.validate(example, schema)
        event = ReleaseEvent.model_validate(example, strict=False)
        assert event.subject == event.data.key


def test_case_examples_validate() -> None:
    schema = json.loads((schemas_export.SCHEMA_DIR / "case.updated.json").read_text())
    assert schema["examples"]
    for example in schema["examples"]:
        jsonschema.validate(example, schema)
        event = CaseEvent.model_validate(example, strict=False)
        assert event.subject == event.data.case_id


@pytest.mark.parametrize("name", sorted(openapi.documents()))
def test_the_openapi_documents_are_valid_for_the_official_validator(name: str) -> None:
    """openapi-spec-validator, pinned in pyproject.toml; the event schemas they refer to resolve."""
    from openapi_spec_validator import validate

    document = yaml.safe_load((schemas_export.SCHEMA_DIR / name).read_text())
    validate(document, base_uri=schemas_export.SCHEMA_DIR.as_uri() + "/")
