"""A fresh ``scripts/run`` trips none of its own alerts: the demo's plan (90 days of linked history,
then live traffic, from ``services/tools/run.py``) against every worker and history, scraped by
Debian's Prometheus with the project's rules, every alert's state read throughout.

On main (4efdbf8) the history went out as fast as possible and 4.6 % of the customs records were
dead-lettered as older than the retention: ``DeadLetterRateHigh`` went pending within a minute.

``TRADEPULSE_TEST_DEMO_S`` (default 90) is how long live traffic is watched after the history;
the issue's ten minutes: ``TRADEPULSE_TEST_DEMO_S=600 pytest tests/e2e/test_demo.py``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import date
from pathlib import Path
from typing import Any

from services.devstack.probe import web_get
from services.devstack.process import free_port
from services.registry import DOMAINS
from services.tools.run import SIMULATED, Feed, history_feeds, live_command
from services.workdays import shared_calendar
from tests.e2e.prometheus import Prometheus, start_prometheus
from tests.integration.harness import StartWorker, start_history, worker_env

WATCH_S = float(os.environ.get("TRADEPULSE_TEST_DEMO_S", "90"))
DEFAULT_AGE = {"TRADEPULSE_MAX_EVENT_AGE_S": str(400 * 86400)}  # the demo's events are recent
TRUE_ALARMS = {
    # the simulated refunds are calibrated on docs/simulation.md 6.4 (category III median 8 working
    # days, 5-10 % doubtful claims held 10 to 60 more): their daily average is above the 3 and 5
    # working-day targets, and the KPI alerts say so, as they would of a province in that state
    "TaxRefundSlowCategories12": "the simulated refunds average above target",
    "TaxRefundSlowOverall": "the simulated refunds average above target",
    # the same slow refunds, and the simulators' inspected declarations and held payments, leave
    # open cases past their commitments (docs/contract.md section 9): the watch says so per rule
    "WatchCasesBreached": "the simulated history has open cases past their commitments",
}


def _alerts(prometheus: Prometheus) -> list[dict[str, str]]:
    answer = prometheus.query("ALERTS")
    assert answer["status"] == "success", answer
    return [r["metric"] for r in answer["data"]["result"]]


def _calendar_ends_soon() -> bool:
    """Whether the working-day calendar ends within the alert's 45 days of today: then
    WorkdayCalendarEndingSoon is the true alarm issue 28 asks for (add next year's calendar)."""
    last = shared_calendar(None).last_date()
    return last is not None and (last - date.today()).days < 45


def test_a_fresh_demo_leaves_every_alert_inactive(
    kafka_bootstrap: str, prefix: str, start_worker: StartWorker, tmp_path: Path, database_url: str
) -> None:
    services = list(DOMAINS)
    workers = {s: start_worker(s, **DEFAULT_AGE) for s in services}
    history_port = free_port()
    env = worker_env(kafka_bootstrap, prefix, **DEFAULT_AGE)
    history_env = {**env, "DATABASE_URL": database_url, "TRADEPULSE_WEB_PORT": str(history_port)}
    history = start_history(history_env, tmp_path / "history.log")
    deadline = time.monotonic() + 60  # listening before Prometheus scrapes it, as scripts/run waits
    while web_get(history_port, "/health")[0] != 200:
        assert history.poll() is None, (tmp_path / "history.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "history did not answer /health within 60 s"
        time.sleep(0.2)
    ports = {**{s: w.port for s, w in workers.items()}, "history": history_port}
    # scraped as scripts/run does (every 5 s, so a busy worker has 5 s to answer before it counts
    # as down), evaluated every 2 s so that a pending alert shows at once
    prometheus = start_prometheus(ports, tmp_path, scrape_s=5, evaluate_s=2)
    seed = int(time.time())
    feeds = history_feeds(services, env, seed, logs=tmp_path)
    assert set(feeds) == {"customs", "cips", "taxrefund"}, "the export cycle's history"
    tripped: dict[str, dict[str, str]] = {}
    allowed = set(TRUE_ALARMS) | ({"WorkdayCalendarEndingSoon"} if _calendar_ends_soon() else set())

    def watch() -> None:
        for alert in _alerts(prometheus):
            if alert["alertname"] not in allowed:
                tripped.setdefault(alert["alertname"], alert)

    try:
        deadline = time.monotonic() + 600  # about a minute; generous for a loaded machine
        while not all(f.caught_up() for f in feeds.values()):
            assert time.monotonic() < deadline, "the history was not sent within 10 minutes"
            watch()
            time.sleep(2)
        for s in SIMULATED:
            feeds[f"live-{s}"] = Feed.spawn(f"simulate-{s}", live_command(s, seed), env, logs=tmp_path)
        deadline = time.monotonic() + WATCH_S
        while time.monotonic() < deadline:
            watch()
            time.sleep(2)
        for name, feed in feeds.items():
            assert feed.proc.poll() in (None, 0), f"{name}: {feed.log.read_text()[-2000:]}"
        consumed = {s: w.metric("tradepulse_events_accepted_total") for s, w in workers.items()}
        assert all(consumed.values()), consumed
        assert tripped == {}, _explain(tripped, workers)
    finally:
        for feed in feeds.values():
            feed.proc.terminate()
            feed.proc.wait(timeout=30)
        prometheus.stop()
        history.terminate()
        history.wait(timeout=30)


def _explain(tripped: dict[str, dict[str, str]], workers: dict[str, Any]) -> str:
    """What tripped, with each worker's refused records by reason (the usual culprit)."""
    refused = {
        s: {dict(labels)["reason"]: value for (name, labels), value in w.metrics().items()
            if name == "tradepulse_events_invalid_total"}
        for s, w in workers.items()
    }  # fmt: skip
    return f"alerts tripped: {json.dumps(tripped)}\nrefused records: {json.dumps(refused)}"
