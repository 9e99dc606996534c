"""Per-partition state: what the engine and the intake keep, and the order in which it becomes
durable. Pure; no I/O of its own.

Every input partition ``p`` owns the state of partition ``p``: cases, deduplication keys,
aggregates, indexes. A value is named ``(kind, name)`` and lives in three layers, read top down:

1. *staged*: changed since the last flush began (what a batch just did);
2. *flushing*: being written by the running flush;
3. the *local copy*: a :class:`Backend` per partition, holding the state as of the last flush
   that completed (in a worker, RocksDB on local disk with the state topic's offset it holds;
   in tests, a dict).

A flush (the runtime's; :class:`MemoryStore` here) takes the staged layer, writes it where it
must survive the loss of the machine (the compacted state topic), then into the local copy in one
atomic write, so memory holds only what changed since the last flush, never the state itself.

Some kinds carry a *derived index*: keys computed from each value (the digests of a chunk of
deduplication keys) that :meth:`LocalState.indexed` answers from, maintained with the value in the
same local write (and on a restore from the topic), never written to the topic themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Protocol

from services.engine.records import Out

__all__ = [
    "Backend",
    "DictBackend",
    "LocalState",
    "MemoryStore",
    "NotOwned",
    "StateStore",
    "kept",
    "state_key",
]

Changes = dict[bytes, bytes | None]
"""Key to new value, or None for a deletion (a tombstone on the state topic)."""
Derive = Callable[[bytes], Iterable[bytes]]
"""The index keys a value of an indexed kind stands for."""

INDEX_PREFIX = b"\x01"  # derived index keys; never on the topic
META_PREFIX = b"\x00"  # the local copy's own bookkeeping (its checkpoint); never on the topic
_AFTER_SEPARATOR = b"}"  # the byte after "|": the end of a kind's key range


class StateStore(Protocol):
    """What the intake and the engine keep their state in: byte values per owned partition, read
    through the staged changes, written with the outputs that belong to them."""

    def put(self, partition: int, kind: str, name: str, value: bytes) -> None: ...

    def delete(self, partition: int, kind: str, name: str) -> None: ...

    def get(self, partition: int, kind: str, name: str) -> bytes | None: ...

    def items(
        self, partition: int, kind: str, *, start: str = "", stop: str | None = None
    ) -> Iterator[tuple[str, bytes]]:
        """(name, value) of the kind's values with ``start <= name < stop``, in name order."""

    def indexed(self, partition: int, kind: str, key: bytes) -> bool:
        """Whether a value of ``kind`` (an indexed kind) stands for ``key``."""

    def indexed_many(self, partition: int, kind: str, keys: Sequence[bytes]) -> list[bool]:
        """:meth:`indexed` for many keys, with one read of the local copy."""

    def owns(self, partition: int) -> bool: ...

    def owned(self) -> set[int]: ...

    def add_outputs(self, outputs: Sequence[Out]) -> None:
        """Records to write with the next flush, before the state (they belong together)."""

    async def flush(self) -> None:
        """Write the pending outputs, then the staged state, each acknowledged, then the local copy."""

    async def wait_ready(self, partitions: Iterable[int]) -> set[int]:
        """Wait until the state of ``partitions`` is restored; returns those this worker owns."""


class Backend(Protocol):
    """One partition's local copy: an ordered key-value store written atomically."""

    def get(self, key: bytes) -> bytes | None: ...

    def get_many(self, keys: list[bytes]) -> list[bytes | None]: ...

    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Keys in ``[start, stop)``, in byte order."""

    def write(self, changes: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Apply every change, in order, all or nothing."""

    def close(self) -> None: ...


class NotOwned(LookupError):
    """State of a partition this worker does not own (any more) was asked for."""


def state_key(kind: str, name: str) -> bytes:
    """The key of a value, on the state topic and in the local copy."""
    return _prefix(kind) + name.encode()


@lru_cache(maxsize=1024)
def _prefix(kind: str) -> bytes:
    return f"{kind}|".encode()


def _kind_range(kind: str, start: str, stop: str | None) -> tuple[bytes, bytes]:
    prefix = f"{kind}|".encode()
    hi = prefix + stop.encode() if stop is not None else prefix[:-1] + _AFTER_SEPARATOR
    return prefix + start.encode(), hi


def kept(value: bytes) -> bytes:
    """A right-sized copy of a value the store keeps: orjson (3.12 and later) returns bytes whose
    buffer is at least 4 KB whatever their length, so a case of 500 bytes kept as it came held
    4 KB (home-assistant/core#181240 trims them the same way). About 0.2 us per put."""
    return bytes(memoryview(value))


class DictBackend:
    """A :class:`Backend` in memory (tests, the in-process benchmarks)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return [self.data.get(k) for k in keys]

    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(k for k in self.data if start <= k < stop):
            yield key, self.data[key]

    def write(self, changes: Sequence[tuple[bytes, bytes | None]]) -> None:
        for key, value in changes:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = kept(value)

    def close(self) -> None:
        pass


class LocalState:
    """The three layers of every owned partition (see the module's docstring); the runtime's store
    and :class:`MemoryStore` add how a flush reaches durable storage."""

    def __init__(self, *, indexes: Mapping[str, Derive] | None = None) -> None:
        self._by_kind: dict[str, Derive] = dict(indexes or {})
        self._indexes = {f"{kind}|".encode(): derive for kind, derive in self._by_kind.items()}
        self._index_prefix = {kind: INDEX_PREFIX + f"{kind}|".encode() for kind in self._by_kind}
        self._backends: dict[int, Backend] = {}
        self._staged: dict[int, Changes] = {}
        self._flushing: dict[int, Changes] = {}
        self._staged_index: dict[int, set[bytes]] = {}
        self._flushing_index: dict[int, set[bytes]] = {}

    # -- values -------------------------------------------------------------------------------

    def put(self, partition: int, kind: str, name: str, value: bytes) -> None:
        """Set a value (visible at once; durable with the next flush)."""
        if self._writable(partition):
            key = state_key(kind, name)
            self._staged.setdefault(partition, {})[key] = value  # for a flush's time: no copy
            derive = self._by_kind.get(kind)
            if derive is not None:
                index = self._staged_index.setdefault(partition, set())
                prefix = self._index_prefix[kind]
                index.update(prefix + k for k in derive(value))

    def delete(self, partition: int, kind: str, name: str) -> None:
        """Delete a value (a tombstone on the state topic with the next flush)."""
        if self._writable(partition):
            self._staged.setdefault(partition, {})[state_key(kind, name)] = None

    def get(self, partition: int, kind: str, name: str) -> bytes | None:
        key = state_key(kind, name)
        for layer in (self._staged, self._flushing):
            changes = layer.get(partition)
            if changes is not None and key in changes:
                return changes[key]
        return self._backend(partition).get(key)

    def items(
        self, partition: int, kind: str, *, start: str = "", stop: str | None = None
    ) -> Iterator[tuple[str, bytes]]:
        """(name, value) of a kind's values with ``start <= name < stop``, in name order: the local
        copy merged with the changes not yet in it."""
        backend = self._backend(partition)
        lo, hi = _kind_range(kind, start, stop)
        overlay: Changes = {}
        for layer in (self._flushing, self._staged):  # staged last: it is newer
            for key, value in layer.get(partition, {}).items():
                if lo <= key < hi:
                    overlay[key] = value
        cut = len(kind) + 1
        pending = sorted(overlay)
        i = 0
        for key, value in backend.scan(lo, hi):
            while i < len(pending) and pending[i] < key:
                new = overlay[pending[i]]
                if new is not None:
                    yield pending[i][cut:].decode(), new
                i += 1
            if i < len(pending) and pending[i] == key:
                new = overlay[key]
                i += 1
                if new is not None:
                    yield key[cut:].decode(), new
                continue
            yield key[cut:].decode(), value
        for key in pending[i:]:
            new = overlay[key]
            if new is not None:
                yield key[cut:].decode(), new

    def indexed(self, partition: int, kind: str, key: bytes) -> bool:
        """Whether a value of the indexed ``kind`` stands for ``key``. Values being deleted still
        count until their deletion reaches the local copy (the one use, deduplication, errs on
        the side of having seen a key). A kind the store was not told to index is an error, not
        an empty index: deduplication would silently take every event."""
        prefix = self._index_prefix.get(kind)
        if prefix is None:
            msg = f"the state store keeps no index of {kind!r} (indexes={sorted(self._by_kind)})"
            raise KeyError(msg)
        index_key = prefix + key
        for layer in (self._staged_index, self._flushing_index):
            keys = layer.get(partition)
            if keys is not None and index_key in keys:
                return True
        return self._backend(partition).get(index_key) is not None

    def indexed_many(self, partition: int, kind: str, keys: Sequence[bytes]) -> list[bool]:
        """:meth:`indexed` for many keys, with one read of the local copy."""
        prefix = self._index_prefix.get(kind)
        if prefix is None:
            msg = f"the state store keeps no index of {kind!r} (indexes={sorted(self._by_kind)})"
            raise KeyError(msg)
        staged = self._staged_index.get(partition, set()) | self._flushing_index.get(partition, set())
        full = [prefix + k for k in keys]
        out = [k in staged for k in full]
        ask = [i for i, known in enumerate(out) if not known]
        if ask:
            found = self._backend(partition).get_many([full[i] for i in ask])
            for i, value in zip(ask, found, strict=True):
                out[i] = value is not None
        return out

    # -- partitions ---------------------------------------------------------------------------

    def owns(self, partition: int) -> bool:
        return partition in self._backends

    def owned(self) -> set[int]:
        return set(self._backends)

    def adopt(self, partition: int, backend: Backend) -> None:
        """Own ``partition``, its local copy being ``backend``."""
        self._backends[partition] = backend

    def release(self, partition: int) -> None:
        """Stop owning ``partition``: its changes not yet flushed are dropped (the next owner redoes
        them), its local copy closed (kept on disk, for the next time it is ours)."""
        backend = self._backends.pop(partition, None)
        for layer in (self._staged, self._flushing, self._staged_index, self._flushing_index):
            layer.pop(partition, None)
        if backend is not None:
            backend.close()

    # -- the flush ----------------------------------------------------------------------------

    def begin_flush(self) -> dict[int, Changes]:
        """Take the staged changes into the flushing layer; returns them per owned partition."""
        self._flushing, self._staged = self._staged, {}
        self._flushing_index, self._staged_index = self._staged_index, {}
        return {p: changes for p, changes in self._flushing.items() if changes and p in self._backends}

    def abort_flush(self) -> None:
        """A flush failed: its changes go back under what was staged meanwhile (which is newer), to
        be written again by the next (a value written twice is harmless)."""
        for p, changes in self._flushing.items():
            self._staged[p] = {**changes, **self._staged.get(p, {})}
        for p, keys in self._flushing_index.items():
            self._staged_index.setdefault(p, set()).update(keys)
        self._flushing, self._flushing_index = {}, {}

    def local_changes(
        self, backend: Backend, changes: Changes, extra: Sequence[tuple[bytes, bytes | None]] = ()
    ) -> list[tuple[bytes, bytes | None]]:
        """``changes`` as one write of a partition's local copy: each value with its derived index
        keys (those of the value it replaces removed), then ``extra`` (the checkpoint)."""
        out: list[tuple[bytes, bytes | None]] = []
        for key, value in changes.items():
            derive = self._derive(key)
            if derive is not None:
                old = backend.get(key)
                if old is not None:
                    out.extend((INDEX_PREFIX + key[: key.index(b"|") + 1] + k, None) for k in derive(old))
                if value is not None:
                    out.extend((INDEX_PREFIX + key[: key.index(b"|") + 1] + k, b"") for k in derive(value))
            out.append((key, value))
        out.extend(extra)
        return out

    def end_flush(self) -> None:
        """The flush is done: what it wrote is in the local copies."""
        self._flushing, self._flushing_index = {}, {}

    def backend(self, partition: int) -> Backend:
        return self._backend(partition)

    # -- internals ----------------------------------------------------------------------------

    def _derive(self, key: bytes) -> Derive | None:
        if not self._indexes:
            return None
        return self._indexes.get(key[: key.find(b"|") + 1])

    def _backend(self, partition: int) -> Backend:
        backend = self._backends.get(partition)
        if backend is None:
            msg = f"partition {partition} is not owned by this worker"
            raise NotOwned(msg)
        return backend

    def _writable(self, partition: int) -> bool:
        return partition in self._backends


class MemoryStore(LocalState):
    """A :class:`StateStore` in memory that owns every partition: the engine without Kafka, for the
    in-memory wiring of the tests and the in-process benchmarks. ``written`` collects flushed
    outputs; a flush writes straight into the local copies."""

    def __init__(self, partitions: int = 1, *, indexes: Mapping[str, Derive] | None = None) -> None:
        super().__init__(indexes=indexes)
        self.partitions = partitions
        for p in range(partitions):
            self.adopt(p, DictBackend())
        self.pending: list[Out] = []
        self.written: list[Out] = []
        self.flushes = 0

    @property
    def data(self) -> dict[tuple[int, str, str], bytes]:
        """Every value, as the engine sees it: (partition, kind, name) -> value."""
        out: dict[tuple[int, str, str], bytes] = {}
        for p in self.owned():
            backend = self.backend(p)
            assert isinstance(backend, DictBackend)
            merged: Changes = {**backend.data, **self._flushing.get(p, {}), **self._staged.get(p, {})}
            for key, value in merged.items():
                if value is not None and not key.startswith((INDEX_PREFIX, META_PREFIX)):
                    kind, _, name = key.decode().partition("|")
                    out[(p, kind, name)] = value
        return out

    def owns(self, partition: int) -> bool:
        return True

    def _writable(self, partition: int) -> bool:
        if partition not in self._backends:
            self.adopt(partition, DictBackend())
        return True

    def _backend(self, partition: int) -> Backend:
        self._writable(partition)
        return self._backends[partition]

    async def wait_ready(self, partitions: Iterable[int]) -> set[int]:
        return set(partitions)

    def add_outputs(self, outputs: Sequence[Out]) -> None:
        self.pending.extend(outputs)

    async def flush(self) -> None:
        changes = self.begin_flush()
        self.written.extend(self.pending)
        self.pending = []
        for p, c in changes.items():
            backend = self._backends[p]
            backend.write(self.local_changes(backend, c))
        self.end_flush()
        self.flushes += 1
