"""A real Prometheus (Debian's package) for the end-to-end tests: the project's rules, a job per
service, on a free port; the tests that watch a stack through it share this instead of each writing
its own configuration."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from services.devstack.probe import web_get
from services.devstack.process import free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "tradepulse.yml"


@dataclass
class Prometheus:
    proc: subprocess.Popen[bytes]
    port: int

    def query(self, expr: str) -> dict[str, Any]:
        status, body = web_get(self.port, "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert status in (200, 400, 422), f"prometheus answered {status}"
        return dict(orjson.loads(body))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def start_prometheus(ports: Mapping[str, int], home: Path, *, scrape_s: int, evaluate_s: int) -> Prometheus:
    """Scrape ``ports`` (service -> port on 127.0.0.1) with the project's rules; ready when returned."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: apt-get install -y prometheus (.ci/run does)")
    config = {
        "global": {"scrape_interval": f"{scrape_s}s", "evaluation_interval": f"{evaluate_s}s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": f"tradepulse-{s}", "static_configs": [{"targets": [f"127.0.0.1:{p}"]}]}
            for s, p in ports.items()
        ],
    }
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (home / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while web_get(port, "/-/ready")[0] != 200:
        assert proc.poll() is None, (home / "prometheus.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "prometheus did not become ready"
        time.sleep(0.2)
    return Prometheus(proc, port)
