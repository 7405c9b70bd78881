"""The outbox schedule (chat/core/outbox.py): its indexed chains agree with a plain model."""

from __future__ import annotations

from typing import Final

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.chat.core.outbox import Outbox, QueuedMessage
from p2pchat.chat.core.packet import Packet, sha256

from .test_packet import make_packet

BASE: Final = make_packet(certified=False)
GROUPS: Final = (b"\x01" * 32, b"\x02" * 32)


def _packet(n: int, parent: bytes | None) -> Packet:
    message = attrs.evolve(BASE.message, parents=() if parent is None else (parent,))
    return attrs.evolve(BASE, message_hash=sha256(n.to_bytes(4, "big")), message=message)


def _model_chain(items: list[QueuedMessage], group_id: bytes) -> list[bytes]:
    chain = sorted(
        (i for i in items if i.group_id == group_id), key=lambda i: (i.rank, i.message_hash)
    )
    return [i.message_hash for i in chain]


# An operation: (kind, group index, a number choosing the item or the rank).
OPS: Final = st.lists(
    st.tuples(
        st.sampled_from(["add", "add_at", "remove", "start", "fail", "release"]),
        st.integers(0, 1),
        st.integers(0, 40),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_chains_tail_rank_and_in_flight_agree_with_a_plain_model(
    ops: list[tuple[str, int, int]],
) -> None:
    outbox = Outbox(1_000, 8_000, 4)
    now = 0
    for n, (kind, g, choice) in enumerate(ops):
        now += 10
        group_id = GROUPS[g]
        items = list(outbox)
        if kind in ("add", "add_at"):
            tail = outbox.tail(group_id)
            packet = _packet(n, None if tail is None else tail.message_hash)
            rank = choice if kind == "add_at" else None
            outbox.add(group_id, packet, origin=packet.message_hash, now=now, rank=rank)
        elif items:
            item = items[choice % len(items)]
            if kind == "remove":
                assert outbox.remove(item.message_hash) is item
                assert outbox.remove(item.message_hash) is None
            elif kind == "start":
                for started in outbox.start_due(now):
                    assert started.in_flight
            elif kind == "fail":
                outbox.failed(item.message_hash, now)
            else:
                outbox.release(item.message_hash)
        items = list(outbox)
        assert outbox.in_flight == sum(1 for i in items if i.in_flight) <= 4
        for gid in GROUPS:
            model = _model_chain(items, gid)
            chain = outbox.chain(gid)
            assert [i.message_hash for i in chain] == model
            tail = outbox.tail(gid)
            assert (tail.message_hash if tail is not None else None) == (
                model[-1] if model else None
            )
            ranks = [i.rank for i in chain]
            assert outbox.next_rank(gid, now) == max([now, *(r + 1 for r in ranks)])
            for index, item in enumerate(chain):
                before = outbox.predecessor(item)
                assert before is (chain[index - 1] if index else None)


def test_start_due_takes_the_chain_in_order_across_groups_within_the_concurrency() -> None:
    outbox = Outbox(1_000, 8_000, 3)
    tails: dict[bytes, bytes | None] = dict.fromkeys(GROUPS)
    for n, (group_id, rank) in enumerate(
        [(GROUPS[0], 5), (GROUPS[1], 1), (GROUPS[0], 6), (GROUPS[1], 9)]
    ):
        packet = _packet(n, tails[group_id])
        tails[group_id] = packet.message_hash
        outbox.add(group_id, packet, origin=packet.message_hash, now=0, rank=rank)
    started = outbox.start_due(0)
    assert [(i.group_id, i.rank) for i in started] == [
        (GROUPS[1], 1),
        (GROUPS[0], 5),
        (GROUPS[0], 6),
    ]
    assert outbox.in_flight == 3
    assert outbox.start_due(0) == []
    outbox.remove(started[0].message_hash)
    assert outbox.in_flight == 2
    assert [(i.group_id, i.rank) for i in outbox.start_due(0)] == [(GROUPS[1], 9)]
