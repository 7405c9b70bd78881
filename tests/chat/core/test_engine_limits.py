"""The engine's hardening decisions (specs/chat.md §6 "Quotas", "Order and time", §8
"Membership that ends"): each test fails on an engine without the rule."""

from __future__ import annotations

from typing import Any

import attrs

from chat.core.enginesim import CONFIG, Sim
from p2pchat.chat.core.engine import ChatEngine
from p2pchat.chat.core.events import (
    Commit,
    CompareHeads,
    Connected,
    HeadsAnswered,
    Refused,
    SyncHistory,
    Tick,
)
from p2pchat.chat.core.packet import Certificate, Packet, make_vote, sign_message
from p2pchat.chat.core.roster import Role
from p2pchat.chat.core.txn import DropPending, OutboxDone
from p2pchat.chat.core.validate import CLOCK_SKEW_MS

SMALL = attrs.evolve(CONFIG, pending_max_count=3, pending_max_bytes=1 << 30, pending_ttl=60_000)


def group(
    config: attrs.AttrsInstance = CONFIG,
) -> tuple[Sim, bytes, ChatEngine, ChatEngine, ChatEngine]:
    """A owns a group; B is a ratifier (quorum 2, so nothing is certified while A is down),
    U a user."""
    sim = Sim()
    assert isinstance(config, type(CONFIG))
    a, b, u = sim.add(config=config), sim.add(config=config), sim.add(config=config)
    group_id = sim.create(a, quorum=None)
    sim.invite(a, group_id, b, Role.RATIFIER)
    sim.invite(a, group_id, u, Role.USER)
    sim.log.clear()
    return sim, group_id, a, b, u


def written(sim: Sim, engine: ChatEngine, group_id: bytes, text: bytes = b"x") -> Packet:
    packet, _ = engine.author(
        group_id, text, message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    return packet


def resigned(engine: ChatEngine, packet: Packet, **changes: Any) -> Packet:
    message = attrs.evolve(packet.message, **changes)
    return sign_message(engine.identity, message, packet.aes_key, packet.iv)


def certified(packet: Packet, *ratifiers: ChatEngine) -> Packet:
    votes = sorted(
        (
            make_vote(
                r.identity, packet.message.group_id, packet.message.epoch, packet.message_hash
            )
            for r in ratifiers
        ),
        key=lambda v: v.ratifier.to_bytes(),
    )
    return packet.with_certificate(Certificate(packet.message.epoch, tuple(votes)))


# -- quotas and expiry -----------------------------------------------------------------------------


def test_a_ratifier_refuses_an_author_beyond_its_pending_quota() -> None:
    sim, group_id, _a, b, u = group(SMALL)
    for i in range(SMALL.pending_max_count):
        decision = b.vote_request(
            group_id, written(sim, u, group_id, b"%d" % i), u.peer_id, sim.now
        )
        assert isinstance(decision, Commit)
        sim.commit(b, decision)
    over = b.vote_request(group_id, written(sim, u, group_id, b"one more"), u.peer_id, sim.now)
    assert over == Refused("over quota")
    # Another author has its own quota.
    decision = b.vote_request(group_id, written(sim, b, group_id), b.peer_id, sim.now)
    assert isinstance(decision, Commit)


def test_the_byte_quota_counts_encoded_packets() -> None:
    sim, group_id, _a, b, u = group(attrs.evolve(SMALL, pending_max_bytes=1000))
    first = written(sim, u, group_id, b"x" * 100)
    assert len(first.encode()) <= 1000 < 2 * len(first.encode())
    decision = b.vote_request(group_id, first, u.peer_id, sim.now)
    assert isinstance(decision, Commit)
    sim.commit(b, decision)
    refused = b.vote_request(group_id, written(sim, u, group_id, b"y" * 100), u.peer_id, sim.now)
    assert refused == Refused("over quota")


def test_pending_votes_expire_in_one_transaction_but_never_our_outbox() -> None:
    sim, group_id, a, b, u = group(SMALL)
    sim.down.add(a.peer_id)  # no quorum: everything stays pending
    theirs = [written(sim, u, group_id, b"%d" % i) for i in range(2)]
    for packet in theirs:
        decision = b.vote_request(group_id, packet, u.peer_id, sim.now)
        assert isinstance(decision, Commit)
        sim.commit(b, decision)
    ours, queue = b.author(
        group_id, b"mine", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    sim.commit(b, queue)  # B votes for its own message too: pending, in its outbox
    sim.commits[b.peer_id].clear()
    sim.now += SMALL.pending_ttl + SMALL.sync_interval
    sim.handle(b, Tick(sim.now))
    sim.now += SMALL.sync_interval
    sim.handle(b, Tick(sim.now))
    drops = [
        op for c in sim.commits[b.peer_id] for op in c.txn.operations if isinstance(op, DropPending)
    ]
    assert len(drops) == 1  # one transaction; memory followed it, so no second one
    assert set(drops[0].message_hashes) == {p.message_hash for p in theirs}
    assert ours.message_hash not in drops[0].message_hashes
    assert ours.message_hash in b.outbox
    # Once expired, the author's quota is free again.
    again = b.vote_request(group_id, written(sim, u, group_id, b"later"), u.peer_id, sim.now)
    assert isinstance(again, Commit)


# -- order and time --------------------------------------------------------------------------------


def test_a_parentless_back_dated_message_is_refused_at_ratification_and_delivery() -> None:
    sim, group_id, a, b, u = group()
    packet = written(sim, u, group_id)
    orphan = resigned(u, packet, parents=(), time_stamp=sim.now)
    assert b.vote_request(group_id, orphan, u.peer_id, sim.now) == Refused("bad parents")
    back_dated = resigned(u, packet, parents=(), time_stamp=978_307_200_000)  # 2001
    assert b.receive(group_id, certified(back_dated, a, b), sim.now) == Refused("bad parents")
    assert not b.view(group_id).has(back_dated.message_hash)


def test_a_message_stamped_before_its_parents_is_refused() -> None:
    sim, group_id, a, b, u = group()
    packet = written(sim, u, group_id)
    early = resigned(u, packet, time_stamp=sim.now - CLOCK_SKEW_MS - 1)
    assert b.vote_request(group_id, early, u.peer_id, sim.now - CLOCK_SKEW_MS) == Refused(
        "bad timestamp"
    )
    assert b.receive(group_id, certified(early, a, b), sim.now) == Refused("bad timestamp")
    within = resigned(u, packet, time_stamp=sim.now - CLOCK_SKEW_MS)
    assert isinstance(b.receive(group_id, certified(within, a, b), sim.now), Commit)


def test_an_author_cannot_branch_off_behind_its_own_latest_message() -> None:
    sim, group_id, _a, b, u = group()
    old_heads = u.view(group_id).heads.heads()
    first = written(sim, u, group_id, b"first")
    sim.commit(
        u,
        u.author(
            group_id, b"first", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
        )[1],
    )
    assert b.view(group_id).latest  # B holds U's latest message
    sim.now += CLOCK_SKEW_MS + 1
    branch = resigned(u, written(sim, u, group_id, b"branch"), parents=tuple(old_heads))
    assert b.vote_request(group_id, branch, u.peer_id, sim.now) == Refused("bad parents")
    # Written on the current heads (which hold U's latest), it passes.
    follow = written(sim, u, group_id, b"follows")
    assert isinstance(b.vote_request(group_id, follow, u.peer_id, sim.now), Commit)
    del first


# -- membership that ends --------------------------------------------------------------------------


def test_a_removed_node_stops_syncing_and_sends_nothing_more() -> None:
    sim, group_id, a, b, u = group()
    queued, commit = u.author(
        group_id, b"late", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    sim.down |= {a.peer_id, b.peer_id}
    sim.commit(u, commit)  # queued, no quorum
    sim.down.clear()
    members = [m for m in a.view(group_id).state.current_roster.members if m.peer != u.peer_id]
    _, change = a.change_roster(group_id, members, added=None, now=sim.now)
    sim.commit(a, change)
    assert not u.view(group_id).is_current_member(u.peer_id)  # U learnt of its removal
    sim.log.clear()
    sim.handle(u, Connected(b.peer_id, sim.now))
    sim.now += 2 * CONFIG.sync_interval
    sim.handle(u, Tick(sim.now))
    sim.now += CONFIG.sync_interval
    sim.handle(u, Tick(sim.now))
    assert sim.actions_of(u, CompareHeads) == []
    held = u.handle(HeadsAnswered(group_id, b.peer_id, (bytes(32),), catch_up=True))
    assert not any(isinstance(x, SyncHistory) for x in held)
    # Its queued message left the outbox (its row stays) and nobody was asked to vote.
    assert queued.message_hash not in u.outbox
    dropped = [
        op for c in sim.commits[u.peer_id] for op in c.txn.operations if isinstance(op, OutboxDone)
    ]
    assert [op.message_hash for op in dropped] == [queued.message_hash]
    assert u.view(group_id).has(a.view(group_id).state.roster_packets[-1].message_hash)
    # The others still sync with each other, not with U.
    sim.log.clear()
    sim.handle(b, Connected(a.peer_id, sim.now))
    sim.handle(b, Connected(u.peer_id, sim.now))
    assert {x.peer for x in sim.actions_of(b, CompareHeads)} == {a.peer_id}
