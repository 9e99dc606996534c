"""Deduplication by (source, id) over a time horizon, for one input partition. Pure; no I/O.

Keys are kept as 128-bit BLAKE2b digests (collision odds ~1e-20 for 10^9 keys). New keys are
grouped into chunks; a chunk is the unit written to the state topic (one record per flush, not
one per event) and the unit of expiry: a chunk is dropped, with its keys, once it is older than the
horizon. A key is therefore remembered for at least the horizon after it was first seen.

Chunk names are unique per writer (creation time, a per-process token, a counter), so two workers
that briefly both wrote a partition around a rebalance never overwrite each other's chunks.
"""

from __future__ import annotations

import itertools
import uuid
from collections import deque
from dataclasses import dataclass, field
from hashlib import blake2b

__all__ = ["Chunk", "DedupIndex", "digest"]

_DIGEST_BYTES = 16
_WRITER = uuid.uuid4().hex[:8]
_COUNTER = itertools.count()


def digest(source: str, event_id: str) -> bytes:
    """The stored form of a (source, id) key."""
    return blake2b(f"{source}\x00{event_id}".encode(), digest_size=_DIGEST_BYTES).digest()


@dataclass(frozen=True, slots=True)
class Chunk:
    """Keys first seen between two flushes of one partition."""

    name: str
    created_s: float
    keys: tuple[bytes, ...]

    def encode(self) -> bytes:
        """Compact binary form: 8-byte creation time in ms, then the 16-byte digests."""
        return int(self.created_s * 1000).to_bytes(8, "big") + b"".join(self.keys)

    @classmethod
    def decode(cls, name: str, raw: bytes) -> Chunk:
        """Inverse of :meth:`encode`; raises ValueError on a truncated value."""
        body = raw[8:]
        if len(raw) < 8 or len(body) % _DIGEST_BYTES:
            msg = f"dedup chunk {name} has a corrupt value of {len(raw)} bytes"
            raise ValueError(msg)
        keys = tuple(body[i : i + _DIGEST_BYTES] for i in range(0, len(body), _DIGEST_BYTES))
        return cls(name, int.from_bytes(raw[:8], "big") / 1000, keys)


@dataclass(slots=True)
class DedupIndex:
    """The keys seen on one partition within the horizon."""

    horizon_s: float
    _seen: set[bytes] = field(default_factory=set)
    _pending: list[bytes] = field(default_factory=list)
    _chunks: deque[Chunk] = field(default_factory=deque)

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, key: bytes) -> bool:
        """Record ``key``; True when it is new, False for a duplicate."""
        seen = self._seen
        if key in seen:
            return False
        seen.add(key)
        self._pending.append(key)
        return True

    def cut(self, now_s: float) -> Chunk | None:
        """Close the keys added since the last cut into a chunk to persist (None if there are none)."""
        if not self._pending:
            return None
        name = f"{int(now_s * 1000):013d}-{_WRITER}-{next(_COUNTER)}"
        chunk = Chunk(name, now_s, tuple(self._pending))
        self._pending = []
        self._chunks.append(chunk)
        return chunk

    def expire(self, now_s: float) -> list[str]:
        """Forget chunks older than the horizon; returns their names, to delete."""
        gone: list[str] = []
        chunks = self._chunks
        while chunks and now_s - chunks[0].created_s > self.horizon_s:
            chunk = chunks.popleft()
            self._seen.difference_update(chunk.keys)
            gone.append(chunk.name)
        return gone

    @classmethod
    def restore(cls, horizon_s: float, chunks: list[Chunk], now_s: float) -> DedupIndex:
        """Rebuild from persisted chunks (any order); expired ones are left out, not resurrected."""
        index = cls(horizon_s)
        for chunk in sorted(chunks, key=lambda c: (c.created_s, c.name)):
            index._chunks.append(chunk)
            index._seen.update(chunk.keys)
        index.expire(now_s)
        return index

    def stale_names(self, chunks: list[Chunk], now_s: float) -> list[str]:
        """Names of chunks past the horizon (to delete after a restore)."""
        return [c.name for c in chunks if now_s - c.created_s > self.horizon_s]
