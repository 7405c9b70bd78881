"""Gaps below the heads and roster messages taken from a chain without their parents
(specs/chat.md §8 "Gaps", "Learning the roster without the parents")."""

from __future__ import annotations

from chat.core.enginesim import Sim
from p2pchat.chat.core.engine import ChatEngine
from p2pchat.chat.core.events import (
    Commit,
    FetchMissing,
    HeadsAnswered,
    NeedParents,
    SyncHistory,
)
from p2pchat.chat.core.packet import Packet
from p2pchat.chat.core.roster import Role


def certified_text(sim: Sim, author: ChatEngine, group_id: bytes, text: bytes) -> Packet:
    packet, queued = author.author(
        group_id, text, message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    sim.commit(author, queued)
    assert author.view(group_id).has(packet.message_hash)  # every ratifier is up
    for commit in sim.commits[author.peer_id]:
        for op in commit.txn.operations:
            held = getattr(op, "packet", None)
            if (
                isinstance(held, Packet)
                and held.message_hash == packet.message_hash
                and held.certificate is not None
            ):
                return held
    raise AssertionError("no certified packet committed")


def test_a_joiner_without_the_history_below_its_chain_asks_for_it_though_no_head_is_missing() -> (
    None
):
    sim = Sim()
    a, b, c = sim.add(), sim.add(), sim.add()
    group_id = sim.create(a)
    sim.invite(a, group_id, b, Role.RATIFIER)
    text = certified_text(sim, a, group_id, b"before C joined")
    sim.invite(a, group_id, c, Role.USER)  # C holds the chain only: no paging here
    view = c.view(group_id)
    assert not view.has(text.message_hash)
    assert text.message_hash in view.heads.gaps(64)
    heads = a.view(group_id).heads.heads()
    assert all(view.has(h) for h in heads)  # heads alone show C nothing missing
    on_connect = c.handle(HeadsAnswered(group_id, a.peer_id, heads, catch_up=True))
    assert on_connect == [SyncHistory(group_id, a.peer_id)]
    periodic = c.handle(HeadsAnswered(group_id, a.peer_id, heads, catch_up=False))
    assert len(periodic) == 1
    assert isinstance(periodic[0], FetchMissing)
    assert text.message_hash in periodic[0].hashes
    # Once the history arrives, nothing more is asked.
    decision = sim.deliver(c.peer_id, group_id, text)
    assert isinstance(decision, Commit)
    assert view.heads.gaps(64) == ()
    assert c.handle(HeadsAnswered(group_id, a.peer_id, heads, catch_up=True)) == []


def test_a_node_cut_off_then_removed_takes_the_roster_message_without_its_parents() -> None:
    sim = Sim()
    a, b, u = sim.add(), sim.add(), sim.add()
    group_id = sim.create(a)
    sim.invite(a, group_id, b, Role.RATIFIER)
    sim.invite(a, group_id, u, Role.USER)
    sim.down.add(u.peer_id)
    text = certified_text(sim, a, group_id, b"U does not get this")
    after = certified_text(sim, a, group_id, b"nor this")
    members = [m for m in a.view(group_id).state.current_roster.members if m.peer != u.peer_id]
    _, change = a.change_roster(group_id, members, added=None, now=sim.now)
    sim.commit(a, change)
    removal = a.view(group_id).state.roster_packets[-1]
    assert after.message_hash in removal.message.parents
    sim.down.clear()
    assert isinstance(u.receive(group_id, removal, sim.now), NeedParents)
    # A text message is never taken without its parents, from a chain or not.
    assert isinstance(u.receive(group_id, after, sim.now, chain=True), NeedParents)
    decision = u.receive(group_id, removal, sim.now, chain=True)
    assert isinstance(decision, Commit)
    sim.commit(u, decision)
    view = u.view(group_id)
    assert not view.is_current_member(u.peer_id)  # it learnt of its removal
    assert view.has(removal.message_hash)
    assert not view.has(text.message_hash)
    assert not view.has(after.message_hash)
