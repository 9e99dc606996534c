"""Deduplication index: exact membership within the horizon, chunks in the state store, restart."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.engine.state import MemoryStore
from services.runtime.dedup import DEDUP_KIND, Chunk, DedupIndex, chunk_keys, digest
from tests.wiring import memory_store

DAY = 86_400.0


def _index(store: MemoryStore | None = None) -> DedupIndex:
    return DedupIndex(store or memory_store(), 0, DAY)


def test_first_sight_is_new_and_second_is_duplicate() -> None:
    index = _index()
    key = digest("/sw/5141", "e1")
    assert index.add(key) is True
    assert index.add(key) is False


def test_same_id_from_another_source_is_a_different_event() -> None:
    index = _index()
    assert index.add(digest("/sw/5141", "e1"))
    assert index.add(digest("/sw/5165", "e1"))


def test_separator_prevents_ambiguous_concatenation() -> None:
    assert digest("/a", "bc") != digest("/ab", "c")


def test_keys_are_remembered_for_the_horizon_then_forgotten() -> None:
    store = memory_store()
    index = _index(store)
    key = digest("s", "e1")
    index.add(key)
    chunk = index.cut(now_s=1000.0)
    assert chunk is not None
    asyncio.run(store.flush())
    assert index.expire(now_s=1000.0 + DAY) == ([], 0)
    assert not index.add(key)
    assert index.expire(now_s=1000.0 + DAY + 1) == ([chunk.name], 1)
    asyncio.run(store.flush())
    assert index.add(key)


def test_cut_stages_only_keys_added_since_the_last_cut() -> None:
    store = memory_store()
    index = _index(store)
    index.add(b"a" * 16)
    first = index.cut(now_s=1.0)
    assert first is not None
    assert first.keys == (b"a" * 16,)
    assert index.cut(now_s=2.0) is None
    index.add(b"b" * 16)
    second = index.cut(now_s=3.0)
    assert second is not None
    assert second.keys == (b"b" * 16,)
    assert second.name != first.name
    assert [name for name, _ in store.items(0, DEDUP_KIND)] == [first.name, second.name]


def test_chunk_encoding_round_trips() -> None:
    chunk = Chunk("c7", 1234.5, (digest("s", "1"), digest("s", "2")))
    assert Chunk.decode("c7", chunk.encode()) == chunk
    assert chunk_keys(chunk.encode()) == list(chunk.keys)


def test_corrupt_chunk_is_reported() -> None:
    with pytest.raises(ValueError, match="corrupt"):
        Chunk.decode("c1", b"\x00" * 8 + b"\x01" * 5)


@given(st.lists(st.lists(st.binary(min_size=16, max_size=16), max_size=20), max_size=10))
def test_a_restarted_index_knows_exactly_the_flushed_keys(batches: list[list[bytes]]) -> None:
    store = memory_store()
    live = _index(store)
    for i, batch in enumerate(batches):
        for key in batch:
            live.add(key)
        live.cut(now_s=float(i))
        asyncio.run(store.flush())
    restarted = _index(store)
    for batch in batches:
        for key in batch:
            assert not restarted.add(key)
    assert restarted.add(b"\xff" * 17)  # a key never seen


def test_the_store_refuses_a_lookup_in_an_index_it_does_not_keep() -> None:
    """A store made without the index would take every event as new: that must be loud."""
    with pytest.raises(KeyError, match="no index"):
        DedupIndex(MemoryStore(), 0, DAY).add(b"k" * 16)


def test_chunks_of_two_writers_never_share_a_name() -> None:
    a, b = _index(), _index()
    a.add(b"a" * 16)
    b.add(b"b" * 16)
    ca, cb = a.cut(now_s=5.0), b.cut(now_s=5.0)
    assert ca is not None
    assert cb is not None
    assert ca.name != cb.name
