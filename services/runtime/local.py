"""The local copy of a partition's state: RocksDB (through ``rocksdict``, the driver Faust itself
moved to) in a folder per service and partition, with the state topic offset it holds.

The state topic is the source of truth and the only thing that must survive the loss of a
machine; the local copy spares a restart from reading it again. Each write is one RocksDB write
batch that carries its :class:`Checkpoint` (the topic offset the copy holds after it), so the
copy and its offset never disagree, whatever moment the process dies at.

Memory is bounded by one budget per process (``TRADEPULSE_STATE_CACHE_MB``): RocksDB's block
cache, with every partition's memtables charged to it (a write buffer manager), takes
:data:`ROCKSDB_SHARE` of it; the engine's cache of decoded cases the rest.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import rocksdict

from services.engine.state import META_PREFIX

__all__ = [
    "CHECKPOINT_KEY",
    "ROCKSDB_SHARE",
    "Checkpoint",
    "LocalStateBusy",
    "LocalStateError",
    "RocksBackend",
    "RocksMemory",
]

CHECKPOINT_KEY = META_PREFIX + b"checkpoint"
ROCKSDB_SHARE = 0.5


class LocalStateBusy(RuntimeError):
    """A partition's folder is locked by another process (two workers given one folder, or the
    previous owner on this machine not done with it yet): wait, never delete it."""


class LocalStateError(RuntimeError):
    """The local copy cannot be written (a full disk, say): the worker must stop. Nothing is lost:
    every change is on the state topic before it is written here."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a local copy holds: the state topic (and cluster) it copies, and the offset of the
    first record of the topic it does not hold yet; ``at_s`` when that was written (wall clock:
    deletions older than the topic's ``delete.retention.ms`` may be compacted away, and a copy
    that old cannot tell)."""

    topic: str
    partition: int
    cluster: str
    offset: int
    at_s: float

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Checkpoint:
        doc = json.loads(raw)
        return cls(str(doc["topic"]), int(doc["partition"]), str(doc["cluster"]), int(doc["offset"]),
                   float(doc["at_s"]))  # fmt: skip

    def at(self, offset: int) -> Checkpoint:
        """This checkpoint moved on to ``offset``, now."""
        return Checkpoint(self.topic, self.partition, self.cluster, offset, time.time())


class RocksMemory:
    """The RocksDB memory of one process, shared by every partition's database: a block cache with
    the memtables charged to it."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.cache = rocksdict.Cache(budget_bytes)
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            max(budget_bytes // 4, 4 << 20), False, self.cache
        )

    def options(self) -> rocksdict.Options:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_manager(self.write_buffers)
        options.set_max_write_buffer_number(2)
        options.set_write_buffer_size(max(self.budget_bytes // 16, 1 << 20))
        # the first levels hold what was written minutes ago and are rewritten soon: not worth
        # compressing; the rest, where the bytes are, with LZ4
        none, lz4 = rocksdict.DBCompressionType.none(), rocksdict.DBCompressionType.lz4()
        options.set_compression_per_level([none, none, lz4, lz4, lz4, lz4, lz4])
        options.set_keep_log_file_num(2)
        options.set_max_background_jobs(2)
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(self.cache)
        table.set_bloom_filter(10, False)  # a missing key (a new case, a new event id) costs no disk read
        table.set_cache_index_and_filter_blocks(True)
        options.set_block_based_table_factory(table)
        return options


class RocksBackend:
    """One partition's local copy (a :class:`services.engine.state.Backend`)."""

    def __init__(self, path: Path, memory: RocksMemory) -> None:
        self.path = path
        self._memory = memory
        self._db: Any = rocksdict.Rdict(str(path), memory.options())
        # No write-ahead log (as Kafka Streams): the state topic is the log. A crash loses the
        # writes not yet flushed to disk, the checkpoint with them (one write batch), and the
        # restart reads them from the topic again; :meth:`persist` bounds how many.
        unlogged = rocksdict.WriteOptions()
        unlogged.disable_wal = True  # type: ignore[method-assign,assignment]  # a property; the stub says method
        self._db.set_write_options(unlogged)

    @classmethod
    def destroy(cls, path: Path) -> None:
        """Delete a partition's folder (an unreadable or outdated copy, rebuilt from the topic)."""
        shutil.rmtree(path, ignore_errors=True)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        values: list[bytes | None] = self._db.get(keys)
        return values

    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        it = self._db.iter()
        try:
            it.seek(start)
            while it.valid():
                key = it.key()
                if key >= stop:
                    break
                yield key, it.value()
                it.next()
        finally:
            del it

    def write(self, changes: Sequence[tuple[bytes, bytes | None]]) -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in changes:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        try:
            self._db.write(batch)
        except Exception as exc:
            msg = (
                f"cannot write the local state in {self.path} ({exc}); the worker stops. Nothing is "
                "lost (the state topic has every change): give TRADEPULSE_STATE_DIR room, then restart"
            )
            raise LocalStateError(msg) from exc

    def persist(self) -> None:
        """Start writing the memtables to disk (in RocksDB's own threads; returns at once): what a
        crash can lose of the local copy, and a restart must read from the topic, is what was
        written since."""
        self._db.flush(False)

    def check(self) -> None:
        """:class:`LocalStateError` if RocksDB's own threads failed to write (a memtable flush into a
        full disk): the next write would fail, and an idle partition might not write for hours."""
        if self._db is not None and self._db.property_int_value("rocksdb.background-errors"):
            msg = (
                f"cannot write the local state in {self.path} (RocksDB could not write its files); the "
                "worker stops. Nothing is lost (the state topic has every change): give "
                "TRADEPULSE_STATE_DIR room, then restart"
            )
            raise LocalStateError(msg)

    def checkpoint(self) -> Checkpoint | None:
        raw = self.get(CHECKPOINT_KEY)
        return Checkpoint.decode(raw) if raw is not None else None

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.glob("*") if f.is_file())

    def close(self) -> None:
        """Flush the memtables (there is no write-ahead log to replay them from) and close."""
        if self._db is not None:
            try:
                self._db.flush()
            finally:
                self._db.close()
                self._db = None
