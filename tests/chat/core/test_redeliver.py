"""An author delivers again its messages a close names pending (specs/chat.md §14 "Delivery
after the close")."""

from __future__ import annotations

import attrs

from chat.core.enginesim import Sim
from p2pchat.chat.core.engine import ChatEngine
from p2pchat.chat.core.events import Action, Commit, Deliver, Redeliver
from p2pchat.chat.core.packet import Packet
from p2pchat.chat.core.roster import Role
from p2pchat.identity import PeerID


@attrs.define
class LossySim(Sim):
    """Loses every delivery of ``lose_from`` (it stops before its ``smsg`` go out)."""

    lose_from: PeerID | None = None
    lost: list[Deliver] = attrs.Factory(list)

    def run(self, engine: ChatEngine, actions: list[Action]) -> None:
        if engine.peer_id == self.lose_from:
            self.lost += [x for x in actions if isinstance(x, Deliver)]
            actions = [x for x in actions if not isinstance(x, Deliver)]
        super().run(engine, actions)


def committed_certified(sim: Sim, engine: ChatEngine, message_hash: bytes) -> Packet:
    for commit in sim.commits[engine.peer_id]:
        for op in commit.txn.operations:
            packet = getattr(op, "packet", None)
            if (
                isinstance(packet, Packet)
                and packet.message_hash == message_hash
                and packet.certificate is not None
            ):
                return packet
    raise AssertionError("not committed certified")


def test_an_author_whose_delivery_was_lost_delivers_again_what_the_close_names_pending() -> None:
    sim = LossySim()
    a, b, c, u = sim.add(), sim.add(), sim.add(), sim.add()
    group_id = sim.create(a)
    sim.invite(a, group_id, b, Role.RATIFIER)
    sim.invite(a, group_id, c, Role.RATIFIER)
    sim.invite(a, group_id, u, Role.USER)
    packet, queued = u.author(
        group_id, b"lost", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    sim.lose_from = u.peer_id
    sim.commit(u, queued)  # certified at U; its smsg lost (U stopped before sending them)
    sim.lose_from = None
    assert [x.packet.message_hash for x in sim.lost] == [packet.message_hash]
    assert u.view(group_id).has(packet.message_hash)
    assert not a.view(group_id).has(packet.message_hash)
    sim.log.clear()
    members = [m for m in a.view(group_id).state.current_roster.members if m.peer != u.peer_id]
    _, change = a.change_roster(group_id, members, added=None, now=sim.now)
    sim.commit(a, change)  # U removed; it takes the roster message (delivered to it)
    assert not u.view(group_id).is_current_member(u.peer_id)
    again = sim.actions_of(u, Redeliver)
    assert again == [
        Redeliver(
            group_id, (packet.message_hash,), tuple(sorted({a.peer_id, b.peer_id, c.peer_id}))
        )
    ]
    for other in (a, b, c):
        assert sim.actions_of(other, Redeliver) == []  # only the author delivers again
    # The members admit it though its epoch is closed: the closing votes name it.
    certified = committed_certified(sim, u, packet.message_hash)
    assert isinstance(sim.deliver(b.peer_id, group_id, certified), Commit)
    assert b.view(group_id).has(packet.message_hash)


def test_nothing_is_delivered_again_when_the_close_names_nothing_of_ours() -> None:
    sim = Sim()
    a, b, u = sim.add(), sim.add(), sim.add()
    group_id = sim.create(a)
    sim.invite(a, group_id, b, Role.RATIFIER)
    sim.invite(a, group_id, u, Role.USER)
    _, queued = u.author(
        group_id, b"delivered", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    sim.commit(u, queued)  # certified and delivered
    sim.log.clear()
    members = [m for m in a.view(group_id).state.current_roster.members if m.peer != u.peer_id]
    _, change = a.change_roster(group_id, members, added=None, now=sim.now)
    sim.commit(a, change)
    assert not u.view(group_id).is_current_member(u.peer_id)
    assert sim.actions_of(u, Redeliver) == []
