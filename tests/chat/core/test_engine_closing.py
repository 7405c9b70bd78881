"""Closing an epoch (specs/chat.md §14): a ratifier that voted the roster change stops voting in
that epoch and commits to what it voted for; members accept a message of a closed epoch only if
a closing vote committed to it. Each test fails on an engine without the rule."""

from __future__ import annotations

import pytest

from chat.core.enginesim import Sim
from chat.core.groups import text_packet
from p2pchat.chat.core.closing import EpochClose
from p2pchat.chat.core.commitment import MAX_CLOSE_HEADS, MAX_CLOSE_PENDING, CloseCommitment
from p2pchat.chat.core.engine import CLOSED_EPOCH, ChatEngine, ChatError
from p2pchat.chat.core.events import Commit, NeedParents, Refused
from p2pchat.chat.core.packet import Certificate, Packet, make_vote, sha256
from p2pchat.chat.core.quorum import verify_certificate
from p2pchat.chat.core.roster import Member, Role
from p2pchat.chat.core.txn import PutPacket
from p2pchat.chat.core.view import decode_vote


def group() -> tuple[Sim, bytes, ChatEngine, ChatEngine, ChatEngine, ChatEngine]:
    """A owns a group with ratifiers A, B, C (quorum 2 of 3) and a user U."""
    sim = Sim()
    a, b, c, u = sim.add(), sim.add(), sim.add(), sim.add()
    group_id = sim.create(a, quorum=None)
    sim.invite(a, group_id, b, Role.RATIFIER)
    sim.invite(a, group_id, c, Role.RATIFIER)
    sim.invite(a, group_id, u, Role.USER)
    assert a.view(group_id).state.current_roster.quorum == 2
    sim.log.clear()
    return sim, group_id, a, b, c, u


def send(sim: Sim, engine: ChatEngine, group_id: bytes, text: bytes) -> Packet:
    """``engine`` writes a message; the simulator ratifies and delivers it if it can."""
    packet, commit = engine.author(
        group_id, text, message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    sim.commit(engine, commit)
    return packet


def members_without(engine: ChatEngine, group_id: bytes, *gone: ChatEngine) -> list[Member]:
    roster = engine.view(group_id).state.current_roster
    return [m for m in roster.members if m.peer not in {g.peer_id for g in gone}]


def remove(sim: Sim, owner: ChatEngine, group_id: bytes, *gone: ChatEngine) -> Packet:
    """The owner's roster change removing ``gone``, ratified and delivered by the simulator."""
    packet, commit = owner.change_roster(
        group_id, members_without(owner, group_id, *gone), added=None, now=sim.now
    )
    sim.commit(owner, commit)
    held = owner.view(group_id).state.roster_packet(packet.message.epoch)
    assert held is not None
    assert held.message_hash == packet.message_hash
    return held


def late(
    author: ChatEngine,
    group_id: bytes,
    epoch: int,
    now: int,
    *voters: ChatEngine,
    on: ChatEngine | None = None,
) -> Packet:
    """A message of ``epoch`` (on top of what ``on``, by default ``author``, holds) written and
    certified by ``voters`` after that epoch closed."""
    view = (author if on is None else on).view(group_id)
    packet = text_packet(
        group_id,
        author.identity,
        epoch=epoch,
        time_stamp=now,
        parents=view.heads.heads(),
        data=b"late",
    )
    votes = sorted(
        (make_vote(v.identity, group_id, epoch, packet.message_hash) for v in voters),
        key=lambda v: v.ratifier.to_bytes(),
    )
    return packet.with_certificate(Certificate(epoch, tuple(votes)))


def closing_votes(roster: Packet) -> dict[bytes, CloseCommitment]:
    assert roster.certificate is not None
    out: dict[bytes, CloseCommitment] = {}
    for vote in roster.certificate.votes:
        assert vote.close is not None
        out[vote.ratifier.to_bytes()] = vote.close
    return out


# -- the voter stops ------------------------------------------------------------------------------


def test_a_ratifier_that_voted_the_close_votes_for_nothing_else_of_that_epoch() -> None:
    sim, group_id, a, b, _c, u = group()
    before, _ = u.author(
        group_id, b"before", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    assert isinstance(b.vote_request(group_id, before, u.peer_id, sim.now), Commit)
    roster, _ = a.change_roster(group_id, members_without(a, group_id, u), added=None, now=sim.now)
    decision = b.vote_request(group_id, roster, a.peer_id, sim.now)
    assert isinstance(decision, Commit)
    sim.commit(b, decision)
    after, _ = u.author(
        group_id, b"after", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    refused = b.vote_request(group_id, after, u.peer_id, sim.now)
    assert refused == Refused("stale epoch")
    # The roster message itself is still answered (the store returns the same vote).
    assert isinstance(b.vote_request(group_id, roster, a.peer_id, sim.now), Commit)


def test_the_close_is_decided_before_it_is_committed() -> None:
    """A vote decided after the closing vote, while neither is committed, is refused: it could
    not be in the commitment."""
    sim, group_id, a, b, _c, u = group()
    roster, _ = a.change_roster(group_id, members_without(a, group_id, u), added=None, now=sim.now)
    assert isinstance(b.vote_request(group_id, roster, a.peer_id, sim.now), Commit)
    after, _ = u.author(
        group_id, b"after", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    assert b.vote_request(group_id, after, u.peer_id, sim.now) == Refused("stale epoch")


def test_the_closing_vote_commits_to_heads_and_pending_votes() -> None:
    sim, group_id, a, b, c, u = group()
    held = send(sim, u, group_id, b"certified")
    assert b.view(group_id).has(held.message_hash)
    sim.down |= {a.peer_id, c.peer_id}
    pending = send(sim, u, group_id, b"voted by B only")  # no quorum: pending at B
    assert not b.view(group_id).has(pending.message_hash)
    sim.down.clear()
    roster, _ = a.change_roster(group_id, members_without(a, group_id, u), added=None, now=sim.now)
    decision = b.vote_request(group_id, roster, a.peer_id, sim.now)
    assert isinstance(decision, Commit)
    vote = decode_vote(sim.commit(b, decision).votes[roster.message_hash])
    assert vote.close is not None
    assert vote.close.heads == (held.message_hash,)  # B's one certified head
    assert vote.close.pending == (pending.message_hash,)


def test_a_roster_certificate_of_plain_votes_is_refused() -> None:
    sim, group_id, a, b, c, u = group()
    roster = remove(sim, a, group_id, u)
    plain = Certificate(
        roster.message.epoch,
        tuple(
            sorted(
                (
                    make_vote(r.identity, group_id, roster.message.epoch, roster.message_hash)
                    for r in (b, c)
                ),
                key=lambda v: v.ratifier.to_bytes(),
            )
        ),
    )
    state = a.view(group_id).state
    rost = state.roster(roster.message.epoch)
    assert not verify_certificate(plain, rost, group_id, roster.message_hash, closing=True)
    assert roster.certificate is not None
    assert verify_certificate(roster.certificate, rost, group_id, roster.message_hash, closing=True)


def test_the_close_survives_a_restart() -> None:
    """Reloaded from what a store holds (chain, messages, our vote on the pending roster
    message), a ratifier still refuses other messages of the epoch it closed."""
    sim, group_id, a, b, _c, u = group()
    roster, _ = a.change_roster(group_id, members_without(a, group_id, u), added=None, now=sim.now)
    decision = b.vote_request(group_id, roster, a.peer_id, sim.now)
    assert isinstance(decision, Commit)
    sim.commit(b, decision)
    view = b.view(group_id)
    reborn = ChatEngine(b.identity, b.hpke, b.config)
    ratified = [p for c in sim.commits[b.peer_id] for p in _ratified_packets(c)]
    reborn.load_group(
        view.signed.encode(), view.state.roster_packets, dict(view.epoch_keys), ratified
    )
    after, _ = u.author(
        group_id, b"after", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    assert isinstance(reborn.vote_request(group_id, after, u.peer_id, sim.now), Commit)
    reborn.load_vote(roster)  # what the node reads from its votes at start
    assert reborn.vote_request(group_id, after, u.peer_id, sim.now) == Refused("stale epoch")


def _ratified_packets(commit: Commit) -> list[Packet]:
    return [
        op.packet
        for op in commit.txn.operations
        if isinstance(op, PutPacket) and op.packet.certificate is not None
    ]


# -- members admit --------------------------------------------------------------------------------


def test_a_late_certificate_of_a_closed_epoch_is_refused_by_every_member() -> None:
    sim, group_id, a, b, c, u = group()
    send(sim, u, group_id, b"before the close")
    epoch = a.view(group_id).state.current_epoch
    remove(sim, a, group_id, b, c)
    forged = late(b, group_id, epoch, sim.now, b, c)
    assert a.view(group_id).state.current_epoch == epoch + 1
    for member in (a, u):
        assert member.view(group_id).state.current_epoch == epoch + 1
        assert member.receive(group_id, forged, sim.now) == Refused(CLOSED_EPOCH)
        assert not member.view(group_id).has(forged.message_hash)


def test_a_member_back_after_the_close_accepts_what_was_certified_before_it() -> None:
    """M misses a message certified by B and C while the owner was away, then the close; back,
    it learns the close first and the message after it: a closing vote's heads admit it."""
    sim, group_id, a, b, c, u = group()
    m = sim.add()
    sim.invite(a, group_id, m, Role.USER)
    sim.down |= {a.peer_id, m.peer_id}
    missed = send(sim, u, group_id, b"certified by B and C")
    assert b.view(group_id).has(missed.message_hash)
    assert not a.view(group_id).has(missed.message_hash)
    sim.down.discard(a.peer_id)
    roster = remove(sim, a, group_id, u)  # A's heads do not name ``missed``
    assert missed.message_hash not in roster.message.parents
    assert any(missed.message_hash in cc.heads for cc in closing_votes(roster).values())
    sim.down.clear()
    certified = b.view(group_id)
    assert certified.has(missed.message_hash)
    full = _held_packet(sim, b, missed.message_hash)
    applied = m.receive(group_id, roster, sim.now)
    assert isinstance(applied, Commit)
    sim.commit(m, applied)
    assert m.view(group_id).state.current_epoch == roster.message.epoch + 1
    decision = m.receive(group_id, full, sim.now)
    assert isinstance(decision, Commit)
    # A message of that epoch certified after the close, by the same two ratifiers, is not.
    forged = late(b, group_id, roster.message.epoch, sim.now, b, c)
    assert m.receive(group_id, forged, sim.now) == Refused(CLOSED_EPOCH)


def _held_packet(sim: Sim, engine: ChatEngine, message_hash: bytes) -> Packet:
    for commit in sim.commits[engine.peer_id]:
        for packet in _ratified_packets(commit):
            if packet.message_hash == message_hash:
                return packet
    raise AssertionError("not held")


def test_a_late_joiner_admits_closed_history_oldest_first_after_admit() -> None:
    """A member who joins after the close holds the chain first: every earlier message is of a
    closed epoch. Received oldest first they are refused until a batch admits them children
    first (a ``dht`` page)."""
    sim, group_id, a, _b, _c, u = group()
    history = [send(sim, u, group_id, b"%d" % i) for i in range(4)]
    packets = [_held_packet(sim, a, p.message_hash) for p in history]
    j = sim.add()
    sim.invite(a, group_id, j, Role.USER)  # closes the epoch of ``history``
    assert all(j.view(group_id).state.current_epoch > p.message.epoch for p in packets)
    first = j.receive(group_id, packets[0], sim.now)
    assert first == Refused(CLOSED_EPOCH)  # not a head: nothing proves it yet
    j.admit(group_id, packets)
    for packet in packets:
        decision = j.receive(group_id, packet, sim.now)
        assert isinstance(decision, Commit)
        sim.commit(j, decision)
    assert all(j.view(group_id).has(p.message_hash) for p in packets)


def test_an_admitted_head_admits_its_missing_parents_top_down() -> None:
    sim, group_id, a, _b, _c, u = group()
    history = [send(sim, u, group_id, b"%d" % i) for i in range(3)]
    packets = [_held_packet(sim, a, p.message_hash) for p in history]
    j = sim.add()
    sim.invite(a, group_id, j, Role.USER)
    top = j.receive(group_id, packets[-1], sim.now)
    assert isinstance(top, NeedParents)
    assert top.hashes == packets[-1].message.parents
    assert isinstance(j.receive(group_id, packets[-2], sim.now), NeedParents)
    decision = j.receive(group_id, packets[0], sim.now)
    assert isinstance(decision, Commit)


def test_a_message_a_closing_voter_held_pending_is_accepted_after_the_close() -> None:
    """B voted for a message it never saw certified; C's vote for it was cast before the close
    too (it was in flight). B's closing vote lists it as pending, so members accept it later."""
    sim, group_id, a, b, c, u = group()
    sim.down |= {a.peer_id, c.peer_id}
    pending = send(sim, u, group_id, b"voted by B, and by C in flight")
    sim.down.clear()
    b_vote = decode_vote(sim.votes[(b.peer_id, pending.message_hash)])
    c_vote = make_vote(c.identity, group_id, pending.message.epoch, pending.message_hash)
    votes = tuple(sorted((b_vote, c_vote), key=lambda v: v.ratifier.to_bytes()))
    certified = pending.with_certificate(Certificate(pending.message.epoch, votes))
    sim.down.add(c.peer_id)  # the closing certificate is A's and B's votes
    roster = remove(sim, a, group_id, u)
    assert closing_votes(roster)[b.peer_id.to_bytes()].pending == (pending.message_hash,)
    decision = a.receive(group_id, certified, sim.now)
    assert isinstance(decision, Commit)
    # Another message of that epoch certified by the same two, never committed: refused.
    other = late(b, group_id, pending.message.epoch, sim.now, b, c)
    assert a.receive(group_id, other, sim.now) == Refused(CLOSED_EPOCH)


def test_a_commitment_holds_only_the_epochs_votes_and_none_over_its_bounds() -> None:
    close = EpochClose()
    votes = [sha256(b"%d" % i) for i in range(MAX_CLOSE_PENDING + 1)]
    for message_hash in votes:
        close.note_vote(message_hash, 3, roster=False)
    close.note_vote(sha256(b"earlier epoch"), 2, roster=False)
    assert close.commitment(3, []) is None  # one pending vote too many: "over quota"
    close.forget(votes[0])  # it became certified (held): covered by the heads instead
    commitment = close.commitment(3, [votes[0]])
    assert commitment is not None
    assert commitment.pending == tuple(sorted(votes[1:]))
    assert commitment.heads == (votes[0],)
    heads = [sha256(b"head %d" % i) for i in range(MAX_CLOSE_HEADS + 1)]
    assert close.commitment(3, heads) is None
    assert close.closing_vote(3) is None
    close.note_vote(sha256(b"roster"), 3, roster=True)
    assert close.closing_vote(3) == sha256(b"roster")
    assert close.closing_vote(4) is None


def test_a_queued_roster_change_cannot_be_cancelled() -> None:
    """Ratifiers that voted for it have closed the epoch: withdrawing it would leave them
    closed for good."""
    sim, group_id, a, b, c, u = group()
    sim.down |= {b.peer_id, c.peer_id}  # no quorum: the change stays queued, A's vote cast
    roster, commit = a.change_roster(
        group_id, members_without(a, group_id, u), added=None, now=sim.now
    )
    sim.commit(a, commit)
    assert not a.view(group_id).has(roster.message_hash)
    with pytest.raises(ChatError, match="cannot be cancelled"):
        a.cancel(roster.message_hash)


def test_a_late_message_taken_before_the_close_was_known_is_set_aside_after_it() -> None:
    """M still holds the epoch as current when two ratifiers that already closed it certify a
    new message, and takes it. Once M learns of the close, that message is late: kept, but not
    shown, not named as a parent and not announced as a head; the messages before the close
    are not affected, and a restart finds the same."""
    sim, group_id, a, b, c, u = group()
    m = sim.add()
    sim.invite(a, group_id, m, Role.USER)
    before = send(sim, u, group_id, b"before the close")
    assert m.view(group_id).has(before.message_hash)
    sim.down.add(m.peer_id)
    roster = remove(sim, a, group_id, u)
    epoch = roster.message.epoch
    assert m.view(group_id).state.current_epoch == epoch  # M has not heard of the close
    forged = late(b, group_id, epoch, sim.now, b, c, on=m)
    taken = m.receive(group_id, forged, sim.now)
    assert isinstance(taken, Commit)  # it cannot tell yet
    sim.commit(m, taken)
    assert forged.message_hash in m.view(group_id).next_parents()
    sim.down.clear()
    applied = m.receive(group_id, roster, sim.now)
    assert isinstance(applied, Commit)
    sim.commit(m, applied)
    view = m.view(group_id)
    assert view.close.late == {forged.message_hash}
    assert forged.message_hash not in view.next_parents()
    assert before.message_hash not in view.close.late
    # Restarted from what its store holds, M sets the same message aside.
    reborn = ChatEngine(m.identity, m.hpke, m.config)
    ratified = [p for commit in sim.commits[m.peer_id] for p in _ratified_packets(commit)]
    reborn.load_group(
        view.signed.encode(), view.state.roster_packets, dict(view.epoch_keys), ratified
    )
    assert reborn.view(group_id).close.late == {forged.message_hash}
