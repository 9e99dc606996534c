"""The cross-border release on the real broker and PostgreSQL (docs/contract.md section 8), with a
corpus built to tempt disclosure: ports with 1 to 9 declarations a day, a total with exactly one
cell under the threshold, a category with 11 refunds from 2 taxpayers, a day where one debtor bank
sends 80 % of the CIPS settled value, and a late correction after its cell was released.

Checked against tests/batch_release.py (an oracle written from the contract, not from the service):
every cell's status, reason and rounded values; no released total with exactly one suppressed cell
under it; no identifier of the negative list anywhere on the topic or in the export; the correction
changes nothing released and is in the audit; a restart decides nothing again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import chinese_calendar
import orjson
import pytest

from services.cips.events import PaymentInitiated
from services.contract.codec import encode
from services.contract.schemas import model_examples
from services.customs.events import DeclarationLodged
from services.taxrefund.events import RefundDeclared
from tests.batch_release import CST, Fact, recoverable, release
from tests.integration.harness import REPO, StartWorker, caught_up, produce, read_to_end, worker_env

SHIPPED = REPO / "deploy" / "release" / "hk.yaml"
D1, D2 = datetime(2025, 3, 3, tzinfo=CST), datetime(2025, 3, 4, tzinfo=CST)
TICK = datetime(2025, 4, 5, 10, tzinfo=CST)  # past March, and D1 still within customs retention (35 days)


class Corpus:
    """Events per input topic, and the facts the oracle gets (what each case must count as)."""

    def __init__(self) -> None:
        self.events: dict[str, list[dict[str, Any]]] = {"customs": [], "taxrefund": [], "cips": []}
        self.facts: list[Fact] = []
        self.ids: set[str] = set()
        self.n = 0

    def _event(
        self, service: str, source: str, type_: str, at: datetime, subject: str, data: dict[str, Any]
    ) -> None:
        self.n += 1
        self.events[service].append(
            {
                "specversion": "1.0",
                "id": f"r{self.n}",
                "source": source,
                "type": type_,
                "time": at.isoformat(),
                "subject": subject,
                "data": data,
            }
        )

    def declaration(
        self, port: str, ie: str, uscc: str, lodged: datetime, seconds: float, *, fact: bool = True
    ) -> None:
        self.n += 1
        entry = f"{port}2025{int(ie == 'I')}{self.n:09d}"  # digit 9: the direction
        bill = f"TPBL{self.n:010d}"
        data = {
            **model_examples(DeclarationLodged)[0],
            "entry_id": entry,
            "bill_no": bill,
            "customs_code": port,
            "ie_flag": ie,
            "consignee_uscc": uscc,
            "declaration_kind": "one_time",
        }
        source = f"/singlewindow/{port}"
        released = lodged + timedelta(seconds=seconds)
        self._event("customs", source, "customs.declaration.lodged", lodged, entry, data)
        self._event("customs", source, "customs.declaration.released", released, entry, {"entry_id": entry})
        self.ids |= {entry, bill, uscc}
        if fact:
            dims = {"customs_code": port, "ie_flag": ie}
            self.facts.append(Fact("customs.release_time", released, dims, seconds, uscc))

    def refund(self, category: int, uscc: str, accepted: datetime, issued: datetime) -> None:
        self.n += 1
        rid = f"RF44010120250{self.n:08d}"
        data = {
            **model_examples(RefundDeclared)[0],
            "refund_id": rid,
            "taxpayer_uscc": uscc,
            "mgmt_category": category,
            "entry_ids": [],
        }
        source = "/etax/14401060000"
        amount = {"amount": "1000.00", "currency": "CNY"}
        self._event(
            "taxrefund", source, "taxrefund.refund.declared", accepted - timedelta(hours=1), rid, data
        )
        self._event("taxrefund", source, "taxrefund.refund.accepted", accepted, rid, {"refund_id": rid})
        self._event(
            "taxrefund", source, "taxrefund.refund.issued", issued, rid, {"refund_id": rid, "amount": amount}
        )
        self.ids |= {rid, uscc}
        days = sum(
            1
            for i in range(1, (issued.date() - accepted.date()).days + 1)
            if chinese_calendar.is_workday(accepted.date() + timedelta(days=i))
        )
        dims = {"mgmt_category": str(category)}
        limit = {1: 5, 2: 10, 3: 15, 4: 20}[category]
        self.facts.append(Fact("taxrefund.processing_time", issued, dims, float(days), uscc))
        self.facts.append(Fact("taxrefund.within_limit", issued, dims, 1.0 if days <= limit else 0.0, uscc))

    def payment(
        self, msg_type: str, purpose: str, bank: str, amount: str, initiated: datetime, credit_s: float
    ) -> None:
        self.n += 1
        uetr = f"00000000-0000-4000-8000-{self.n:012d}"
        data = {
            **model_examples(PaymentInitiated)[0],
            "uetr": uetr,
            "msg_type": msg_type,
            "purpose": purpose,
            "debtor_agent": bank,
            "amount": {"amount": amount, "currency": "CNY"},
            "linked_entry_ids": [],
        }
        settled, credited = initiated + timedelta(seconds=30), initiated + timedelta(seconds=credit_s)
        for type_, at in (("initiated", initiated), ("settled", settled), ("credited", credited)):
            self._event(
                "cips",
                "/cips/gateway",
                f"cips.payment.{type_}",
                at,
                uetr,
                data if type_ == "initiated" else {"uetr": uetr},
            )
        self.ids |= {uetr, bank, data["creditor_agent"]}
        self.facts.append(
            Fact(
                "cips.credited_within_1h",
                credited,
                {"msg_type": msg_type},
                1.0 if credit_s <= 3600 else 0.0,
                bank,
            )
        )
        self.facts.append(
            Fact("cips.settled_value", settled, {"purpose": purpose}, 0.0, bank, Decimal(amount))
        )


def tempting() -> Corpus:
    c = Corpus()

    def declarations(day: datetime, port: str, ie: str, count: int, firms: int, base_s: float) -> None:
        for i in range(count):
            c.declaration(
                port,
                ie,
                f"914401CU{port}{'12'[ie == 'I']}{i % firms:05d}",
                day + timedelta(hours=8, minutes=7 * i),
                base_s + 97.0 * i,
            )

    # day 1: the ports of 1 to 9 declarations, one with 11 from two firms, imports whose total has
    # exactly one small port under it (so the other import cell goes too)
    declarations(D1, "5141", "E", 25, 5, 600)
    declarations(D1, "5165", "E", 12, 4, 1800)
    declarations(D1, "5130", "E", 3, 3, 900)
    declarations(D1, "5133", "E", 11, 2, 700)
    declarations(D1, "5200", "E", 1, 1, 400)
    declarations(D1, "5141", "I", 15, 4, 20000)
    declarations(D1, "5201", "I", 9, 3, 30000)
    # day 2: a total (exports) with exactly one cell under the threshold
    declarations(D2, "5141", "E", 25, 5, 650)
    declarations(D2, "5165", "E", 14, 4, 1500)
    declarations(D2, "5130", "E", 4, 3, 800)
    # March's refunds: category 3 has 11 refunds from 2 taxpayers
    for category, count, firms in ((1, 25, 6), (2, 12, 4), (3, 11, 2)):
        for i in range(count):
            accepted = datetime(2025, 3, 3 + i % 14, 9, tzinfo=CST)
            issued = accepted + timedelta(days=1 + i % 9, hours=2)
            c.refund(category, f"914401RF{category}{i % firms:09d}", accepted, issued)
    # day 1's CIPS: one debtor bank sends 80 % of the goods value
    for i in range(12):
        bank, amount = ("BKCHCNBJ110", "1000000.00") if i < 3 else (f"BNK{'ABC'[i % 3]}CNBJ", "83333.33")
        c.payment("customer", "goods", bank, amount, D1 + timedelta(hours=9, minutes=5 * i), 600 + 400 * i)
    for i in range(10):
        c.payment(
            "fi",
            "services",
            f"FIB{'ABCD'[i % 4]}CNSZ",
            f"{50000 + 1000 * i}.00",
            D1 + timedelta(hours=10, minutes=5 * i),
            1200 + 300 * i,
        )
    return c


def ticks() -> Corpus:
    """Declarations of May: every input's event time moves past March (their own cells are not final)."""
    c = Corpus()
    c.n = 800_000
    for i in range(8):
        c.declaration("5141", "E", f"914401TK{i:010d}", TICK + timedelta(minutes=i), 600, fact=False)
    return c


@pytest.fixture
def database(database_url: str, prefix: str) -> str:
    """A database of the test's own (the release's audit is per destination, and decisions stick)."""
    name = "release_" + prefix.strip(".")

    async def create() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _records(events: list[dict[str, Any]]) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    out = []
    for e in events:
        headers, body = encode(e)
        out.append((e["subject"].encode(), body, headers))
    return out


async def _audit(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def test_release_keeps_every_rule_and_matches_the_oracle(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker, database: str, tmp_path: Path
) -> None:
    policy = tmp_path / "hk.yaml"
    policy.write_text(SHIPPED.read_text())  # the shipped example, as shipped
    corpus = tempting()
    env = {
        "TRADEPULSE_CUSTOMS_IDLE_AFTER_S": "2",
        "TRADEPULSE_TAXREFUND_IDLE_AFTER_S": "2",
        "TRADEPULSE_CIPS_IDLE_AFTER_S": "2",
    }
    for service in ("customs", "taxrefund", "cips"):
        start_worker(service, **env)
    release_env = {
        "DATABASE_URL": database,
        "TRADEPULSE_RELEASE_POLICIES": str(policy),
        "TRADEPULSE_RELEASE_IDLE_AFTER_S": "10",
    }
    first = start_worker("release", **release_env)
    for service, events in corpus.events.items():
        asyncio.run(produce(kafka_bootstrap, f"{prefix}{service}.events.v1", _records(events)))
    for service in corpus.events:  # every case record of March is out before May's
        asyncio.run(
            caught_up(kafka_bootstrap, f"{prefix}tradepulse-{service}", [f"{prefix}{service}.events.v1"])
        )
    asyncio.run(produce(kafka_bootstrap, f"{prefix}customs.events.v1", _records(ticks().events["customs"])))

    expected = release(policy, corpus.facts)
    topic = f"{prefix}release.hk.v1"

    async def published() -> dict[str, dict[str, Any]]:
        return {r.key.decode(): orjson.loads(r.value) for r in await read_to_end(kafka_bootstrap, topic)}

    got: dict[str, dict[str, Any]] = {}

    async def complete() -> bool:
        got.update(await published())
        return set(expected) <= set(got)

    async def wait() -> None:
        deadline = asyncio.get_running_loop().time() + 120
        while not await complete():
            assert asyncio.get_running_loop().time() < deadline, (
                sorted(set(expected) - set(got)),
                sorted(set(got) - set(expected)),
            )
            await asyncio.sleep(1)

    asyncio.run(wait())
    cells = {k: v["data"] for k, v in got.items() if k in expected}
    assert set(got) == set(expected), sorted(
        set(got) ^ set(expected)
    )  # nothing else left (the ticks are not final)

    # every cell as the oracle computes it: status, reason, values
    for key, want in expected.items():
        have = {
            k: v
            for k, v in cells[key].items()
            if k
            in {"status", "reason", "count", "mean", "p50", "p90", "numerator", "denominator", "value", "sum"}
        }
        assert have == want, key
    reasons = {v["reason"] for v in cells.values() if v["status"] == "suppressed"}
    assert reasons == {"min_cases", "min_contributors", "dominance", "secondary"}
    assert (
        cells["customs.release_time|P1D|2025-03-04T00:00:00+08:00|customs_code=5165,ie_flag=E"]["reason"]
        == "secondary"
    )
    assert (
        cells["taxrefund.processing_time|P1M|2025-03-01T00:00:00+08:00|mgmt_category=3"]["reason"]
        == "min_contributors"
    )
    assert cells["cips.settled_value|P1D|2025-03-03T00:00:00+08:00|purpose=goods"]["reason"] == "dominance"
    # no suppressed value follows by subtraction from any released total
    assert recoverable({k: {"status": v["status"]} for k, v in cells.items()}) == []
    # the records carry the policy and nothing of the negative list
    sha = hashlib.sha256(policy.read_bytes()).hexdigest()
    assert {(v["policy"], v["policy_version"], v["policy_sha256"]) for v in cells.values()} == {
        ("gba-trade-facilitation-hk", "2025.1", sha)
    }
    raw = json.dumps(got)
    leaked = [i for i in corpus.ids if i in raw]
    assert leaked == []
    for v in cells.values():
        assert not {"min", "max", "p95", "p99", "late_events", "revision", "credit_class"} & (
            set(v) | set(v["dimensions"])
        )

    # a late correction after release: nothing released changes, the audit has it
    before = got
    late = Corpus()
    late.n = 900_000
    late.declaration("5141", "E", "914401LT0000000001", D1 + timedelta(hours=20), 3_000.0)
    asyncio.run(produce(kafka_bootstrap, f"{prefix}customs.events.v1", _records(late.events["customs"])))
    key = "customs.release_time|P1D|2025-03-03T00:00:00+08:00|customs_code=5141,ie_flag=E"

    def withheld() -> list[asyncpg.Record]:
        return asyncio.run(_audit(database, "SELECT * FROM release_withheld WHERE cell_key = $1", key))

    deadline = time.monotonic() + 60
    while not withheld():
        assert time.monotonic() < deadline, "the correction never reached the audit"
        time.sleep(0.5)
    assert orjson.loads(withheld()[0]["exact"])["count"] == 26
    assert asyncio.run(published()) == before

    # the audit holds every decision with its exact values
    rows = asyncio.run(
        _audit(database, "SELECT cell_key, status, reason, exact, policy_sha256 FROM release_decision")
    )
    assert {r["cell_key"] for r in rows} == set(expected)
    assert all(r["policy_sha256"] == sha for r in rows)
    exact = {r["cell_key"]: orjson.loads(r["exact"]) for r in rows}
    assert exact[key]["count"] == 25
    assert exact["cips.settled_value|P1D|2025-03-03T00:00:00+08:00|purpose=goods"]["top1_share"] >= 0.8

    # a restart decides nothing again and records no correction twice (decisions are sticky)
    assert first.loud() == []  # no warning or error in a run that went right
    first.stop()
    again = start_worker("release", **release_env)  # ready: caught up with the case topics

    def stepped() -> bool:  # and a turn of its loop after: the event time it reached is exported
        return again.metric("tradepulse_release_event_time_seconds") >= TICK.timestamp()

    deadline = time.monotonic() + 30
    while not stepped():
        assert time.monotonic() < deadline, "the restarted release never took a step"
        time.sleep(0.2)
    assert again.running()
    assert asyncio.run(published()) == before
    assert len(withheld()) == 1
    count = "SELECT count(*) AS n FROM release_decision"
    assert asyncio.run(_audit(database, count))[0]["n"] == len(expected)

    # the export: the day's files and their manifest, nothing of the negative list; a day not final
    out = tmp_path / "export"
    run_env = worker_env(kafka_bootstrap, prefix, **release_env)

    def export(day: str) -> subprocess.CompletedProcess[str]:
        """``tradepulse release export`` of one day, as an operator runs it."""
        args = ["release", "export", "--destination", "hk", "--date", day, "--out", str(out)]
        command = [sys.executable, "-m", "services.cli", *args]
        return subprocess.run(command, env=run_env, cwd=REPO, capture_output=True, text=True, timeout=60)

    done = export("2025-03-03")
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"tradepulse-release-hk-2025-03-03.{ext}" for ext in ("csv", "json", "sha256")]
    manifest = (out / "tradepulse-release-hk-2025-03-03.sha256").read_text().splitlines()
    for line in manifest:
        digest, name = line.split("  ")
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    exported = json.loads((out / "tradepulse-release-hk-2025-03-03.json").read_text())["cells"]
    day_keys = {k for k in expected if "|P1D|2025-03-03" in k}
    assert {c["key"] for c in exported} == day_keys
    text = (out / "tradepulse-release-hk-2025-03-03.csv").read_text() + json.dumps(exported)
    assert [i for i in corpus.ids if i in text] == []
    refused = export(TICK.date().isoformat())
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "not all final" in refused.stderr, refused.stderr


def test_a_policy_naming_a_forbidden_field_or_loosening_a_rule_refuses_to_start(
    kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    shipped = SHIPPED.read_text()
    cases = {
        "credit_class": shipped.replace("dimensions: [ie_flag]}", "dimensions: [ie_flag, credit_class]}", 1),
        "min_cases 5 is below": shipped.replace("min_cases: 10", "min_cases: 5"),
        "window 'PT1H'": shipped.replace("window: P1D", "window: PT1H", 1),
        "consignee_uscc": shipped.replace("dimensions: [ie_flag]}", "dimensions: [consignee_uscc]}", 1),
    }
    for needle, text in cases.items():
        path = tmp_path / "policy.yaml"
        path.write_text(text)
        env = worker_env(kafka_bootstrap, prefix, TRADEPULSE_RELEASE_POLICIES=str(path))
        done = subprocess.run(
            [sys.executable, "-m", "services.cli", "worker", "release"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (needle, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
        assert needle in done.stderr, done.stderr
