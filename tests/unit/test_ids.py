"""Snowflake ids: time-ordered, unique, node-tagged, within a signed 64-bit integer."""

from __future__ import annotations

import itertools
import time

import pytest

from tidings.core import ids
from tidings.core.ids import (
    EPOCH_MS,
    MAX_NODE,
    MAX_SEQUENCE,
    NODE_BITS,
    SEQUENCE_BITS,
    IdGenerator,
    id_timestamp_ms,
)

INT64_MAX = 2**63 - 1


def _node_of(snowflake: int) -> int:
    return (snowflake >> SEQUENCE_BITS) & MAX_NODE


def _sequence_of(snowflake: int) -> int:
    return snowflake & MAX_SEQUENCE


def test_fifty_thousand_ids_strictly_increase_and_are_unique() -> None:
    generator = IdGenerator(node_id=7)
    generated = [generator.next_id() for _ in range(50_000)]
    assert len(set(generated)) == len(generated)
    assert all(a < b for a, b in itertools.pairwise(generated))


def test_timestamp_is_now() -> None:
    generator = IdGenerator(node_id=1)
    before = int(time.time() * 1000)
    snowflake = generator.next_id()
    after = int(time.time() * 1000)
    assert before <= id_timestamp_ms(snowflake) <= after
    assert id_timestamp_ms(snowflake) > EPOCH_MS


@pytest.mark.parametrize("node_id", [0, 1, 513, MAX_NODE])
def test_node_id_is_encoded(node_id: int) -> None:
    generator = IdGenerator(node_id=node_id)
    for _ in range(100):
        assert _node_of(generator.next_id()) == node_id
    assert generator.node_id == node_id


def test_random_node_id_is_in_range() -> None:
    for _ in range(50):
        generator = IdGenerator()
        assert 0 <= generator.node_id <= MAX_NODE
        assert _node_of(generator.next_id()) == generator.node_id


@pytest.mark.parametrize("node_id", [-1, MAX_NODE + 1, 4096, 2**31])
def test_invalid_node_id_raises(node_id: int) -> None:
    with pytest.raises(ValueError, match="node_id"):
        IdGenerator(node_id=node_id)


def test_ids_fit_a_signed_bigint() -> None:
    snowflake = IdGenerator(node_id=MAX_NODE).next_id()
    assert 0 < snowflake <= INT64_MAX
    # The layout itself leaves the sign bit alone for the 41-bit time range.
    largest = ((1 << 41) - 1) << (NODE_BITS + SEQUENCE_BITS) | (MAX_NODE << SEQUENCE_BITS)
    assert largest | MAX_SEQUENCE <= INT64_MAX


def test_sequence_exhaustion_borrows_the_next_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frozen = (EPOCH_MS + 123_456) / 1000
    monkeypatch.setattr("tidings.core.ids.time.time", lambda: frozen)
    generator = IdGenerator(node_id=3)
    burst = [generator.next_id() for _ in range(MAX_SEQUENCE + 3)]
    assert all(a < b for a, b in itertools.pairwise(burst))
    first_ms = id_timestamp_ms(burst[0])
    assert [_sequence_of(i) for i in burst[: MAX_SEQUENCE + 1]] == list(range(MAX_SEQUENCE + 1))
    assert all(id_timestamp_ms(i) == first_ms for i in burst[: MAX_SEQUENCE + 1])
    assert id_timestamp_ms(burst[MAX_SEQUENCE + 1]) == first_ms + 1
    assert _sequence_of(burst[MAX_SEQUENCE + 1]) == 0


def test_clock_going_backwards_does_not_reorder(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [(EPOCH_MS + 10_000) / 1000]
    monkeypatch.setattr("tidings.core.ids.time.time", lambda: clock[0])
    generator = IdGenerator(node_id=9)
    first = generator.next_id()
    clock[0] -= 5  # NTP steps the clock back five seconds
    second = generator.next_id()
    assert second > first
    assert id_timestamp_ms(second) == id_timestamp_ms(first)


def test_configure_ids_sets_the_process_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids, "_generator", None)
    ids.configure_ids(42)
    assert _node_of(ids.new_id()) == 42
    with pytest.raises(ValueError, match="node_id"):
        ids.configure_ids(MAX_NODE + 1)
