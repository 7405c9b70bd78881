"""One author's order (specs/chat.md §6): an author's queued messages name the one before them,
wait for its quorum, and are written again when it can never be ratified. Engines only: no
sockets, no clock."""

from __future__ import annotations

from chat.core.enginesim import CONFIG, Sim
from p2pchat.chat.core import crypto
from p2pchat.chat.core.engine import ChatEngine
from p2pchat.chat.core.events import Abandoned, Commit, Ratified, Tick
from p2pchat.chat.core.outbox import Outbox
from p2pchat.chat.core.packet import Packet
from p2pchat.chat.core.roster import Member, Role
from p2pchat.chat.core.txn import PutPacket
from p2pchat.chat.core.view import history_order

from .test_engine import send, three_ratifiers


def _held(sim: Sim, engine: ChatEngine) -> dict[bytes, Packet]:
    """The certified packets ``engine`` committed (what it holds ratified), by hash."""
    return {
        op.packet.message_hash: op.packet
        for commit in sim.commits[engine.peer_id]
        for op in commit.txn.operations
        if isinstance(op, PutPacket) and op.packet.certificate is not None
    }


def _shown(sim: Sim, engine: ChatEngine, group_id: bytes) -> list[bytes]:
    """The group's text messages as ``engine`` shows them, decrypted, in display order."""
    view = engine.view(group_id)
    held = _held(sim, engine)
    assert set(held) == view.ratified
    return [
        crypto.decrypt_packet(p, epoch_key=view.epoch_keys[p.message.epoch])
        for p in history_order(held)
        if p.message.message_type == "text"
    ]


def _lines(first: int, last: int) -> list[bytes]:
    return [f"line {n}".encode() for n in range(first, last + 1)]


def _send_lines(sim: Sim, engine: ChatEngine, group_id: bytes, lines: list[bytes]) -> list[bytes]:
    hashes = []
    for line in lines:
        hashes.append(send(sim, engine, group_id, line))
        sim.now += 1
    return hashes


def test_a_queued_message_names_the_one_before_it_and_waits_for_its_quorum() -> None:
    sim, group_id, a, b, c = three_ratifiers()
    sim.down |= {b.peer_id, c.peer_id}
    first, second, third = _send_lines(sim, a, group_id, _lines(1, 3))
    chain = a.outbox.chain(group_id)
    assert [i.message_hash for i in chain] == [first, second, third]
    assert first in chain[1].packet.message.parents
    assert second in chain[2].packet.message.parents
    # Only the first was put to the vote (a votes for its own): the others wait for it.
    voted = {h for peer, h in sim.votes if peer == a.peer_id}
    assert first in voted
    assert not voted & {second, third}
    # A waiting message does not make the engine wake for nothing.
    wake = a.next_wake()
    assert wake is not None
    assert wake > sim.now
    sim.down.clear()
    sim.now += CONFIG.retry_max
    sim.handle(a, Tick(sim.now))
    assert all(a.view(group_id).has(h) for h in (first, second, third))
    assert [r.origin for r in sim.actions_of(a, Ratified)] == [first, second, third]


def test_thirty_lines_across_a_ratifier_outage_show_in_send_order_everywhere() -> None:
    """The issue's scenario in the engine: quorum 2 of 2, bob down after line 8, back after
    line 20; before the rule every node showed 1..9, 17, 14, 16, ... (ties by hash)."""
    sim = Sim()
    alice, bob = sim.add(), sim.add()
    group_id = sim.create(alice)
    sim.invite(alice, group_id, bob, Role.RATIFIER)
    assert alice.view(group_id).state.current_roster.quorum == 2
    _send_lines(sim, alice, group_id, _lines(1, 8))
    sim.down.add(bob.peer_id)
    for line in _lines(9, 20):
        send(sim, alice, group_id, line)
        sim.now += 700
        sim.handle(alice, Tick(sim.now))
    sim.down.clear()
    _send_lines(sim, alice, group_id, _lines(21, 30))
    sim.now += CONFIG.retry_max
    sim.handle(alice, Tick(sim.now))
    assert len(alice.outbox) == 0
    for engine in (alice, bob):
        assert _shown(sim, engine, group_id) == _lines(1, 30)


def test_cancelling_a_message_writes_the_next_one_again_after_the_one_before() -> None:
    sim, group_id, a, b, c = three_ratifiers()
    sim.down |= {b.peer_id, c.peer_id}
    first, second, third = _send_lines(sim, a, group_id, _lines(1, 3))
    sim.commit(a, a.cancel(second))
    chain = a.outbox.chain(group_id)
    assert [i.origin for i in chain] == [first, third]
    rewritten = chain[1]
    assert rewritten.message_hash != third  # written again under a new hash
    assert first in rewritten.packet.message.parents
    assert second not in rewritten.packet.message.parents
    sim.down.clear()
    sim.now += CONFIG.retry_max
    sim.handle(a, Tick(sim.now))
    assert len(a.outbox) == 0
    assert _shown(sim, b, group_id) == [b"line 1", b"line 3"]
    assert not b.view(group_id).has(second)
    origins = [r.origin for r in sim.actions_of(a, Ratified)]
    assert origins == [first, third]


def test_a_closed_epoch_writes_the_whole_chain_again_in_order() -> None:
    sim, group_id, a, b, c = three_ratifiers()
    d = sim.add()
    sim.invite(a, group_id, d, Role.USER)
    sim.log.clear()
    sim.down |= {b.peer_id, c.peer_id}
    hashes = _send_lines(sim, d, group_id, _lines(1, 4))
    # The roster changes before d retries: its queued messages are of a closed epoch. (d gets
    # the change last, so that every other member holds it before d writes again.)
    sim.down = {d.peer_id}
    e = sim.add()
    sim.invite(a, group_id, e, Role.USER)
    sim.down.clear()
    sim.deliver(d.peer_id, group_id, a.view(group_id).state.roster_packets[-1])
    assert d.view(group_id).state.current_epoch == 4
    sim.now += CONFIG.retry_max
    sim.handle(d, Tick(sim.now))
    assert len(d.outbox) == 0
    ratified = sim.actions_of(d, Ratified)
    assert [r.origin for r in ratified] == hashes
    assert not {r.message_hash for r in ratified} & set(hashes)  # all written again
    for engine in (a, b, c, d):
        assert _shown(sim, engine, group_id) == _lines(1, 4)


def test_a_roster_change_is_not_held_back_by_the_owners_waiting_messages() -> None:
    sim, group_id, a, b, c = three_ratifiers()
    sim.down |= {b.peer_id, c.peer_id}
    (waiting,) = _send_lines(sim, a, group_id, _lines(1, 1))
    d = sim.add()
    members = a.view(group_id).state.current_roster.members
    entry = Member(d.peer_id, Role.USER, d.hpke.kem, d.hpke.public_bytes())
    packet, commit = a.change_roster(group_id, [*members, entry], added=d.peer_id, now=sim.now)
    assert waiting not in packet.message.parents
    sim.commit(a, commit)
    assert (a.peer_id, packet.message_hash) in sim.votes  # put to the vote at once
    # A message written after it follows it, and is written again once it opens the epoch.
    later = send(sim, a, group_id, b"line 2")
    queued = a.outbox.get(later)
    assert queued is not None
    assert packet.message_hash in queued.packet.message.parents
    sim.down.clear()
    sim.now += CONFIG.retry_max
    sim.handle(a, Tick(sim.now))
    assert len(a.outbox) == 0
    assert a.view(group_id).state.current_epoch == 3
    assert _shown(sim, b, group_id) == [b"line 1", b"line 2"]


def test_messages_written_before_their_predecessor_is_queued_are_put_in_order() -> None:
    """Two writes before either commit (the node serialises them; the engine repairs)."""
    sim, group_id, a, b, c = three_ratifiers()
    sim.down |= {b.peer_id, c.peer_id}
    one, commit_one = a.author(
        group_id, b"line 1", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    sim.now += 1
    two, commit_two = a.author(
        group_id, b"line 2", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    assert one.message_hash not in two.message.parents
    sim.commit(a, commit_one)
    sim.commit(a, commit_two)
    chain = a.outbox.chain(group_id)
    assert chain[0].message_hash == one.message_hash
    assert one.message_hash in chain[1].packet.message.parents  # written again after it
    sim.down.clear()
    sim.now += CONFIG.retry_max
    sim.handle(a, Tick(sim.now))
    assert _shown(sim, c, group_id) == [b"line 1", b"line 2"]


def test_a_dropped_roster_change_frees_the_messages_that_followed_it() -> None:
    sim, group_id, a, b, c = three_ratifiers()
    sim.down |= {b.peer_id, c.peer_id}
    d = sim.add()
    members = a.view(group_id).state.current_roster.members
    entry = Member(d.peer_id, Role.USER, d.hpke.kem, d.hpke.public_bytes())
    roster, commit = a.change_roster(group_id, [*members, entry], added=d.peer_id, now=sim.now)
    sim.commit(a, commit)
    later = send(sim, a, group_id, b"after the change")
    # A roster change cannot be cancelled (§14); the engine drops one it cannot write again.
    (drop,) = a._drop(a.view(group_id), roster, "cannot write the message again: test")
    assert isinstance(drop, Commit)
    sim.commit(a, drop)
    (abandoned,) = sim.actions_of(a, Abandoned)
    assert abandoned.origin == roster.message_hash
    (item,) = a.outbox.chain(group_id)
    assert item.origin == later
    assert roster.message_hash not in item.packet.message.parents
    sim.down.clear()
    sim.now += CONFIG.retry_max
    sim.handle(a, Tick(sim.now))
    assert _shown(sim, b, group_id) == [b"after the change"]


def test_an_author_long_after_its_last_message_names_it_even_when_it_is_no_head() -> None:
    """§6 "Order and time" wants the author's latest held message as a parent once it is more
    than 5 minutes older; a reply makes it no head, so heads alone would be refused."""
    sim, group_id, a, b, _c = three_ratifiers()
    first = send(sim, b, group_id, b"from b")
    reply = send(sim, a, group_id, b"reply")
    assert b.view(group_id).heads.heads() == (reply,)
    sim.now += 10 * 60 * 1000
    later = send(sim, b, group_id, b"later from b")
    assert b.view(group_id).has(later)
    assert first in _held(sim, b)[later].message.parents


def test_the_outbox_chain_follows_ranks_whatever_the_order_of_loading() -> None:
    sim, group_id, a, b, c = three_ratifiers()
    sim.down |= {b.peer_id, c.peer_id}
    _send_lines(sim, a, group_id, _lines(1, 3))
    items = a.outbox.chain(group_id)
    outbox = Outbox(1_000, 8_000, 16)
    for item in reversed(items):  # the store's order need not be ours
        outbox.add(group_id, item.packet, origin=item.origin, now=sim.now, rank=item.rank)
    chain = outbox.chain(group_id)
    assert [i.message_hash for i in chain] == [i.message_hash for i in items]
    assert outbox.tail(group_id) is chain[-1]
    assert outbox.predecessor(chain[1]) is chain[0]
    assert [outbox.blocked(i) for i in chain] == [False, True, True]
    # Started in rank order, each unblocks the next: the chain is asked for in one go (§21).
    started = outbox.start_due(sim.now)
    assert [i.message_hash for i in started] == [i.message_hash for i in chain]
    assert not any(outbox.blocked(i) for i in chain)
    limited = Outbox(1_000, 8_000, 2)
    for item in items:
        limited.add(group_id, item.packet, origin=item.origin, now=sim.now, rank=item.rank)
    assert [i.message_hash for i in limited.start_due(sim.now)] == [
        i.message_hash for i in chain[:2]
    ]
    assert outbox.next_rank(group_id, 0) == chain[-1].rank + 1
    assert outbox.next_rank(b"\x07" * 32, 5) == 5
