"""A ratifier's batch decision (``mratb``, specs/chat.md §21) and batch votes in certificates."""

from __future__ import annotations

import attrs
import pytest

from chat.core.enginesim import Sim
from p2pchat.chat.core import merkle
from p2pchat.chat.core.batch import BatchDecision
from p2pchat.chat.core.certificate import (
    VERIFIED,
    BatchProof,
    Certificate,
    Vote,
    batch_signing_bytes,
    make_batch_votes,
    make_vote,
    verify_vote,
)
from p2pchat.chat.core.engine import ChatEngine
from p2pchat.chat.core.engine_records import _BatchVoted
from p2pchat.chat.core.events import AskVote, Commit, Committed, VoteAnswered
from p2pchat.chat.core.packet import Packet
from p2pchat.chat.core.quorum import verify_certificate
from p2pchat.chat.core.roster import Role
from p2pchat.chat.core.txn import CommitResult, PutPacket, PutVote
from p2pchat.identity import KeyPair


def group() -> tuple[Sim, bytes, ChatEngine, ChatEngine, ChatEngine]:
    """A owns a group with ratifiers A, B, C (quorum 2); B and C are down, so A's messages
    stay queued and form a chain."""
    sim = Sim()
    a, b, c = sim.add(), sim.add(), sim.add()
    group_id = sim.create(a)
    sim.invite(a, group_id, b, Role.RATIFIER)
    sim.invite(a, group_id, c, Role.RATIFIER)
    sim.down = {b.peer_id, c.peer_id}
    sim.log.clear()
    return sim, group_id, a, b, c


def chain(sim: Sim, a: ChatEngine, group_id: bytes, n: int) -> list[Packet]:
    """``n`` messages of A, each naming the one before (queued, not ratified)."""
    packets = []
    for i in range(n):
        packet, commit = a.author(
            group_id,
            b"m%d" % i,
            message_type="text",
            mime="text/plain",
            ref_hash=None,
            now=sim.now,
        )
        sim.commit(a, commit)
        packets.append(packet)
    return packets


def decide(
    b: ChatEngine, sim: Sim, group_id: bytes, packets: list[Packet], querier: ChatEngine
) -> BatchDecision:
    decision = b.vote_batch(group_id, packets, querier.peer_id, sim.now)
    assert isinstance(decision, BatchDecision)
    return decision


def test_a_chain_is_decided_in_one_transaction_with_one_signature() -> None:
    sim, group_id, a, b, _c = group()
    packets = chain(sim, a, group_id, 3)
    assert packets[0].message_hash in packets[1].message.parents  # a chain indeed
    decision = decide(b, sim, group_id, packets, a)
    assert decision.commit is not None
    ops = decision.commit.txn.operations
    assert [type(op) for op in ops] == [PutPacket, PutVote] * 3
    votes = decision.outcomes
    assert all(isinstance(v, Vote) for v in votes)
    assert len({v.sig for v in votes if isinstance(v, Vote)}) == 1  # one signature
    for i, (vote, packet) in enumerate(zip(votes, packets, strict=True)):
        assert isinstance(vote, Vote)
        assert vote.batch is not None
        assert (vote.batch.size, vote.batch.index) == (3, i)
        assert verify_vote(vote, group_id, packet.message.epoch, packet.message_hash)
    root = merkle.root([p.message_hash for p in packets])
    key = b.identity.peer_id.extract_public_key()
    assert key is not None
    epoch = packets[0].message.epoch
    first = votes[0]
    assert isinstance(first, Vote)
    assert key.verify(first.sig, batch_signing_bytes(group_id, epoch, 3, root))
    # Memory follows the commit: B counts the others' messages pending only once committed.
    assert not b.view(group_id).pending
    sim.commit(b, decision.commit)
    assert set(b.view(group_id).pending) == {p.message_hash for p in packets}


def test_a_batch_of_one_is_the_plain_vote_of_mrat() -> None:
    sim, group_id, a, b, _c = group()
    (packet,) = chain(sim, a, group_id, 1)
    (vote,) = decide(b, sim, group_id, [packet], a).outcomes
    single = b.vote_request(group_id, packet, a.peer_id, sim.now)
    assert isinstance(single, Commit)
    put = single.txn.operations[1]
    assert isinstance(put, PutVote)
    expected = make_vote(b.identity, group_id, packet.message.epoch, packet.message_hash)
    assert vote == expected
    assert isinstance(vote, Vote)
    assert vote.batch is None
    from p2pchat.chat.core.view import decode_vote

    assert decode_vote(put.vote) == expected


def test_a_bad_packet_in_the_middle_is_refused_and_the_rest_signed_as_a_batch_of_two() -> None:
    sim, group_id, a, b, _c = group()
    first, second = chain(sim, a, group_id, 2)
    other, _ = a.author(
        group_id, b"x", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    bad = attrs.evolve(other, signature=bytes(64))
    decision = decide(b, sim, group_id, [first, bad, second], a)
    v1, reason, v2 = decision.outcomes
    assert reason == "bad signature"
    assert isinstance(v1, Vote)
    assert isinstance(v2, Vote)
    assert v1.batch == BatchProof(2, 0, v1.batch.proof if v1.batch else ())
    assert v2.batch is not None
    assert (v2.batch.size, v2.batch.index) == (2, 1)
    epoch = first.message.epoch
    assert verify_vote(v1, group_id, epoch, first.message_hash)
    assert verify_vote(v2, group_id, epoch, second.message_hash)
    assert decision.commit is not None
    held = [
        op.packet.message_hash for op in decision.commit.txn.operations if isinstance(op, PutPacket)
    ]
    assert held == [first.message_hash, second.message_hash]


def test_a_later_packet_whose_parent_was_refused_misses_its_parent() -> None:
    sim, group_id, a, b, _c = group()
    first, second = chain(sim, a, group_id, 2)
    decision = decide(b, sim, group_id, [attrs.evolve(first, signature=bytes(64)), second], a)
    assert decision.outcomes == ("bad signature", "missing parents")
    assert decision.commit is None
    assert decision.missing == (first.message_hash,)


def test_a_later_batch_may_name_a_pending_message_of_the_same_author() -> None:
    sim, group_id, a, b, _c = group()
    first, second = chain(sim, a, group_id, 2)
    one = decide(b, sim, group_id, [first], a)
    assert one.commit is not None
    sim.commit(b, one.commit)
    (vote,) = decide(b, sim, group_id, [second], a).outcomes
    assert isinstance(vote, Vote)


def test_a_forged_proof_or_a_changed_size_does_not_verify() -> None:
    sim, group_id, a, b, _c = group()
    packets = chain(sim, a, group_id, 3)
    votes = decide(b, sim, group_id, packets, a).outcomes
    vote = votes[0]
    assert isinstance(vote, Vote)
    assert vote.batch is not None
    h = packets[0].message_hash
    e = packets[0].message.epoch
    assert verify_vote(vote, group_id, e, h)
    forged = attrs.evolve(
        vote, batch=attrs.evolve(vote.batch, proof=(bytes(32), *vote.batch.proof[1:]))
    )
    assert not verify_vote(forged, group_id, e, h)
    # Size 4 takes the same path for index 0 (2 hashes), and a different root signature.
    resized = attrs.evolve(vote, batch=attrs.evolve(vote.batch, size=4))
    assert not verify_vote(resized, group_id, e, h)
    assert not verify_vote(vote, group_id, e, packets[1].message_hash)  # another message
    assert not verify_vote(vote, group_id, e + 1, h)  # another epoch


def test_deciding_the_same_batch_again_gives_the_same_votes() -> None:
    sim, group_id, a, b, _c = group()
    packets = chain(sim, a, group_id, 4)
    first = decide(b, sim, group_id, packets, a).outcomes
    again = decide(b, sim, group_id, packets, a).outcomes
    assert first == again


def test_roster_messages_are_never_batched() -> None:
    sim, group_id, a, b, _c = group()
    (packet,) = chain(sim, a, group_id, 1)
    d = sim.add()
    view = a.view(group_id)
    from p2pchat.chat.core.roster import Member

    entry = Member(d.peer_id, Role.USER, d.hpke.kem, d.hpke.public_bytes())
    roster, _ = a.change_roster(
        group_id, [*view.state.current_roster.members, entry], added=d.peer_id, now=sim.now
    )
    decision = decide(b, sim, group_id, [packet, roster], a)
    assert decision.outcomes[1] == "malformed"


def test_a_certificate_of_batch_votes_costs_one_check_per_ratifier_per_batch() -> None:
    group_id = bytes(32)
    ratifiers = [KeyPair.generate() for _ in range(3)]
    hashes = [bytes([i]) * 32 for i in range(64)]
    votes = [make_batch_votes(r, group_id, 5, hashes) for r in ratifiers]
    from p2pchat.chat.core.roster import Member, Roster

    members = tuple(
        sorted(
            (Member(r.peer_id, Role.RATIFIER, "X25519", bytes(32)) for r in ratifiers),
            key=lambda m: m.peer.to_bytes(),
        )
    )
    roster = Roster(epoch=5, members=members, quorum=2, history="all")
    VERIFIED.clear()
    before = VERIFIED.checks
    for i, h in enumerate(hashes):
        certificate = Certificate(
            5, tuple(sorted((v[i] for v in votes), key=lambda v: v.ratifier.to_bytes()))
        )
        assert verify_certificate(certificate, roster, group_id, h)
    assert VERIFIED.checks - before == 2  # the quorum, once for the whole batch


def test_batch_fields_are_bounded() -> None:
    from p2pchat.chat.core.fields import PacketError

    ok = {"size": 2, "index": 1, "proof": [bytes(32)]}
    assert BatchProof.from_cbor(ok) == BatchProof(2, 1, (bytes(32),))
    for bad in (
        {**ok, "size": 1, "index": 0},  # a batch of one is a plain vote
        {**ok, "size": 65},
        {**ok, "index": 2},
        {**ok, "proof": [bytes(32)] * 7},
        {**ok, "proof": [bytes(31)]},
        {**ok, "extra": 0},
    ):
        with pytest.raises(PacketError):
            BatchProof.from_cbor(bad)
    with pytest.raises(PacketError):
        Vote.from_cbor(
            {
                "ratifier": KeyPair.generate().peer_id.to_bytes(),
                "sig": bytes(64),
                "batch": ok,
                "close": {"heads": [], "pending": []},
            }
        )


def test_a_batch_effect_counts_every_vote() -> None:
    sim, group_id, a, b, _c = group()
    packets = chain(sim, a, group_id, 2)
    decision = decide(b, sim, group_id, packets, a)
    assert decision.commit is not None
    assert isinstance(decision.commit.effect, _BatchVoted)
    assert len(decision.commit.effect.votes) == 2


def test_a_chain_whose_votes_come_child_first_is_certified_in_order_together() -> None:
    sim, group_id, a, b, c = group()
    packets = []
    for text in (b"one", b"two"):  # queued; the vote requests are left unanswered
        packet, commit = a.author(
            group_id, text, message_type="text", mime="text/plain", ref_hash=None, now=sim.now
        )
        actions = a.handle(Committed(commit, CommitResult(), sim.now))
        asked = {act.ratifier for act in actions if isinstance(act, AskVote)}
        assert asked == {a.peer_id, b.peer_id, c.peer_id}  # both go at once: a chain
        packets.append(packet)
    first, second = packets
    assert first.message_hash in second.message.parents
    answers = {}
    for ratifier in (b, c):
        decision = decide(ratifier, sim, group_id, [first, second], a)
        assert decision.commit is not None
        sim.commit(ratifier, decision.commit)
        answers[ratifier.peer_id] = decision.outcomes
    # The votes for the second message arrive first: its quorum waits for the first's.
    for ratifier in (b, c):
        vote = answers[ratifier.peer_id][1]
        assert isinstance(vote, Vote)
        event = VoteAnswered(group_id, second.message_hash, ratifier.peer_id, vote, None, sim.now)
        assert a.handle(event) == []
    actions = []
    for ratifier in (b, c):
        vote = answers[ratifier.peer_id][0]
        assert isinstance(vote, Vote)
        event = VoteAnswered(group_id, first.message_hash, ratifier.peer_id, vote, None, sim.now)
        actions += a.handle(event)
    commits = [act for act in actions if isinstance(act, Commit)]
    certified = [
        op.packet.message_hash
        for commit in commits
        for op in commit.txn.operations
        if isinstance(op, PutPacket)
    ]
    assert certified == [first.message_hash, second.message_hash]  # in order, at once
    for commit in commits:
        sim.commit(a, commit)
    assert a.view(group_id).has(second.message_hash)
    assert not a.outbox


def test_messages_written_before_the_last_one_is_committed_chain_and_queue_in_order() -> None:
    sim, group_id, a, _b, _c = group()
    writes = [
        a.author(
            group_id,
            text,
            message_type="text",
            mime="text/plain",
            ref_hash=None,
            now=sim.now,
            chain=True,
        )
        for text in (b"one", b"two", b"three")
    ]
    (one, _), (two, _), (three, _) = writes
    assert one.message_hash in two.message.parents  # named before its commit
    assert two.message_hash in three.message.parents
    puts = [c.txn.operations[0] for _, c in writes]
    ranks = [op.outbox_rank for op in puts if isinstance(op, PutPacket)]
    assert len(ranks) == 3
    assert ranks == sorted({r for r in ranks if r is not None})  # distinct and in order
    for _, commit in writes:  # committed together, applied in the order written
        sim.commit(a, commit)
    assert [i.message_hash for i in a.outbox.chain(group_id)] == [
        p.message_hash for p in (one, two, three)
    ]
    # Not committed: the next message follows the outbox's last again.
    lost, _ = a.author(
        group_id,
        b"lost",
        message_type="text",
        mime="text/plain",
        ref_hash=None,
        now=sim.now,
        chain=True,
    )
    a.forget_written(group_id)
    after, _ = a.author(
        group_id,
        b"after",
        message_type="text",
        mime="text/plain",
        ref_hash=None,
        now=sim.now,
        chain=True,
    )
    assert three.message_hash in after.message.parents
    assert lost.message_hash not in after.message.parents
