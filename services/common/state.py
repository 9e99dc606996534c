"""Durable per-partition state on one Faust table, written in batches.

Faust writes one changelog record per table update; at thousands of events a second that caps
throughput (engineering.md 1.3). Here the service decides *when* to write: it buffers changes and
writes each changed key once per flush. Keys carry their input partition explicitly, so Faust's
changelog recovery hands every worker exactly the state of the partitions it owns, after a restart
or a rebalance, before their events are processed.

Delivery: a flush queues changelog records before the batch's input offsets are acknowledged, and
Faust flushes the producer before it commits offsets, so committed input is always covered by state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import faust

__all__ = ["PartitionStore", "StateStore"]


class StateStore(Protocol):
    """Per-partition byte values; what the intake and the services keep their state in."""

    def put(self, partition: int, kind: str, name: str, value: bytes) -> None: ...

    def delete(self, partition: int, kind: str, name: str) -> None: ...

    def items(self, partition: int, kind: str) -> Iterator[tuple[str, bytes]]: ...


class PartitionStore:
    """Byte values under ``<partition>|<kind>|<name>`` keys in one changelog-backed table."""

    def __init__(self, app: faust.App, name: str, *, partitions: int) -> None:
        self.table: Any = app.Table(
            name,
            key_type=bytes,  # bytes selects Faust's "raw" codec for keys and values
            value_type=bytes,
            partitions=partitions,
            recovery_buffer_size=10_000,
            help="TradePulse per-partition state, written in batches",
        )

    @staticmethod
    def key(partition: int, kind: str, name: str) -> bytes:
        """The table key of one state item."""
        return f"{partition}|{kind}|{name}".encode()

    def put(self, partition: int, kind: str, name: str, value: bytes) -> None:
        """Store and queue one changelog record (sent before the next offset commit)."""
        self._write(partition, self.key(partition, kind, name), value)

    def delete(self, partition: int, kind: str, name: str) -> None:
        """Delete and queue a tombstone."""
        self._write(partition, self.key(partition, kind, name), None)

    def items(self, partition: int, kind: str) -> Iterator[tuple[str, bytes]]:
        """(name, value) of every stored item of one kind on one partition."""
        prefix = f"{partition}|{kind}|".encode()
        cut = len(prefix)
        for key, value in list(self._data().items()):
            if isinstance(key, bytes) and key.startswith(prefix) and value:
                yield key[cut:].decode(), value

    def _data(self) -> Any:
        return self.table.data.data  # the memory store's dict

    def _write(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.table.send_changelog(partition, key, value, key_serializer="raw", value_serializer="raw")
        store = self.table.data
        if value is None:
            store.data.pop(key, None)
            store._key_partition.pop(key, None)
        else:
            store.data[key] = value
            store._key_partition[key] = partition  # lets Faust drop it when the partition is revoked
