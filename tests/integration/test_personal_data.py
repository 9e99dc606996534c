"""Personal data never leaves the intake (docs/contract.md section 6): a CBEC run whose import orders
carry buyer and consignee fields, valid and invalid, then a search for every personal value in
every topic the worker wrote (the dead-letter topic's records excepted, which must stay
replayable), the dead-letter headers, the PostgreSQL tables, ``/metrics`` and every log line."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient

from services.cbec.events import OrderDeclared
from services.cbec.simulator import simulate
from services.tools.simulate import Faults, encode, perturb
from tests.integration.harness import StartWorker, caught_up, produce, read_to_end, start_history, worker_env
from tests.integration.test_domains import CBEC

PERSONAL = OrderDeclared.personal_fields()


def _invalid_orders(events: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Orders refused for their personal fields: a wrong identity card check character, a phone
    with letters; each with values of its own, so a leak of a refused record is found too."""
    orders = [e for e in events if e["type"] == "cbec.order.declared" and "buyer_id_number" in e["data"]]
    out = []
    for i, order in enumerate(rng.sample(orders, 12)):
        bad = copy.deepcopy(order)
        bad["id"] += "-refused"
        bad["data"]["order_no"] = bad["data"]["order_no"][:-3] + "999"
        bad["data"]["buyer_name"] = f"Refused Buyer {i:04d}"
        bad["data"]["consignee_address"] = f"{i} Refused Street, Test District"
        if i % 2:
            number = bad["data"]["buyer_id_number"]
            wrong = "0" if number[-1] != "0" else "1"
            bad["data"]["buyer_id_number"] = number[:-1] + wrong
        else:
            bad["data"]["buyer_phone"] = f"100-PHONE-{i:04d}"
        bad["subject"] = f"{bad['data']['ebp_code']}:{bad['data']['order_no']}"
        out.append(bad)
    return out


def _values(events: list[dict[str, Any]]) -> set[bytes]:
    """Every personal value sent, long enough to be unambiguous (``buyer_id_type`` is "1" or "2")."""
    found = {
        str(e["data"][f]).encode()
        for e in events
        if e["type"] == "cbec.order.declared"
        for f in PERSONAL & e["data"].keys()
    }
    return {v for v in found if len(v) >= 8}


def _hits(blob: bytes, values: set[bytes]) -> list[bytes]:
    return sorted(v for v in values if v in blob)


async def _topics(bootstrap: str, prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.startswith(prefix))
    finally:
        await admin.close()


async def _tables(url: str) -> bytes:
    conn = await asyncpg.connect(url)
    try:
        names = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        rows = [
            row[0]
            for (name,) in names
            for row in await conn.fetch(f'SELECT t::text FROM "{name}" t')  # names from the catalog
        ]
        return "\n".join(rows).encode()
    finally:
        await conn.close()


async def test_no_personal_value_leaves_the_intake(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker, database_url: str, tmp_path: Path
) -> None:
    events = simulate(cases=150, seed=61, start_s=CBEC.start_s, span_s=CBEC.span_s)
    refused = _invalid_orders(events, random.Random(61))
    values = _values(events + refused)
    assert len(values) > 500, "the corpus must carry personal data"

    worker = start_worker("cbec", **CBEC.fast)
    history_log = tmp_path / "history.log"
    history = start_history(worker_env(kafka_bootstrap, prefix, DATABASE_URL=database_url), history_log)
    try:
        # a fifth under other keys: those orders are forwarded to their case's partition, a path
        # that must drop the personal fields as well
        records = perturb(events, Faults(rekey=0.2, binary=0.5, duplicates=0.05), random.Random(61))
        records += [encode(e, binary=i % 2 == 0) for i, e in enumerate(refused)]
        await produce(kafka_bootstrap, prefix + CBEC.topic, records)
        await CBEC.settle(kafka_bootstrap, prefix)
        sources = [f"{prefix}indicators.cbec.v1", f"{prefix}cases.cbec.v1"]
        await caught_up(kafka_bootstrap, f"{prefix}tradepulse-history", sources)

        leaks: dict[str, list[bytes]] = {}
        written = 0
        for topic in await _topics(kafka_bootstrap, prefix):
            if topic == prefix + CBEC.topic:
                continue  # the producers' own records
            for r in await read_to_end(kafka_bootstrap, topic):
                headers = b"\n".join(k.encode() + b"=" + v for k, v in r.headers)
                dead_letter = topic.endswith(".dlq")
                blob = headers if dead_letter else b"\n".join([r.key or b"", r.value or b"", headers])
                written += not dead_letter
                leaks[topic] = leaks.get(topic, []) + _hits(blob, values)
        leaks["postgresql"] = _hits(await _tables(database_url), values)
        leaks["/metrics"] = _hits(worker.get("/metrics")[1].encode(), values)
        leaks["worker log"] = _hits(worker.log.read_bytes(), values)
        leaks["history log"] = _hits(history_log.read_bytes(), values)
    finally:
        history.terminate()
        history.wait(timeout=30)

    assert written > 300, "the worker must have written cases, indicators and its internal topics"
    dead = await read_to_end(kafka_bootstrap, f"{prefix}{CBEC.topic}.dlq")
    assert len(dead) == len(refused), "each refused order is dead-lettered, and only those"
    assert all(_hits(r.value, values) for r in dead), "the dead letter is the original record"
    details = [dict(r.headers)["dlq_detail"].decode() for r in dead]
    assert all(d.startswith("data.buyer_") for d in details), details
    assert {k: v for k, v in leaks.items() if v} == {}
