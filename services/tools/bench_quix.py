"""The peer in ``tradepulse bench``: Quix Streams doing what a user would write with it for the same
job, on the same records (issue 15, docs/performance.md).

Per record: parse the CloudEvent (structured or binary mode) with orjson, drop duplicates by
(source, id) in per-key state, keep the case's lifecycle (earliest time of each event type) in
per-key state, and put each new duration into a 1 h tumbling event-time window per key. State is
Quix's RocksDB with changelog topics, at-least-once, its default commit interval. It validates no
schema: the bar is the lightest peer, not a copy of our contract checks.

Run as ``python -m services.tools.bench_quix N OUT TOPIC`` with ``KAFKA_BOOTSTRAP_SERVERS``; it
writes ``{"events_per_s": ...}`` to OUT, timed from the first record processed to the N-th.
Needs the optional ``bench`` extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

__all__ = ["quix_available", "run_quix"]


def quix_available() -> bool:
    """Whether the optional ``bench`` extra is installed."""
    return importlib.util.find_spec("quixstreams") is not None


def _attributes(value: bytes, headers: Any) -> dict[str, Any]:
    """The CloudEvent as one dict, whichever content mode carried it."""
    pairs = {k.lower(): v for k, v in headers or ()}
    if b"cloudevents" in pairs.get("content-type", b"") or "ce_specversion" not in pairs:
        doc: dict[str, Any] = orjson.loads(value)
        return doc
    event = {k[3:]: v.decode() for k, v in pairs.items() if k.startswith("ce_")}
    event["data"] = orjson.loads(value)
    return event


def _connection(bootstrap: str) -> Any:
    """The KAFKA_* security settings in librdkafka's terms (Quix runs on librdkafka)."""
    from quixstreams.kafka.configuration import ConnectionConfig

    from services.runtime.security import KafkaSecurity

    sec = KafkaSecurity()
    options: dict[str, Any] = {"bootstrap_servers": bootstrap, "security_protocol": sec.protocol.lower()}
    if sec.sasl:
        options |= {
            "sasl_mechanism": sec.sasl_mechanism,
            "sasl_username": sec.sasl_username,
            "sasl_password": sec.sasl_password,
        }
    if sec.tls:
        files = {"ssl_ca_location": sec.ssl_cafile, "ssl_certificate_location": sec.ssl_certfile}
        options |= {k: str(v) for k, v in files.items() if v is not None}
        if sec.ssl_keyfile is not None:
            options["ssl_key_location"] = str(sec.ssl_keyfile)
            options["ssl_key_password"] = sec.ssl_key_password
        if not sec.ssl_check_hostname:
            options["ssl_endpoint_identification_algorithm"] = "none"
    return ConnectionConfig(**options)


def run_quix(n: int, out: Path, topic_name: str) -> None:
    from quixstreams import Application, State
    from quixstreams.models import TimestampType
    from quixstreams.models.serializers import Deserializer

    class CloudEventDeserializer(Deserializer):
        def __call__(self, value: bytes, ctx: Any) -> Any:
            event = _attributes(value, ctx.headers)
            event["time_ms"] = int(datetime.fromisoformat(event["time"].upper()).timestamp() * 1000)
            return event

    def event_time(value: Any, headers: Any, timestamp: int, kind: TimestampType) -> int:
        return int(value["time_ms"])

    app = Application(
        broker_address=_connection(os.environ["KAFKA_BOOTSTRAP_SERVERS"]),
        consumer_group=f"bench-quix-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        state_dir=tempfile.mkdtemp(prefix="tradepulse-quix-"),
        loglevel="WARNING",
    )
    topic = app.topic(
        topic_name,
        value_deserializer=CloudEventDeserializer(),  # type: ignore[no-untyped-call]
        timestamp_extractor=event_time,
    )
    clock = {"seen": 0, "first": 0.0, "last": 0.0}

    def lifecycle(event: dict[str, Any], state: State[Any, Any]) -> float | None:
        """Dedup by (source, id), then the earliest time of each event type; a new milestone gives
        the case's running duration."""
        clock["seen"] += 1
        if clock["seen"] == 1:
            clock["first"] = time.perf_counter()
        if clock["seen"] >= n:
            clock["last"] = time.perf_counter()
            app.stop()
        seen = f"seen/{event['source']}/{event['id']}"
        if state.get(seen):
            return None
        state.set(seen, True)
        milestones: dict[str, int] = state.get("milestones") or {}
        at = event["time_ms"]
        if milestones.get(event["type"], at + 1) <= at:
            return None
        milestones[event["type"]] = at
        state.set("milestones", milestones)
        return (max(milestones.values()) - min(milestones.values())) / 1000

    sdf = app.dataframe(topic)
    sdf = sdf.apply(lifecycle, stateful=True).filter(lambda duration: duration is not None)
    sdf = sdf.tumbling_window(timedelta(hours=1)).mean().final()
    app.run(sdf)
    elapsed = clock["last"] - clock["first"]
    out.write_text(json.dumps({"events_per_s": n / elapsed if elapsed > 0 else None}))


if __name__ == "__main__":
    run_quix(int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
