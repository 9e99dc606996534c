"""A real Prometheus (Debian's package) scrapes the running services fed by the simulators; every
PromQL expression of the Grafana dashboards and of the recording rules returns data, and every
alert expression parses."""

from __future__ import annotations

import json
import random
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from services.devstack.process import free_port
from services.engine.windows import SHANGHAI
from services.tools.simulate import Faults, happened, perturb
from tests.e2e.prometheus import start_prometheus
from tests.integration.harness import StartWorker, eventually, produce, start_history, worker_env

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2025, 6, 2, tzinfo=SHANGHAI).timestamp()
SIMULATED = ("customs", "taxrefund", "cips", "cbec")
SERVICES = (*SIMULATED, "cycle")  # the cycle reads the case topics of customs, CIPS and refunds
FAST = {
    **{f"TRADEPULSE_{s.upper()}_INDICATOR_INTERVAL_S": "1" for s in SERVICES},
    **{f"TRADEPULSE_{s.upper()}_HOUSEKEEPING_INTERVAL_S": "1" for s in SERVICES},
}


def _expressions() -> tuple[list[str], list[str]]:
    """(dashboard and recording-rule expressions, alert expressions)."""
    must: list[str] = []
    for path in sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            must.extend(t["expr"] for t in panel["targets"])
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules" / "tradepulse.yml").read_text())
    alerts: list[str] = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            (must if "record" in rule else alerts).append(rule["expr"])
    return must, alerts


STARTS = {"customs.declaration.lodged", "taxrefund.refund.declared", "cips.payment.initiated"}


def _stall(events: list[dict[str, Any]], n: int = 5) -> list[dict[str, Any]]:
    """The first ``n`` cases that start with a watched milestone keep only that event: they stall,
    and the SLA watch panels have open cases to show."""
    stalled = {e["subject"] for e in events if e["type"] in STARTS}
    stalled = set(sorted(stalled)[:n])
    return [e for e in events if e["subject"] not in stalled or e["type"] in STARTS]


async def test_every_dashboard_and_rule_expression_returns_data(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker, tmp_path: Path, database_url: str
) -> None:
    workers = {s: start_worker(s, **FAST) for s in SERVICES}
    # KPI panels show complete (final) days and hours: cases of a fixed fortnight long past, whose
    # refunds and credits have all happened (20 days before today left the refunds in the future,
    # and the test failed depending on the day it ran); a year the built-in calendar knows
    start = START
    for service in SIMULATED:  # one seed, start and span: payments and refunds name the exports
        module = __import__(f"services.{service}.simulator", fromlist=["simulate"])
        events, _ = happened(module.simulate(cases=150, seed=5, start_s=start, span_s=10 * 86400))
        events = _stall(events)
        records = perturb(events, Faults(duplicates=0.05, invalid=0.03, late=0.02), random.Random(5))
        await produce(kafka_bootstrap, f"{prefix}{service}.events.v1", records)
    for service in SERVICES:

        def fed(w: Any = workers[service]) -> bool:
            return bool(w.metric("tradepulse_events_accepted_total") > 0)

        assert await eventually(fed, timeout_s=60)

    history_port = free_port()  # history too: the pipeline dashboard shows its writes
    env = worker_env(
        kafka_bootstrap, prefix, DATABASE_URL=database_url, TRADEPULSE_WEB_PORT=str(history_port)
    )
    history = start_history(env, tmp_path / "history.log")
    # and the cross-border release with the shipped policies: the pipeline dashboard shows its cells
    release = start_worker("release", DATABASE_URL=database_url, TRADEPULSE_RELEASE_IDLE_AFTER_S="3")
    ports = {**{s: w.port for s, w in workers.items()}, "history": history_port, "release": release.port}
    prometheus = start_prometheus(ports, tmp_path, scrape_s=1, evaluate_s=1)
    try:
        must, alerts = _expressions()

        def missing() -> list[str]:
            out = []
            for expr in must:
                answer = prometheus.query(expr)
                if answer.get("status") != "success" or not answer["data"]["result"]:
                    out.append(expr)
            return out

        assert await eventually(lambda: not missing(), timeout_s=300, every_s=2), missing()
        for expr in alerts:
            assert prometheus.query(expr)["status"] == "success", expr
    finally:
        prometheus.stop()
        history.terminate()
        history.wait(timeout=30)
