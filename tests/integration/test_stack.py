"""The local stack: whoever joins a stack that was already running leaves it running."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from services.devstack.process import free_port
from services.devstack.stack import Stack


def test_a_second_user_of_a_running_stack_stops_only_what_it_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`tradepulse stack up`, then `tradepulse run` and its Ctrl-C: the stack stays up."""
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    kafka_port = free_port()
    monkeypatch.setenv("TRADEPULSE_STACK_KAFKA_PORT", str(kafka_port))
    monkeypatch.setenv("TRADEPULSE_STACK_PG_PORT", str(free_port()))
    home = Path(tempfile.mkdtemp(prefix="tradepulse-stack-"))
    home.chmod(0o755)  # PostgreSQL runs as its own user when the tests run as root
    first = Stack(home)
    first.up()
    try:
        assert first.started == {"kafka", "postgres"}
        assert first.client_env()["KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{kafka_port}"
        joined = Stack(home)
        lines = joined.up()
        assert joined.started == set()
        assert all("already running" in line for line in lines)
        joined.down(only=joined.started)
        assert first.kafka.running()
        assert first.postgres.running()
    finally:
        first.down(only=first.started)
        assert not first.kafka.running()
        assert not first.postgres.running()
        shutil.rmtree(home, ignore_errors=True)
