"""``tradepulse stack up|down|status``: the local broker and database, or the external ones.

When ``KAFKA_BOOTSTRAP_SERVERS`` or ``DATABASE_URL`` is set, that component is external: it is
checked, never started or stopped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from services.devstack.kafka import KafkaNode
from services.devstack.postgres import PostgresCluster
from services.devstack.probe import kafka_answers
from services.devstack.process import StackError

__all__ = ["STACK_ENV", "STACK_HOME", "Stack"]

STACK_HOME = Path(__file__).resolve().parents[2] / ".tradepulse" / "stack"
# Variables of the local stack (not service settings: the services only see where it runs).
STACK_ENV = ("TRADEPULSE_PG_BIN", "TRADEPULSE_STACK_KAFKA_PORT", "TRADEPULSE_STACK_PG_PORT")


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        msg = f"{name}={raw!r} is not a TCP port (1-65535)"
        raise StackError(msg)
    return int(raw)


@dataclass(slots=True)
class Stack:
    """The local broker and database. :meth:`up` remembers what it started itself, so that whoever
    called it can stop only that (:meth:`down` with ``only``) and leave alone what was already
    running, e.g. a stack of ``tradepulse stack up`` that ``tradepulse run`` joined."""

    home: Path = STACK_HOME
    started: set[str] = field(default_factory=set)
    _kafka: KafkaNode | None = field(default=None, init=False, repr=False)
    _postgres: PostgresCluster | None = field(default=None, init=False, repr=False)

    @property
    def kafka(self) -> KafkaNode:
        """The local broker (one object: it keeps the process it started, to reap it on stop)."""
        if self._kafka is None:
            port = _port("TRADEPULSE_STACK_KAFKA_PORT", 19092)
            self._kafka = KafkaNode(self.home / "kafka", port=port, controller_port=port + 1)
        return self._kafka

    @property
    def postgres(self) -> PostgresCluster:
        if self._postgres is None:
            port = _port("TRADEPULSE_STACK_PG_PORT", 15432)
            self._postgres = PostgresCluster(self.home / "postgres", port=port)
        return self._postgres

    def client_env(self) -> dict[str, str]:
        """What the services and tools need to reach this stack (unless set already)."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.external_kafka() or self.kafka.bootstrap,
            "DATABASE_URL": self.external_database() or self.postgres.url,
        }

    @staticmethod
    def external_kafka() -> str | None:
        return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None

    @staticmethod
    def external_database() -> str | None:
        return os.environ.get("DATABASE_URL") or None

    def _components(self) -> list[tuple[str, KafkaNode | PostgresCluster | None, str]]:
        """(name, the local component or None when external, where it is) of each component."""
        kafka, url = self.external_kafka(), self.external_database()
        return [
            ("kafka", None, kafka) if kafka else ("kafka", self.kafka, self.kafka.bootstrap),
            ("postgres", None, "") if url else ("postgres", self.postgres, self.postgres.url),
        ]

    def up(self) -> list[str]:
        """Start what is local; returns human-readable lines of what is where."""
        lines = []
        for name, node, where in self._components():
            if node is None and name == "kafka":
                state = "answers" if kafka_answers(where) else "DOES NOT ANSWER"
                lines.append(f"kafka     {where}  (external, KAFKA_BOOTSTRAP_SERVERS; {state})")
            elif node is None:
                lines.append("postgres  (external, DATABASE_URL)")
            elif node.running():
                lines.append(f"{name:<9} {where}  (already running: left running at the end)")
            else:
                node.start()
                self.started.add(name)
                lines.append(f"{name:<9} {where}  ({node.version_line()}, log {node.logfile})")
        return lines

    def down(self, *, only: set[str] | None = None) -> list[str]:
        """Stop the local components (or ``only`` those named); external ones are never touched."""
        lines = []
        for name, node, _ in self._components():
            if node is not None and (only is None or name in only):
                node.stop()
                lines.append(f"{name:<9} stopped")
            elif node is not None:
                lines.append(f"{name:<9} left running (it was running before)")
        return lines

    def status(self) -> list[str]:
        k = self.external_kafka()
        if k is None:
            node = self.kafka
            up = node.running() and kafka_answers(node.bootstrap)
            kafka = f"kafka     {node.bootstrap}  {'running' if up else 'stopped'}"
        else:
            kafka = f"kafka     {k}  external, {'answers' if kafka_answers(k) else 'does not answer'}"
        if self.external_database() is None:
            pg = self.postgres
            db = f"postgres  {pg.url}  {'running' if pg.running() else 'stopped'}"
        else:
            db = "postgres  external (DATABASE_URL)"
        return [kafka, db]
