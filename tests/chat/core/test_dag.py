"""Display order and DAG heads (specs/chat.md §8)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.chat.core.dag import Heads, display_order


def h(n: int) -> bytes:
    """A 32-byte stand-in hash that sorts by ``n``."""
    return n.to_bytes(32, "big")


@pytest.mark.parametrize(
    ("parents", "order"),
    [
        pytest.param({}, [], id="empty"),
        pytest.param({h(3): [], h(1): [], h(2): []}, [1, 2, 3], id="roots-by-hash"),
        pytest.param({h(1): [h(2)], h(2): [h(3)], h(3): []}, [3, 2, 1], id="chain"),
        # Diamond 9 -> (5, 2) -> 7: the smaller ready hash first.
        pytest.param(
            {h(9): [], h(5): [h(9)], h(2): [h(9)], h(7): [h(2), h(5)]}, [9, 2, 5, 7], id="diamond"
        ),
        # 4 is ready before 3's child 1, which waits for 3.
        pytest.param({h(3): [], h(4): [], h(1): [h(3), h(4)]}, [3, 4, 1], id="merge"),
        # A child whose parent is not held is ready at once.
        pytest.param({h(2): [h(99)], h(3): []}, [2, 3], id="parent-not-held"),
        pytest.param({h(5): [], h(1): [h(5)], h(2): []}, [2, 5, 1], id="ready-order"),
        pytest.param({h(1): [h(2), h(2)], h(2): []}, [2, 1], id="repeated-parent"),
    ],
)
def test_display_order_examples(parents: Mapping[bytes, Sequence[bytes]], order: list[int]) -> None:
    assert display_order(parents) == [h(n) for n in order]


def test_display_order_breaks_a_cycle_by_smallest_hash() -> None:
    # Impossible between hash-linked messages, but a mapping may hold one; nothing is dropped.
    parents = {h(1): [h(2)], h(2): [h(1)], h(3): [h(2)], h(0): []}
    assert display_order(parents) == [h(0), h(1), h(2), h(3)]
    assert display_order({h(4): [h(4)]}) == [h(4)]


@st.composite
def dags(draw: st.DrawFn) -> dict[bytes, list[bytes]]:
    """A random DAG: each node's parents are drawn among earlier nodes and some unknown hashes."""
    keys = draw(st.lists(st.binary(min_size=32, max_size=32), max_size=30, unique=True))
    out: dict[bytes, list[bytes]] = {}
    for i, node in enumerate(keys):
        earlier = st.sampled_from(keys[:i]) if i else st.nothing()
        # hashes outside the DAG (never one of its nodes, which could close a cycle)
        unknown = st.binary(min_size=32, max_size=32).filter(lambda b: b not in keys)
        out[node] = sorted(set(draw(st.lists(earlier | unknown, max_size=4))))
    return out


@given(dags(), st.randoms(use_true_random=False))
@settings(max_examples=300)
def test_display_order_is_topological_and_insertion_independent(
    parents: dict[bytes, list[bytes]], rng: random.Random
) -> None:
    order = display_order(parents)
    assert sorted(order) == sorted(parents)
    position = {node: i for i, node in enumerate(order)}
    for node, node_parents in parents.items():
        for parent in node_parents:
            if parent in position:
                assert position[parent] < position[node]
    items = list(parents.items())
    rng.shuffle(items)
    assert display_order(dict(items)) == order


@given(dags())
@settings(max_examples=200)
def test_display_order_takes_the_smallest_ready_hash(parents: dict[bytes, list[bytes]]) -> None:
    order = display_order(parents)
    shown: set[bytes] = set()
    for node in order:
        ready = [
            n
            for n, ps in parents.items()
            if n not in shown and all(p in shown or p not in parents for p in ps)
        ]
        assert node == min(ready)
        shown.add(node)


# -- heads ---------------------------------------------------------------------------------------


def test_heads_linear_fork_and_merge() -> None:
    heads = Heads()
    assert heads.heads() == ()
    heads.add(h(1), [])
    assert heads.heads() == (h(1),)
    heads.add(h(2), [h(1)])
    assert heads.heads() == (h(2),)
    heads.add(h(4), [h(2)])
    heads.add(h(3), [h(2)])
    assert heads.heads() == (h(3), h(4))
    heads.add(h(5), [h(3), h(4)])
    assert heads.heads() == (h(5),)
    assert len(heads) == 1
    assert h(3) in heads
    assert h(9) not in heads


def test_heads_out_of_order_arrival() -> None:
    heads = Heads()
    heads.add(h(3), [h(2)])
    assert heads.heads() == (h(3),)  # 2 is not held: not a head
    heads.add(h(2), [h(1)])
    assert heads.heads() == (h(3),)  # 3 already names 2
    heads.add(h(1), [])
    assert heads.heads() == (h(3),)


def test_heads_add_is_idempotent() -> None:
    heads = Heads()
    heads.add(h(1), [])
    heads.add(h(2), [h(1)])
    heads.add(h(1), [])
    assert heads.heads() == (h(2),)


def test_heads_keeps_the_16_smallest_and_converges() -> None:
    heads = Heads()
    for n in range(40, 0, -1):
        heads.add(h(n), [])
    assert len(heads) == 40
    first = heads.heads()
    assert first == tuple(h(n) for n in range(1, 17))
    heads.add(h(100), first)
    assert len(heads) == 25
    assert heads.heads() == tuple(h(n) for n in range(17, 33))
    heads.add(h(101), heads.heads())
    heads.add(h(102), heads.heads())
    assert heads.heads() == (h(102),)


@given(dags(), st.randoms(use_true_random=False))
@settings(max_examples=300)
def test_heads_are_the_unnamed_held_messages(
    parents: dict[bytes, list[bytes]], rng: random.Random
) -> None:
    items = list(parents.items())
    rng.shuffle(items)
    heads = Heads()
    for node, node_parents in items:
        heads.add(node, node_parents)
    named = {p for ps in parents.values() for p in ps}
    expected = sorted(n for n in parents if n not in named)
    assert len(heads) == len(expected)
    assert heads.heads() == tuple(expected[:16])


def test_heads_gaps_are_the_parents_named_but_not_held() -> None:
    heads = Heads()
    heads.add(h(5), [h(3), h(4)])
    assert heads.gaps(64) == (h(3), h(4))
    assert heads.gaps(1) == (h(3),)  # the smallest hashes first
    heads.add(h(4), [h(1)])
    assert heads.gaps(64) == (h(1), h(3))
    heads.add(h(1), [])
    heads.add(h(3), [h(1)])
    assert heads.gaps(64) == ()
    assert heads.heads() == (h(5),)
