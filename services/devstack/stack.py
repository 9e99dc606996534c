"""``tradepulse stack up|down|status``: the local broker and database, or the external ones.

When ``KAFKA_BOOTSTRAP_SERVERS`` or ``DATABASE_URL`` is set, that component is external: it is
checked, never started or stopped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from services.devstack.kafka import KafkaNode
from services.devstack.postgres import PostgresCluster
from services.devstack.probe import kafka_answers

__all__ = ["STACK_HOME", "Stack"]

STACK_HOME = Path(__file__).resolve().parents[2] / ".tradepulse" / "stack"


@dataclass(slots=True)
class Stack:
    home: Path = STACK_HOME

    @property
    def kafka(self) -> KafkaNode:
        return KafkaNode(self.home / "kafka")

    @property
    def postgres(self) -> PostgresCluster:
        return PostgresCluster(self.home / "postgres")

    @staticmethod
    def external_kafka() -> str | None:
        return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None

    @staticmethod
    def external_database() -> str | None:
        return os.environ.get("DATABASE_URL") or None

    def up(self) -> list[str]:
        """Start what is local; returns human-readable lines of what is where."""
        lines = []
        if (bootstrap := self.external_kafka()) is None:
            node = self.kafka
            node.start()
            lines.append(f"kafka     {node.bootstrap}  ({node.version_line()}, log {node.logfile})")
        else:
            state = "answers" if kafka_answers(bootstrap) else "DOES NOT ANSWER"
            lines.append(f"kafka     {bootstrap}  (external, KAFKA_BOOTSTRAP_SERVERS; {state})")
        if (url := self.external_database()) is None:
            pg = self.postgres
            pg.start()
            lines.append(f"postgres  {pg.url}  ({pg.version()}, log {pg.logfile})")
        else:
            lines.append("postgres  (external, DATABASE_URL)")
            del url
        return lines

    def down(self) -> list[str]:
        lines = []
        if self.external_kafka() is None:
            self.kafka.stop()
            lines.append("kafka     stopped")
        if self.external_database() is None:
            self.postgres.stop()
            lines.append("postgres  stopped")
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
