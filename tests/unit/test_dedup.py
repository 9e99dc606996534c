"""Deduplication index: exact membership within the horizon, chunked persistence, restore."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.runtime.dedup import Chunk, DedupIndex, digest

DAY = 86_400.0


def test_first_sight_is_new_and_second_is_duplicate() -> None:
    index = DedupIndex(horizon_s=DAY)
    key = digest("/sw/5141", "e1")
    assert index.add(key) is True
    assert index.add(key) is False


def test_same_id_from_another_source_is_a_different_event() -> None:
    index = DedupIndex(horizon_s=DAY)
    assert index.add(digest("/sw/5141", "e1"))
    assert index.add(digest("/sw/5165", "e1"))


def test_separator_prevents_ambiguous_concatenation() -> None:
    assert digest("/a", "bc") != digest("/ab", "c")


def test_keys_are_remembered_for_the_horizon_then_forgotten() -> None:
    index = DedupIndex(horizon_s=DAY)
    key = digest("s", "e1")
    index.add(key)
    chunk = index.cut(now_s=1000.0)
    assert chunk is not None
    assert index.expire(now_s=1000.0 + DAY) == []
    assert not index.add(key)
    assert index.expire(now_s=1000.0 + DAY + 1) == [chunk.name]
    assert index.add(key)


def test_cut_returns_only_keys_added_since_the_last_cut() -> None:
    index = DedupIndex(horizon_s=DAY)
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


def test_chunk_encoding_round_trips() -> None:
    chunk = Chunk("c7", 1234.5, (digest("s", "1"), digest("s", "2")))
    assert Chunk.decode("c7", chunk.encode()) == chunk


def test_corrupt_chunk_is_reported() -> None:
    import pytest

    with pytest.raises(ValueError, match="corrupt"):
        Chunk.decode("c1", b"\x00" * 8 + b"\x01" * 5)


@given(st.lists(st.lists(st.binary(min_size=16, max_size=16), max_size=20), max_size=10))
def test_restore_from_persisted_chunks_knows_exactly_the_persisted_keys(batches: list[list[bytes]]) -> None:
    live = DedupIndex(horizon_s=DAY)
    chunks = []
    for i, batch in enumerate(batches):
        for key in batch:
            live.add(key)
        if (chunk := live.cut(now_s=float(i))) is not None:
            chunks.append(Chunk.decode(chunk.name, chunk.encode()))
    restored = DedupIndex.restore(DAY, list(reversed(chunks)), now_s=float(len(batches)))
    assert len(restored) == len(live)
    for batch in batches:
        for key in batch:
            assert not restored.add(key)
    fresh = live.cut(now_s=99.0)
    assert fresh is None
    assert restored.cut(now_s=99.0) is None


def test_restore_leaves_out_expired_chunks_and_reports_them() -> None:
    old = Chunk("old", 0.0, (b"o" * 16,))
    new = Chunk("new", 2 * DAY, (b"n" * 16,))
    index = DedupIndex.restore(DAY, [old, new], now_s=2 * DAY + 1)
    assert index.add(b"o" * 16)
    assert not index.add(b"n" * 16)
    assert index.stale_names([old, new], now_s=2 * DAY + 1) == ["old"]


def test_chunks_of_two_writers_never_share_a_name() -> None:
    a, b = DedupIndex(horizon_s=DAY), DedupIndex(horizon_s=DAY)
    a.add(b"a" * 16)
    b.add(b"b" * 16)
    ca, cb = a.cut(now_s=5.0), b.cut(now_s=5.0)
    assert ca is not None
    assert cb is not None
    assert ca.name != cb.name
