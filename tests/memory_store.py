"""An in-memory StateStore for pure unit tests (the real one is exercised against Kafka)."""

from __future__ import annotations

from collections.abc import Iterator


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[tuple[int, str, str], bytes] = {}
        self.writes = 0

    def put(self, partition: int, kind: str, name: str, value: bytes) -> None:
        self.data[(partition, kind, name)] = value
        self.writes += 1

    def delete(self, partition: int, kind: str, name: str) -> None:
        self.data.pop((partition, kind, name), None)
        self.writes += 1

    def owns(self, partition: int) -> bool:
        return True

    def items(self, partition: int, kind: str) -> Iterator[tuple[str, bytes]]:
        for (p, k, n), v in list(self.data.items()):
            if p == partition and k == kind:
                yield n, v

    async def flush(self) -> None:
        self.flushes = getattr(self, "flushes", 0) + 1
