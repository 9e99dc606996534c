"""The OpenAPI documents say what the processes do: Schemathesis (pinned in pyproject.toml) generates
requests from schemas/gateway.openapi.yaml and schemas/pages.openapi.yaml and runs every check
against a gateway and a worker started here on the real broker, with a fixed seed and a bound on
examples. A schema-valid request refused (ST202) or an answer the document does not describe
fails the test. Keys: the demo key, and one of narrow rights (its 403s are documented answers)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.gateway.credentials import hash_key
from tests.integration.harness import REPO, StartWorker, input_topics, start_gateway, stop_gateway

SCHEMAS = REPO / "schemas"
DEMO_KEY = "tpk_demo-local-only-not-secret"  # deploy/gateway/credentials.example.yaml
NARROW_KEY = "tpk_narrow-test-key-0001"


def schemathesis(document: Path, url: str, *headers: str) -> subprocess.CompletedProcess[str]:
    """``schemathesis run`` with every check, a fixed seed and few examples per operation."""
    args = [sys.executable, "-m", "schemathesis.cli", "run", str(document), "--url", url, "--checks", "all",
            "--seed", "7", "--max-examples", "25", "--no-color"]  # fmt: skip
    for header in headers:
        args += ["-H", header]
    return subprocess.run(args, capture_output=True, text=True, timeout=240, cwd=REPO)


@pytest.mark.parametrize("key", [DEMO_KEY, NARROW_KEY])
def test_the_gateway_does_what_its_document_says(
    kafka_bootstrap: str, prefix: str, tmp_path: Path, key: str
) -> None:
    credentials = tmp_path / "credentials.yaml"
    demo = yaml.safe_load((REPO / "deploy" / "gateway" / "credentials.example.yaml").read_text())[
        "credentials"
    ]
    narrow = {"name": "narrow", "key_sha256": hash_key(NARROW_KEY), "sources": ["/cips/gateway"],
              "types": ["cips.payment.credited"]}  # fmt: skip
    credentials.write_text(yaml.safe_dump({"credentials": [*demo, narrow]}))
    asyncio.run(input_topics(kafka_bootstrap, prefix))
    gateway = start_gateway(kafka_bootstrap, prefix, tmp_path, credentials=credentials)
    try:
        done = schemathesis(SCHEMAS / "gateway.openapi.yaml", gateway.url.removesuffix("/events"),
                            f"Authorization: Bearer {key}")  # fmt: skip
    finally:
        stop_gateway(gateway)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "No issues found" in done.stdout or " passed" in done.stdout, done.stdout[-2000:]


def test_a_workers_pages_do_what_their_document_says(start_worker: StartWorker) -> None:
    worker = start_worker("customs")
    done = schemathesis(SCHEMAS / "pages.openapi.yaml", f"http://127.0.0.1:{worker.port}")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
