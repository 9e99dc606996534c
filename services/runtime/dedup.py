"""Deduplication by (source, id) over a time horizon, for one input partition, kept in the state
store: exact, and as large as the traffic of the horizon without costing memory.

Keys are kept as 128-bit BLAKE2b digests (collision odds ~1e-20 for 10^9 keys). New keys are
grouped into chunks; a chunk is the unit written to the state topic (one record per flush, not
one per event) and the unit of expiry: a chunk is dropped, with its keys, once it is older than the
horizon. A key is therefore remembered for at least the horizon after it was first seen. The
store indexes the digests of every chunk it holds (:func:`chunk_keys`, a derived index kept on
local disk only), so a lookup is one read, whatever the number of keys.

Chunk names begin with their creation time (milliseconds, zero-padded), so chunks are stored in
the order they expire in, and unique per writer (a per-process token and a counter), so two
workers that briefly both wrote a partition around a rebalance never overwrite each other's chunks.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from hashlib import blake2b

from services.engine.state import StateStore

__all__ = ["DEDUP_KIND", "STATE_INDEXES", "Chunk", "DedupIndex", "chunk_keys", "digest"]

DEDUP_KIND = "dedup"
_DIGEST_BYTES = 16
_TIME_BYTES = 8
_WRITER = uuid.uuid4().hex[:8]
_COUNTER = itertools.count()


def digest(source: str, event_id: str) -> bytes:
    """The stored form of a (source, id) key."""
    return blake2b(f"{source}\x00{event_id}".encode(), digest_size=_DIGEST_BYTES).digest()


def chunk_keys(raw: bytes) -> list[bytes]:
    """The digests an encoded chunk holds (the store's derived index of :data:`DEDUP_KIND`)."""
    body = memoryview(raw)[_TIME_BYTES:]
    return [
        bytes(body[i : i + _DIGEST_BYTES]) for i in range(0, len(body) - _DIGEST_BYTES + 1, _DIGEST_BYTES)
    ]


STATE_INDEXES = {DEDUP_KIND: chunk_keys}
"""The derived indexes every state store of the runtime keeps."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Keys first seen between two flushes of one partition."""

    name: str
    created_s: float
    keys: tuple[bytes, ...]

    def encode(self) -> bytes:
        """Compact binary form: 8-byte creation time in ms, then the 16-byte digests."""
        return int(self.created_s * 1000).to_bytes(_TIME_BYTES, "big") + b"".join(self.keys)

    @classmethod
    def decode(cls, name: str, raw: bytes) -> Chunk:
        """Inverse of :meth:`encode`; raises ValueError on a truncated value."""
        if len(raw) < _TIME_BYTES or (len(raw) - _TIME_BYTES) % _DIGEST_BYTES:
            msg = f"dedup chunk {name} has a corrupt value of {len(raw)} bytes"
            raise ValueError(msg)
        created_s = int.from_bytes(raw[:_TIME_BYTES], "big") / 1000
        return cls(name, created_s, tuple(chunk_keys(raw)))


def _name_at(at_s: float) -> str:
    return f"{int(at_s * 1000):013d}"


@dataclass(slots=True)
class DedupIndex:
    """The keys seen on one partition within the horizon: those added since the last :meth:`cut`
    in memory, every other one in the store."""

    store: StateStore
    partition: int
    horizon_s: float
    _pending: list[bytes] = field(default_factory=list)
    _pending_set: set[bytes] = field(default_factory=set)

    def add(self, key: bytes) -> bool:
        """Record ``key``; True when it is new, False for a duplicate."""
        if key in self._pending_set or self.store.indexed(self.partition, DEDUP_KIND, key):
            return False
        self._pending_set.add(key)
        self._pending.append(key)
        return True

    def add_many(self, keys: list[bytes]) -> list[bool]:
        """:meth:`add` for many keys (in order: a key repeated among them is new only the first
        time), with one read of the store for those not seen since the last cut."""
        pending = self._pending_set
        unseen = list({k: None for k in keys if k not in pending})
        stored = dict(zip(unseen, self.store.indexed_many(self.partition, DEDUP_KIND, unseen), strict=True))
        out = []
        for key in keys:
            if key in pending or stored.get(key, True):
                out.append(False)
            else:
                pending.add(key)
                self._pending.append(key)
                out.append(True)
        return out

    def cut(self, now_s: float) -> Chunk | None:
        """Close the keys added since the last cut into a chunk and stage it in the store (None if
        there are none)."""
        if not self._pending:
            return None
        chunk = Chunk(f"{_name_at(now_s)}-{_WRITER}-{next(_COUNTER)}", now_s, tuple(self._pending))
        self.store.put(self.partition, DEDUP_KIND, chunk.name, chunk.encode())
        self._pending, self._pending_set = [], set()
        return chunk

    def expire(self, now_s: float, *, limit: int = 1000) -> tuple[list[str], int]:
        """Delete up to ``limit`` chunks older than the horizon, oldest first; returns their names
        and how many keys they held."""
        stop = _name_at(now_s - self.horizon_s)
        gone: list[str] = []
        keys = 0
        for name, raw in self.store.items(self.partition, DEDUP_KIND, stop=stop):
            if len(gone) >= limit:
                break
            gone.append(name)
            keys += (len(raw) - _TIME_BYTES) // _DIGEST_BYTES
        for name in gone:
            self.store.delete(self.partition, DEDUP_KIND, name)
        return gone, keys
