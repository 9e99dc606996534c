"""Generate ``schemas/``: one JSON Schema per event type, one for the indicator record, and the
AsyncAPI 3 document of every topic. The committed files must equal what this generates.

The services to document are passed in (the registry's); nothing here lists them."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from services.contract.catalog import Catalog, EventSpec
from services.contract.codec import DlqReason
from services.contract.envelope import JSON_DATA, cloud_event
from services.contract.records import (
    CASE_TYPE,
    INDICATOR_TYPE,
    RELEASE_TYPE,
    WATCH_TYPE,
    CaseEvent,
    CaseRecord,
    IndicatorEvent,
    IndicatorWindow,
    ReleaseCell,
    ReleaseEvent,
    WatchEvent,
    WatchFlag,
)
from services.contract.topics import case_topic, dlq_topic, indicator_topic

__all__ = ["SCHEMA_DIR", "Services", "check", "event_examples", "generate", "model_examples", "write"]

Services = Mapping[str, Sequence[Catalog]]
Derived = Mapping[str, Sequence[str]]
"""Service -> the case topics it reads (a derived service, e.g. the export cycle)."""
"""Service name -> the catalogs of the topics it consumes."""

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
BASE_ID = "https://tradepulse.example/schemas/"


def model_examples(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The ``examples`` a model declares in its config."""
    extra = model.model_config.get("json_schema_extra")
    found = extra.get("examples") if isinstance(extra, dict) else None
    return [dict(e) for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def _schema(model: Any, name: str, examples: list[dict[str, Any]]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{BASE_ID}{name}.json",
        **model.model_json_schema(mode="validation"),
    }
    schema["examples"] = examples
    return schema


def event_examples(spec: EventSpec) -> list[dict[str, Any]]:
    """Whole CloudEvents built from the data model's examples; the drift test validates them."""
    source, time = f"/{spec.topic.split('.')[0]}/example", "2025-03-01T08:30:00+08:00"
    return [
        cloud_event(f"{spec.name}-example-{i + 1}", source, spec.name, time, _subject(spec, data), data)
        for i, data in enumerate(model_examples(spec.data_model))
    ]


def _subject(spec: EventSpec, data: dict[str, Any]) -> str:
    return spec.data_model.model_validate(data).subject


def _record_examples(
    model: Any, ce_type: str, head: Callable[[Any, dict[str, Any]], tuple[str, str, str, str]], **options: Any
) -> list[dict[str, Any]]:
    """CloudEvents of one of TradePulse's own records from its model's examples: ``head`` gives the
    id, source, time and subject of a record (validated) and its data."""
    out = []
    for data in model_examples(model):
        eid, source, time, subject = head(model.model_validate(data, strict=False), data)
        out.append(cloud_event(eid, source, ce_type, time, subject, data, **options))
    return out


def indicator_examples() -> list[dict[str, Any]]:
    return _record_examples(
        IndicatorWindow,
        INDICATOR_TYPE,
        lambda w, _: (f"{w.key}|r{w.revision}", "/tradepulse/customs", "2025-03-01T09:00:05+08:00", w.key),
    )


def case_examples() -> list[dict[str, Any]]:
    def head(r: CaseRecord, data: dict[str, Any]) -> tuple[str, str, str, str]:
        return (
            f"{r.case_id}|r{r.revision}",
            f"/tradepulse/{r.service}",
            max(data["milestones"].values()),
            r.case_id,
        )

    return _record_examples(CaseRecord, CASE_TYPE, head, **JSON_DATA)


def watch_examples() -> list[dict[str, Any]]:
    def head(w: WatchFlag, data: dict[str, Any]) -> tuple[str, str, str, str]:
        return f"{w.case_id}|{w.rule}|{w.state}", f"/tradepulse/{w.service}", data["since"], w.case_id

    return _record_examples(WatchFlag, WATCH_TYPE, head, **JSON_DATA)


def release_examples() -> list[dict[str, Any]]:
    def head(c: ReleaseCell, data: dict[str, Any]) -> tuple[str, str, str, str]:
        return f"{c.key}|{c.policy_sha256[:16]}", "/tradepulse/release/hk", data["window_end"], c.key

    return _record_examples(ReleaseCell, RELEASE_TYPE, head, **JSON_DATA)


# TradePulse's own records: AsyncAPI message id, CloudEvents type (its schema file is the type less
# "tradepulse."), the event model and its examples.
_OUTPUT_RECORDS: tuple[tuple[str, str, type[BaseModel], Callable[[], list[dict[str, Any]]]], ...] = (
    ("indicatorWindow", INDICATOR_TYPE, IndicatorEvent, indicator_examples),
    ("caseUpdated", CASE_TYPE, CaseEvent, case_examples),
    ("watchUpdated", WATCH_TYPE, WatchEvent, watch_examples),
    ("releaseCell", RELEASE_TYPE, ReleaseEvent, release_examples),
)


def _asyncapi(services: Services, derived: Derived) -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name, inputs in derived.items():
        _derived_service(name, inputs, channels, operations)
    _release(list(services), channels, operations)
    _watch(channels, operations)
    for name, catalogs in services.items():
        (domain,) = catalogs  # one input topic per service so far
        refs = {}
        for type_name in domain.events:
            mid = type_name.replace(".", "_")
            messages[mid] = {
                "name": type_name,
                "title": type_name,
                "contentType": "application/cloudevents+json",
                "summary": f"CloudEvent {type_name}; binary mode (ce_* headers) is accepted too.",
                "payload": {"$ref": f"./{type_name}.json"},
            }
            refs[mid] = {"$ref": f"#/components/messages/{mid}"}
        channels[name] = {
            "address": domain.topic,
            "description": f"Input events of the {name} domain (subject: the case id).",
            "messages": refs,
        }
        service = f"tradepulse worker {name}"
        description = (
            "Records of the input topic that could not be taken, unchanged, with headers "
            "dlq_reason, dlq_detail, dlq_topic, dlq_partition, dlq_offset."
        )
        _channel(channels, f"{name}_dlq", dlq_topic(domain.topic), description, "deadLetter")
        summary = f"{service} consumes every event type of {domain.topic}."
        _operation(operations, f"{name}_receiveEvents", "receive", name, summary)
        summary = f"{service} dead-letters records it cannot take."
        _operation(operations, f"{name}_sendDeadLetters", "send", f"{name}_dlq", summary)
        _outputs(name, service, channels, operations)
    messages["deadLetter"] = {
        "name": "deadLetter",
        "contentType": "application/octet-stream",
        "summary": "The original record value and headers, plus the dead-letter headers.",
        "headers": {
            "type": "object",
            "required": ["dlq_reason", "dlq_detail", "dlq_topic", "dlq_partition", "dlq_offset"],
            "properties": {
                "dlq_reason": {"type": "string", "enum": [reason.value for reason in DlqReason]},
                "dlq_detail": {"type": "string"},
                "dlq_topic": {"type": "string"},
                "dlq_partition": {"type": "string"},
                "dlq_offset": {"type": "string"},
            },
        },
    }
    for message, ce_type, _, _ in _OUTPUT_RECORDS:
        schema = ce_type.removeprefix("tradepulse.")
        messages[message] = {"name": ce_type, "contentType": "application/cloudevents+json",
                             "payload": {"$ref": f"./{schema}.json"}}  # fmt: skip
    return {
        "asyncapi": "3.0.0",
        "id": "urn:tradepulse",
        "info": {
            "title": "TradePulse",
            "version": "1.0.0",
            "description": (
                "Live trade-facilitation indicators from customs, export refund, CIPS and CBEC "
                "events. Generated from the pydantic models by `tradepulse schemas export`."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def _derived_service(
    name: str, inputs: Sequence[str], channels: dict[str, Any], operations: dict[str, Any]
) -> None:
    """A service fed by other services' case topics: it receives those channels, dead-letters to
    one per input, and sends its indicators and cases like every service."""
    service = f"tradepulse worker {name}"
    for topic in inputs:
        source = topic.split(".")[1]  # cases.<service>.v1
        summary = f"{service} reads the case records of {source}."
        _operation(operations, f"{name}_receive_{source}_cases", "receive", f"{source}_cases", summary)
        description = f"Case records of {topic} that {service} could not take, unchanged."
        _channel(channels, f"{name}_{source}_dlq", dlq_topic(topic), description, "deadLetter")
        summary = f"{service} dead-letters records of {topic} it cannot take."
        _operation(operations, f"{name}_sendDeadLetters_{source}", "send", f"{name}_{source}_dlq", summary)
    _outputs(name, service, channels, operations)


def _release(sources: Sequence[str], channels: dict[str, Any], operations: dict[str, Any]) -> None:
    """The cross-border release: one compacted topic per destination of the policies."""
    _templated(
        channels, operations, "release", "release_sendCells", "release.{destination}.v1", "releaseCell",
        ("destination", "The destination a release policy names (hk, mo)."),
        "Log-compacted cells released to one destination after disclosure control (docs/contract.md "
        "section 8): each cell once, when its window is final; key = CloudEvent subject.",
        "tradepulse worker release publishes each cell of a final window once, released or suppressed.",
    )  # fmt: skip
    for source in sources:
        summary = f"tradepulse worker release reads the case records of {source}."
        _operation(operations, f"release_receive_{source}_cases", "receive", f"{source}_cases", summary)


def _watch(channels: dict[str, Any], operations: dict[str, Any]) -> None:
    """The SLA watch: one compacted topic per service (empty for a service without watch rules)."""
    _templated(
        channels, operations, "watch", "watch_sendFlags", "watch.{service}.v1", "watchUpdated",
        ("service", "A service; customs, taxrefund and cips have watch rules."),
        "Log-compacted SLA watch flags (docs/contract.md section 9): the current flag of every case a "
        "rule flagged; key = case id = CloudEvent subject; a null value withdraws a flag.",
        "tradepulse worker <service> publishes a case's watch flag when it changes, by event or clock.",
    )  # fmt: skip


def _templated(
    channels: dict[str, Any],
    operations: dict[str, Any],
    cid: str,
    operation: str,
    address: str,
    message: str,
    parameter: tuple[str, str],
    description: str,
    summary: str,
) -> None:
    """A channel whose address has one parameter (a topic per destination, per service), and the
    operation that sends to it."""
    name, meaning = parameter
    ref = {"$ref": f"#/components/messages/{message}"}
    channels[cid] = {"address": address, "description": description,
                     "parameters": {name: {"description": meaning}}, "messages": {message: ref}}  # fmt: skip
    _operation(operations, operation, "send", cid, summary)


def _outputs(name: str, service: str, channels: dict[str, Any], operations: dict[str, Any]) -> None:
    description = "Log-compacted indicator window revisions; key = CloudEvent subject."
    _channel(channels, f"{name}_indicators", indicator_topic(name), description, "indicatorWindow")
    description = "Log-compacted current state of every case; key = case id = CloudEvent subject."
    _channel(channels, f"{name}_cases", case_topic(name), description, "caseUpdated")
    summary = f"{service} publishes indicator revisions."
    _operation(operations, f"{name}_sendIndicators", "send", f"{name}_indicators", summary)
    summary = f"{service} publishes the state of every case it changed, once per batch."
    _operation(operations, f"{name}_sendCases", "send", f"{name}_cases", summary)


def _channel(channels: dict[str, Any], cid: str, address: str, description: str, message: str) -> None:
    ref = {"$ref": f"#/components/messages/{message}"}
    channels[cid] = {"address": address, "description": description, "messages": {message: ref}}


def _operation(operations: dict[str, Any], oid: str, action: str, channel: str, summary: str) -> None:
    operations[oid] = {"action": action, "channel": {"$ref": f"#/channels/{channel}"}, "summary": summary}


def generate(
    services: Services, derived: Derived | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """File name -> text of every file in ``schemas/``; ``extra``: more generated files (the
    gateway's OpenAPI document, which lives with the gateway)."""
    files: dict[str, str] = dict(extra or {})
    for catalogs in services.values():
        for catalog in catalogs:
            for type_name, spec in catalog.events.items():
                files[f"{type_name}.json"] = _json(_schema(spec.model, type_name, event_examples(spec)))
    for _, ce_type, model, examples in _OUTPUT_RECORDS:
        schema = ce_type.removeprefix("tradepulse.")
        files[f"{schema}.json"] = _json(_schema(model, schema, examples()))
    files["asyncapi.yaml"] = yaml.safe_dump(
        _asyncapi(services, derived or {}), sort_keys=False, allow_unicode=True, width=100
    )
    return files


def _json(doc: Any) -> str:
    return json.dumps(doc, indent=2) + "\n"


def _present(directory: Path) -> set[str]:
    """Names of the generated kinds of file (JSON, YAML) in ``directory``."""
    if not directory.exists():
        return set()
    return {p.name for p in directory.iterdir() if p.suffix in {".json", ".yaml"}}


def write(
    services: Services,
    directory: Path = SCHEMA_DIR,
    derived: Derived | None = None,
    extra: Mapping[str, str] | None = None,
) -> list[str]:
    """Write every generated file and remove stale ones; returns the names written."""
    directory.mkdir(parents=True, exist_ok=True)
    files = generate(services, derived, extra)
    for name, text in files.items():
        (directory / name).write_text(text)
    for stale in _present(directory) - set(files):
        (directory / stale).unlink()
    return sorted(files)


def check(
    services: Services,
    directory: Path = SCHEMA_DIR,
    derived: Derived | None = None,
    extra: Mapping[str, str] | None = None,
) -> list[str]:
    """Names of files that are missing, stale or differ from what the models generate."""
    files = generate(services, derived, extra)
    drift = [n for n, t in files.items() if not (directory / n).exists() or (directory / n).read_text() != t]
    drift += sorted(_present(directory) - set(files))
    return sorted(drift)
