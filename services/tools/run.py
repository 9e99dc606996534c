"""``tradepulse run``: the main job. Local stack, every service, the URLs to look at; Ctrl-C
stops everything cleanly (workers first, so they commit, then the stack)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.devstack.probe import web_get, web_ready
from services.devstack.process import port_open
from services.devstack.stack import STACK_HOME, Stack
from services.gateway.app import PORT as GATEWAY_PORT
from services.registry import DOMAINS, SOURCES
from services.release.service import PORT as RELEASE_PORT
from services.runtime.db import redact_dsn
from services.runtime.kafka_admin import partition_count
from services.runtime.security import kafka_client
from services.tools.history import PORT as HISTORY_PORT
from services.tools.simulate import CAUGHT_UP

__all__ = ["Feed", "history_feeds", "holds_records", "live_command", "run_main"]

LOGS = STACK_HOME.parent / "logs"


SIMULATED = tuple(SOURCES)  # the services fed by producers have a traffic simulator
# their simulators share the export plan (services/simulation.py): cases per history run
HISTORY = {"customs": 3000, "cips": 2000, "taxrefund": 600}
HISTORY_S = 60.0
"""About how long the history's 88 days take to send: 1.5 days of event time a second. Sent as fast
as possible (88 days in 3 s), a worker's partitions ran weeks of event time ahead of the messages
its cases send each other through the links topic, and refused them as older than the retention:
4.6 % of the customs history was dead-lettered and DeadLetterRateHigh went pending."""
RECORDS_PER_CASE = 6  # about, with duplicates and refused records


@dataclass
class Feed:
    """A simulator ``tradepulse run`` started, and where its log stood then."""

    proc: subprocess.Popen[bytes]
    log: Path
    offset: int

    @classmethod
    def spawn(cls, name: str, command: list[str], env: dict[str, str], logs: Path = LOGS) -> Feed:
        log = logs / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        proc, log = _spawn(name, *command, env=env, log_name=name, logs=logs)
        return cls(proc, log, offset)

    def caught_up(self) -> bool:
        """Whether its past is sent: it said so (it follows the rest live), or it ended."""
        if self.proc.poll() is not None:
            return True
        with self.log.open("rb") as f:
            f.seek(self.offset)
            return CAUGHT_UP.encode() in f.read()


def history_feeds(services: list[str], env: dict[str, str], seed: int, logs: Path = LOGS) -> dict[str, Feed]:
    """Linked history for the export cycle, sent before live traffic: payments and refunds follow
    their exports by days to weeks, which two days of live traffic cannot show. Exports lodged from
    90 to 2 days ago, with the payments and refunds that name them, so that today's credits and
    refunds are for exports of the weeks before; each later event comes when its time does, so
    the refunds issued each day are of every duration, not only the slow ones of long ago (the
    live simulators use another seed, hence other entries). Sent over about :data:`HISTORY_S`."""
    if "cycle" not in services:
        return {}
    feeds = {}
    for service, cases in HISTORY.items():
        if service not in services:
            continue
        topic = env.get("TRADEPULSE_TOPIC_PREFIX", "") + DOMAINS[service].topic
        if asyncio.run(holds_records(env, topic)):
            # an earlier run's history is there; its live traffic moved the services' watermarks
            # to today, so events older than the retention would now be refused (dead letters)
            print(f"  export cycle history: {topic} holds an earlier run's records; not published again")
            continue
        rate = max(1, round(cases * RECORDS_PER_CASE / HISTORY_S))
        print(f"  export cycle history: {cases:,} {service} cases of the last 90 days, "
              f"{rate:,} records/s for about {HISTORY_S:.0f} s", flush=True)  # fmt: skip
        command = ["simulate", service, "--cases", str(cases), "--rate", str(rate), "--days-ago", "90",
                   "--span-hours", str(88 * 24), "--seed", str(seed), "--quiet", "--follow"]  # fmt: skip
        feeds[service] = Feed.spawn(f"history-{service}", command, env, logs)
    return feeds


def live_command(service: str, seed: int) -> list[str]:
    """The live simulator of a service: the last two days at up to 100 records/s, then each event
    when its time comes; ``seed`` + 1: entries of their own, not the history's."""
    return ["simulate", service, "--cases", "20000", "--rate", "100", "--days-ago", "2",
            "--span-hours", "48", "--seed", str(seed + 1), "--quiet", "--follow"]  # fmt: skip


async def holds_records(env: Mapping[str, str], topic: str) -> bool:
    """Whether ``topic`` (which may not exist) holds any record."""
    client = kafka_client(env["KAFKA_BOOTSTRAP_SERVERS"])
    count = await partition_count(client, topic, timeout_s=30)
    if not count:
        return False
    consumer = AIOKafkaConsumer(**client, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(count)])
        return any(ends.values())
    finally:
        await consumer.stop()


def _spawn(
    service: str, *args: str, env: dict[str, str], log_name: str | None = None, logs: Path = LOGS
) -> tuple[subprocess.Popen[bytes], Path]:
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{log_name or service}.log"
    with log.open("ab") as out:  # the child has its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *(args or ("worker", service))],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    return proc, log


FAILED_START_S = 30.0  # a process that exits sooner after its start failed to start
MAX_FAILED_STARTS = 3


@dataclass
class Child:
    """A process ``tradepulse run`` keeps running: started again when it exits, after a pause that
    doubles with each failed start (up to 30 s); three failed starts in a row stop everything."""

    name: str
    command: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)
    restarts: int = 0
    failed_starts: int = 0
    due: float | None = None  # when it is started again
    logs: Path = LOGS

    @classmethod
    def spawn(cls, name: str, command: list[str], env: dict[str, str], logs: Path = LOGS) -> Child:
        proc, log = _spawn(name, *command, env=env, log_name=name, logs=logs)
        return cls(name, command, env, proc, log, logs=logs)

    def look_after(self) -> str | None:
        """Restart the process if it exited; returns a line to print, or raises SystemExit(1)
        (after saying why) when it failed to start three times in a row."""
        now = time.monotonic()
        if self.due is not None:
            if now < self.due:
                return None
            self.proc, self.log = _spawn(
                self.name, *self.command, env=self.env, log_name=self.name, logs=self.logs
            )
            self.started, self.due = now, None
            self.restarts += 1
            return None
        code = self.proc.poll()
        if code is None:
            return None
        self.failed_starts = self.failed_starts + 1 if now - self.started < FAILED_START_S else 0
        if self.failed_starts >= MAX_FAILED_STARTS:
            print(f"{self.name} failed to start {MAX_FAILED_STARTS} times in a row (exit {code}); "
                  f"stopping everything; see {self.log}", file=sys.stderr, flush=True)  # fmt: skip
            raise SystemExit(1)
        pause = min(30.0, 2.0**self.failed_starts)
        self.due = now + pause
        return (f"{self.name} exited with {code}; starting it again in {pause:.0f} s "
                f"(restart {self.restarts + 1}; see {self.log})")  # fmt: skip


PROMETHEUS_PORT = 9090
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules" / "tradepulse.yml"
HISTORY_TABLES = (
    "tables indicator_window, case_state, release_decision, release_withheld, release_progress; "
    "view completed_case"
)
"""What history writes (services/runtime/migrations), as the start-up lines and the README name it."""
DEMO_CREDENTIALS = RULES.parents[3] / "deploy" / "gateway" / "credentials.example.yaml"


def _prometheus_config(ports: dict[str, int]) -> Path:
    """The configuration scraping ``ports`` (Prometheus reads it again on SIGHUP)."""
    home = STACK_HOME / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": f"tradepulse-{s}", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for s, port in ports.items()
        ],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    return home


def _start_prometheus(ports: dict[str, int]) -> tuple[subprocess.Popen[bytes], Path] | None:
    """Debian's prometheus, when installed, scraping the local services with the project's rules."""
    binary = shutil.which("prometheus")
    if binary is None or port_open("127.0.0.1", PROMETHEUS_PORT):
        return None
    home = _prometheus_config(ports)
    log = LOGS / "prometheus.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
             f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    return proc, log


def run_main(*, services: list[str], simulators: bool = True) -> int:
    stack = Stack()
    print("starting the local stack ...", flush=True)
    for line in stack.up():  # what cannot start raises StackError: one line, exit 2 (cli.main)
        print("  " + line)
    env = {**os.environ, **stack.client_env()}
    ports = {s: DOMAINS[s].port for s in services}  # one port each, whatever TRADEPULSE_WEB_PORT says
    children = {
        s: Child.spawn(s, ["worker", s], {**env, "TRADEPULSE_WEB_PORT": str(ports[s])}) for s in services
    }
    feeds: dict[str, Feed] = {}  # history and live simulators
    live_due = simulators  # live traffic starts once the history is sent
    prometheus: tuple[subprocess.Popen[bytes], Path] | None = None
    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    def look_after() -> None:
        for child in children.values():
            line = child.look_after()
            if line is not None:
                print(line, file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    code = 0
    try:
        deadline = time.monotonic() + 120
        pending = set(services)
        while pending and not stopping and time.monotonic() < deadline:
            look_after()
            pending = {s for s in pending if not web_ready(ports[s])}
            time.sleep(0.5)
        if pending and not stopping:
            print(f"workers not ready after 120 s: {sorted(pending)}; see {LOGS}", file=sys.stderr)
            code = 1
        children["history"] = Child.spawn(
            "history", ["history"], {**env, "TRADEPULSE_WEB_PORT": str(HISTORY_PORT)}
        )
        release_env = {**env, "TRADEPULSE_WEB_PORT": str(RELEASE_PORT)}
        # with simulators the release starts once their past is sent: history reaches today's event
        # time before the live feeds send the last two days, and a window decided meanwhile would
        # have withheld, as corrections, most of those days' cases
        release_due = simulators
        if not release_due:
            children["release"] = Child.spawn("release", ["worker", "release"], release_env)
        gateway_env = {"TRADEPULSE_GATEWAY_CREDENTIALS_FILE": str(DEMO_CREDENTIALS), **env}
        children["gateway"] = Child.spawn("gateway", ["gateway"], gateway_env)
        gateway_port = int(gateway_env.get("TRADEPULSE_GATEWAY_PORT", str(GATEWAY_PORT)))
        # Prometheus scrapes from its start: a process not listening yet would be a WorkerDown
        # pending on the demo's first screen
        pages_up = time.monotonic() + 60
        scraped = {**ports, "history": HISTORY_PORT, "gateway": gateway_port}
        if "release" in children:
            scraped["release"] = RELEASE_PORT
        for port in scraped.values():
            while web_get(port, "/health")[0] != 200 and time.monotonic() < pages_up and not stopping:
                look_after()
                time.sleep(0.5)
        prometheus = _start_prometheus(scraped)
        seed = int(time.time())  # new cases each run (the dedup state remembers old ones), one plan
        if simulators and not stopping:
            feeds.update({f"history-{s}": f for s, f in history_feeds(services, env, seed).items()})
        print("\nTradePulse is running. Look at:")

        def pages(name: str, port: int) -> None:
            log = children[name].log
            print(f"  {name:<10} http://127.0.0.1:{port}/metrics   /health   /ready   (log {log})")

        for s in services:
            pages(s, ports[s])
            if simulators and s in SIMULATED:
                when = ", after the history" if feeds else ""
                print(f"  {'':<10} simulator: realistic {s} traffic, the last two days at up to 100 "
                      f"records/s{when}, then live (log {LOGS / f'simulate-{s}.log'})")  # fmt: skip
                print(f"  {'':<10} indicators: tradepulse tail indicators.{s}.v1")
        url = f"http://127.0.0.1:{gateway_port}/events"
        print(f"  gateway    {url}   (log {children['gateway'].log}; try it: README, 'HTTP gateway')")
        kafka = env["KAFKA_BOOTSTRAP_SERVERS"]
        print(f"  kafka      {kafka}   e.g. tradepulse tail customs.events.v1.dlq")
        db = redact_dsn(env["DATABASE_URL"])  # an external URL may carry a password
        pages("history", HISTORY_PORT)
        if "release" in children:
            pages("release", RELEASE_PORT)
        else:
            print(f"  release    http://127.0.0.1:{RELEASE_PORT}/metrics   /health   /ready   (log "
                  f"{LOGS / 'release.log'}; starts once the simulated past is sent)")  # fmt: skip
        print(f"  {'':<10} cross-border release (deploy/release/*.yaml): tradepulse tail release.hk.v1")
        print(f"  postgres   {db}   (history and release: {HISTORY_TABLES})")
        psql = f"psql {db}" if db == env["DATABASE_URL"] else 'psql "$DATABASE_URL"'
        print(f"             {psql} -c 'SELECT indicator, count(*) FROM indicator_window GROUP BY 1'")
        if prometheus is not None:
            print(f"  prometheus http://127.0.0.1:{PROMETHEUS_PORT}/   rules and alerts: /rules /alerts")
        else:
            print("  prometheus not started (apt-get install -y prometheus, or port 9090 is taken)")
        print("  grafana    dashboards in deploy/grafana/dashboards (docker compose up runs Grafana)")
        print("A process that exits is started again; Ctrl-C stops everything.", flush=True)
        while not stopping:
            look_after()
            if live_due and all(f.caught_up() for f in feeds.values()):
                # after the history: live events first would move the watermarks to today, and
                # the history's events would be refused as older than the retention
                live_due = False
                for s in services:
                    if s in SIMULATED:
                        feeds[f"simulate-{s}"] = Feed.spawn(f"simulate-{s}", live_command(s, seed), env)
                if any(name.startswith("history-") for name in feeds):
                    print("export cycle history sent; live traffic started", flush=True)
            elif release_due and not live_due and all(f.caught_up() for f in feeds.values()):
                release_due = False
                children["release"] = Child.spawn("release", ["worker", "release"], release_env)
                up = time.monotonic() + 60
                while web_get(RELEASE_PORT, "/health")[0] != 200 and time.monotonic() < up and not stopping:
                    look_after()
                    time.sleep(0.5)
                if prometheus is not None:  # scraped from now on
                    _prometheus_config({**scraped, "release": RELEASE_PORT})
                    prometheus[0].send_signal(signal.SIGHUP)
                print("simulated past sent; the cross-border release started", flush=True)
            for name, feed in list(feeds.items()):
                if feed.proc.poll() is not None:
                    del feeds[name]
                    if feed.proc.returncode != 0:
                        said = f"simulator {name} exited with {feed.proc.returncode}; see {feed.log}"
                        print(said, file=sys.stderr)
            time.sleep(0.5)
    except SystemExit as exc:  # a process failed to start three times in a row (said already)
        code = int(exc.code or 1)
    finally:
        print("stopping workers ...", flush=True)
        procs = [c.proc for c in children.values()] + [f.proc for f in feeds.values()]
        if prometheus is not None:
            procs.append(prometheus[0])
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        print("stopping the stack ...", flush=True)
        for line in stack.down(only=stack.started):
            print("  " + line)
    return code
