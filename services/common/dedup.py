"""Deduplication by (source, id) over a time horizon, for one input partition. Pure; no I/O.

Keys are kept as 128-bit BLAKE2b digests (collision odds ~1e-20 for 10^9 keys). New keys are
grouped into chunks; a chunk is the unit written to the state changelog (one record per flush, not
one per event) and the unit of expiry: a chunk is dropped, with its keys, once it is older than the
horizon. A key is therefore remembered for at least the horizon after it was first seen.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from hashlib import blake2b

__all__ = ["Chunk", "DedupIndex", "digest"]

_DIGEST_BYTES = 16


def digest(source: str, event_id: str) -> bytes:
    """The stored form of a (source, id) key."""
    return blake2b(f"{source}\x00{event_id}".encode(), digest_size=_DIGEST_BYTES).digest()


@dataclass(frozen=True, slots=True)
class Chunk:
    """Keys first seen between two flushes of one partition."""

    seq: int
    created_s: float
    keys: tuple[bytes, ...]

    def encode(self) -> bytes:
        """Compact binary form: 8-byte creation time in ms, then the 16-byte digests."""
        return int(self.created_s * 1000).to_bytes(8, "big") + b"".join(self.keys)

    @classmethod
    def decode(cls, seq: int, raw: bytes) -> Chunk:
        """Inverse of :meth:`encode`; raises ValueError on a truncated value."""
        body = raw[8:]
        if len(raw) < 8 or len(body) % _DIGEST_BYTES:
            msg = f"dedup chunk {seq} has a corrupt value of {len(raw)} bytes"
            raise ValueError(msg)
        keys = tuple(body[i : i + _DIGEST_BYTES] for i in range(0, len(body), _DIGEST_BYTES))
        return cls(seq, int.from_bytes(raw[:8], "big") / 1000, keys)


@dataclass(slots=True)
class DedupIndex:
    """The keys seen on one partition within the horizon."""

    horizon_s: float
    _seen: set[bytes] = field(default_factory=set)
    _pending: list[bytes] = field(default_factory=list)
    _chunks: deque[Chunk] = field(default_factory=deque)
    _next_seq: int = 0

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
        chunk = Chunk(self._next_seq, now_s, tuple(self._pending))
        self._next_seq += 1
        self._pending = []
        self._chunks.append(chunk)
        return chunk

    def expire(self, now_s: float) -> list[int]:
        """Forget chunks older than the horizon; returns their sequence numbers to delete."""
        gone: list[int] = []
        chunks = self._chunks
        while chunks and now_s - chunks[0].created_s > self.horizon_s:
            chunk = chunks.popleft()
            self._seen.difference_update(chunk.keys)
            gone.append(chunk.seq)
        return gone

    @classmethod
    def restore(cls, horizon_s: float, chunks: list[Chunk], now_s: float) -> DedupIndex:
        """Rebuild from persisted chunks (any order); expired ones are left out, not resurrected."""
        index = cls(horizon_s)
        for chunk in sorted(chunks, key=lambda c: c.seq):
            index._chunks.append(chunk)
            index._seen.update(chunk.keys)
            index._next_seq = chunk.seq + 1
        index.expire(now_s)
        return index

    def stale_seqs(self, chunks: list[Chunk], now_s: float) -> list[int]:
        """Sequence numbers among ``chunks`` that are past the horizon (to delete after restore)."""
        return [c.seq for c in chunks if now_s - c.created_s > self.horizon_s]
