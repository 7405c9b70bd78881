"""The group engine driven by events and a fake clock: no sockets, no sleeps."""

from __future__ import annotations

import pytest

from chat.core.enginesim import CONFIG, Sim
from p2pchat.chat.core.engine import (
    FETCHING,
    FETCHING_RETRY,
    OVER_QUOTA_SOON,
    ChatEngine,
    ChatError,
    NotAllowedError,
    Refusal,
)
from p2pchat.chat.core.events import (
    Abandoned,
    AlreadyHeld,
    AskVote,
    Commit,
    Committed,
    CompareHeads,
    Connected,
    Disconnected,
    FetchMissing,
    HeadsAnswered,
    LearnRoster,
    NeedParents,
    Publish,
    Ratified,
    Refused,
    SyncHistory,
    Tick,
    VoteAnswered,
)
from p2pchat.chat.core.fetch import MAX_FETCH, MAX_FETCH_DEPTH, ParentFetch
from p2pchat.chat.core.outbox import backoff
from p2pchat.chat.core.packet import Packet, Vote
from p2pchat.chat.core.roster import Role
from p2pchat.chat.core.txn import (
    CommitResult,
    OutboxDone,
    PutEpochKey,
    PutPacket,
    PutRoster,
    PutVote,
)
from p2pchat.chat.core.view import decode_vote


def three_ratifiers() -> tuple[Sim, bytes, ChatEngine, ChatEngine, ChatEngine]:
    """A owns a group with ratifiers A, B, C (quorum 2) and user D."""
    sim = Sim()
    a, b, c = sim.add(), sim.add(), sim.add()
    group_id = sim.create(a)
    sim.invite(a, group_id, b, Role.RATIFIER)
    sim.invite(a, group_id, c, Role.RATIFIER)
    sim.log.clear()
    return sim, group_id, a, b, c


def send(sim: Sim, engine: ChatEngine, group_id: bytes, text: bytes = b"hi") -> bytes:
    packet, commit = engine.author(
        group_id, text, message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    sim.commit(engine, commit)
    return packet.message_hash


def test_a_send_is_committed_with_its_outbox_entry_then_asks_every_ratifier() -> None:
    sim, group_id, a, b, c = three_ratifiers()
    packet, commit = a.author(
        group_id, b"x", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    (put,) = commit.txn.operations
    assert isinstance(put, PutPacket)
    assert put.outbox_at == sim.now
    assert packet.message_hash not in a.outbox  # memory follows the commit
    out = a.handle(Committed(commit, CommitResult(), sim.now))
    assert packet.message_hash in a.outbox
    assert [type(x) for x in out[:1]] == [Publish]
    asked = {x.ratifier for x in out if isinstance(x, AskVote)}
    assert asked == {a.peer_id, b.peer_id, c.peer_id}


def test_quorum_certifies_commits_publishes_and_delivers() -> None:
    sim, group_id, a, b, c = three_ratifiers()
    message_hash = send(sim, a, group_id)
    for engine in (a, b, c):
        assert engine.view(group_id).has(message_hash)
    ratified = sim.actions_of(a, Ratified)
    assert [r.message_hash for r in ratified] == [message_hash]
    assert ratified[0].origin == message_hash
    published = [p.ratified for p in sim.actions_of(a, Publish)]
    assert published == [False, True]
    assert message_hash not in a.outbox


def test_not_allowed_to_send_as_a_viewer() -> None:
    sim = Sim()
    a, v = sim.add(), sim.add()
    group_id = sim.create(a)
    sim.invite(a, group_id, v, Role.VIEWER)
    with pytest.raises(NotAllowedError):
        v.author(group_id, b"x", message_type="text", mime="text/plain", ref_hash=None, now=0)


def test_without_quorum_the_outbox_backs_off_exponentially_up_to_the_cap() -> None:
    sim, group_id, a, b, c = three_ratifiers()
    sim.down |= {b.peer_id, c.peer_id}
    message_hash = send(sim, a, group_id)
    assert not a.view(group_id).has(message_hash)
    expected = [backoff(n, CONFIG.retry_initial, CONFIG.retry_max) for n in range(1, 6)]
    assert expected == [1_000, 2_000, 4_000, 8_000, 8_000]
    for delay in expected:
        failed_at = sim.now
        assert a.next_wake() == failed_at + delay
        sim.now = failed_at + delay - 1
        sim.log.clear()
        sim.handle(a, Tick(sim.now))
        assert sim.actions_of(a, AskVote) == []  # not yet due
        sim.now += 1
        sim.handle(a, Tick(sim.now))  # due: asks again, fails again at once
        assert not a.view(group_id).has(message_hash)
    sim.down.clear()
    sim.now += 8_000
    sim.handle(a, Tick(sim.now))
    assert a.view(group_id).has(message_hash)


def test_a_ratifier_connecting_makes_a_waiting_message_due_at_once() -> None:
    sim, group_id, a, b, c = three_ratifiers()
    sim.down |= {b.peer_id, c.peer_id}
    message_hash = send(sim, a, group_id)
    assert a.next_wake() == sim.now + 1_000
    sim.down.clear()
    sim.now += 10  # long before the backoff ends
    sim.handle(a, Connected(b.peer_id, sim.now))
    assert a.view(group_id).has(message_hash)


def test_an_attempt_without_answers_times_out_and_backs_off() -> None:
    sim, group_id, a, b, c = three_ratifiers()
    packet, commit = a.author(
        group_id, b"x", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    # Commit, but keep the vote requests unanswered (the network swallows them).
    out = a.handle(Committed(commit, CommitResult(), sim.now))
    asks = [x for x in out if isinstance(x, AskVote)]
    assert {x.ratifier for x in asks} == {a.peer_id, b.peer_id, c.peer_id}
    deadline = sim.now + CONFIG.attempt_timeout
    assert a.next_wake() == deadline
    assert a.handle(Tick(deadline - 1)) == []
    assert a.handle(Tick(deadline)) == []  # over: backs off, asks nobody yet
    assert a.next_wake() == deadline + CONFIG.retry_initial
    retry = a.handle(Tick(deadline + CONFIG.retry_initial))
    assert {x.ratifier for x in retry if isinstance(x, AskVote)} == {
        a.peer_id,
        b.peer_id,
        c.peer_id,
    }
    # A late vote for the attempt that timed out is not counted twice or against the new one.
    assert a.handle(VoteAnswered(group_id, packet.message_hash, b.peer_id, None, None, 0)) == []


def test_a_stale_refusal_learns_the_roster_and_the_message_is_written_again() -> None:
    sim, group_id, a, b, c = three_ratifiers()
    d = sim.add()
    sim.invite(a, group_id, d, Role.USER)
    # d misses the next roster change (it is down while it is delivered).
    sim.down.add(d.peer_id)
    e = sim.add()
    sim.invite(a, group_id, e, Role.USER)
    sim.down.discard(d.peer_id)
    assert d.view(group_id).state.current_epoch == a.view(group_id).state.current_epoch - 1
    sim.log.clear()
    old = send(sim, d, group_id)
    learn = sim.actions_of(d, LearnRoster)
    assert len(learn) == 1
    assert learn[0].peer in {a.peer_id, b.peer_id, c.peer_id}
    assert not a.view(group_id).has(old)
    # The runtime fetches the chain (pkt) and receives the roster message it lacks.
    roster_packet = a.view(group_id).state.roster_packets[-1]
    sim.deliver(d.peer_id, group_id, roster_packet)
    assert d.view(group_id).state.current_epoch == a.view(group_id).state.current_epoch
    # The roster change made the message due at once; the next tick writes it again.
    sim.handle(d, Tick(sim.now))
    rewritten = sim.commits[d.peer_id][-1]
    ratified = sim.actions_of(d, Ratified)
    assert len(ratified) == 1
    assert ratified[0].origin == old
    assert ratified[0].message_hash != old
    assert a.view(group_id).has(ratified[0].message_hash)
    assert old not in d.outbox
    assert ratified[0].message_hash not in d.outbox
    assert rewritten  # the certified commit closed it


def test_rewriting_a_queued_message_replaces_it_in_one_transaction() -> None:
    sim, group_id, a, b, c = three_ratifiers()
    sim.down |= {b.peer_id, c.peer_id}
    old = send(sim, a, group_id)
    # The owner changes the roster while the message waits: once the change is ratified, the
    # message, written in the closed epoch, is written again in the new one at once.
    sim.down.clear()
    d = sim.add()
    sim.invite(a, group_id, d, Role.USER)
    epoch = a.view(group_id).state.current_epoch
    rewrites = [
        commit
        for commit in sim.commits[a.peer_id]
        if isinstance(commit.txn.operations[0], OutboxDone)
        and commit.txn.operations[0].message_hash == old
    ]
    assert len(rewrites) == 1
    (_done, put) = rewrites[0].txn.operations
    assert isinstance(put, PutPacket)
    assert put.packet.message.epoch == epoch
    assert put.outbox_at is not None
    ratified = sim.actions_of(a, Ratified)[-1]
    assert ratified.origin == old
    assert ratified.message_hash == put.packet.message_hash
    assert a.view(group_id).has(put.packet.message_hash)
    assert not a.view(group_id).has(old)


def test_memory_follows_the_commit_of_a_roster_change() -> None:
    sim, group_id, a, b, _c = three_ratifiers()
    d = sim.add()
    sim.invite(a, group_id, d, Role.USER)
    sim.down.add(b.peer_id)  # b misses the next change
    e = sim.add()
    sim.invite(a, group_id, e, Role.USER)
    sim.down.discard(b.peer_id)
    roster_packet = a.view(group_id).state.roster_packets[-1]
    epoch = b.view(group_id).state.current_epoch
    decision = b.receive(group_id, roster_packet, sim.now)
    assert isinstance(decision, Commit)
    kinds = [type(op) for op in decision.txn.operations]
    assert kinds == [PutPacket, PutRoster]  # a roster delta's keys are fetched after (§20)
    # Not committed (the node died): nothing changed in memory.
    assert b.view(group_id).state.current_epoch == epoch
    assert not b.view(group_id).has(roster_packet.message_hash)
    assert epoch + 1 not in b.view(group_id).epoch_keys
    sim.commit(b, decision)
    assert b.view(group_id).state.current_epoch == epoch + 1
    fetched = sim.commits[b.peer_id][-1]  # its key, fetched from a holder, committed
    assert [type(op) for op in fetched.txn.operations] == [PutEpochKey]
    assert epoch + 1 in b.view(group_id).epoch_keys
    assert isinstance(b.receive(group_id, roster_packet, sim.now), AlreadyHeld)


def test_a_join_is_one_transaction() -> None:
    sim, group_id, a, _b, _c = three_ratifiers()
    d = sim.add()
    view = a.view(group_id)
    entry = d.my_member_entry(Role.USER)
    _, commit = a.change_roster(
        group_id, [*view.state.current_roster.members, entry], added=d.peer_id, now=sim.now
    )
    sim.commit(a, commit)
    chain = {
        "genesis": view.signed.to_cbor(),
        "rosters": [p.to_cbor() for p in view.state.roster_packets],
    }
    join = d.join(group_id, chain, sim.now)
    assert join is not None
    assert d.find(group_id) is None  # not before the commit
    rosters = [op for op in join.txn.operations if isinstance(op, PutRoster)]
    keys = [op for op in join.txn.operations if isinstance(op, PutEpochKey)]
    assert len(rosters) == len(view.state.roster_packets)
    assert keys == []  # the keys of roster deltas are fetched once the join is held (§20)
    sim.commit(d, join)
    assert d.view(group_id).state.current_epoch == view.state.current_epoch
    # ...from a holder, in one commit: history "all", every epoch's key.
    fetched = sim.commits[d.peer_id][-1]
    assert {op.epoch for op in fetched.txn.operations if isinstance(op, PutEpochKey)} == set(
        range(view.state.current_epoch + 1)
    )
    assert set(d.view(group_id).epoch_keys) == set(range(view.state.current_epoch + 1))


def test_a_ratifier_votes_only_after_committing_packet_and_vote_together() -> None:
    sim, group_id, a, b, _c = three_ratifiers()
    packet, _ = a.author(
        group_id, b"x", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    decision = b.vote_request(group_id, packet, a.peer_id, sim.now)
    assert isinstance(decision, Commit)
    assert [type(op) for op in decision.txn.operations] == [PutPacket, PutVote]


def test_vote_refusals() -> None:
    sim, group_id, a, b, _c = three_ratifiers()
    d = sim.add()
    sim.invite(a, group_id, d, Role.USER)
    packet, _ = a.author(
        group_id, b"x", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    assert d.vote_request(group_id, packet, a.peer_id, sim.now) == Refused("not allowed")
    assert b.vote_request(b"\x00" * 32, packet, a.peer_id, sim.now) == Refused("unknown group")
    late = b.vote_request(group_id, packet, a.peer_id, sim.now + 3_600_000)
    assert late == Refused("bad timestamp")


def test_a_message_with_missing_parents_asks_for_them() -> None:
    sim, group_id, a, _b, _c = three_ratifiers()
    d = sim.add()
    sim.invite(a, group_id, d, Role.USER)
    sim.down.add(d.peer_id)
    first = send(sim, a, group_id, b"1")
    second = send(sim, a, group_id, b"2")
    sim.down.discard(d.peer_id)
    packet = a_packet(sim, a, group_id, second)
    decision = d.receive(group_id, packet, sim.now)
    assert decision == NeedParents((first,))
    # The fetch plan asks for the parent, takes it, and gives it back parents first.
    plan = ParentFetch.start(decision.hashes, d.view(group_id).has)
    assert plan.wanted() == [first]
    assert plan.add([a_packet(sim, a, group_id, first)])
    assert plan.wanted() == []
    for fetched in plan.in_order():
        sim.deliver(d.peer_id, group_id, fetched)
    assert isinstance(d.receive(group_id, packet, sim.now), Commit)


def test_a_fetch_is_bounded_in_hashes_per_query_and_rounds() -> None:
    held: set[bytes] = set()
    plan = ParentFetch.start([bytes([i]) * 32 for i in range(200)], held.__contains__)
    assert len(plan.wanted()) == MAX_FETCH
    # A peer that answers nothing ends the fetch.
    assert not plan.add([])
    assert plan.wanted() == []
    assert MAX_FETCH_DEPTH == 64


def a_packet(sim: Sim, engine: ChatEngine, group_id: bytes, message_hash: bytes) -> Packet:
    for commit in sim.commits[engine.peer_id]:
        for op in commit.txn.operations:
            if (
                isinstance(op, PutPacket)
                and op.packet.message_hash == message_hash
                and op.packet.certificate is not None
            ):
                return op.packet
    raise AssertionError("not committed")


def test_anti_entropy_compares_heads_on_connection_and_every_interval() -> None:
    sim, group_id, a, b, _c = three_ratifiers()
    stranger = sim.add()
    sim.handle(a, Connected(b.peer_id, sim.now))
    sim.handle(a, Connected(stranger.peer_id, sim.now))
    compares = sim.actions_of(a, CompareHeads)
    assert compares == [CompareHeads(group_id, b.peer_id, catch_up=True)]
    sim.log.clear()
    sim.handle(a, Tick(sim.now))  # arms the interval
    sim.handle(a, Tick(sim.now + CONFIG.sync_interval - 1))
    assert sim.actions_of(a, CompareHeads) == []
    sim.handle(a, Tick(sim.now + CONFIG.sync_interval))
    assert sim.actions_of(a, CompareHeads) == [CompareHeads(group_id, b.peer_id, catch_up=False)]
    sim.log.clear()
    sim.handle(a, Disconnected(b.peer_id))
    sim.handle(a, Tick(sim.now + 2 * CONFIG.sync_interval))
    assert sim.actions_of(a, CompareHeads) == []


def test_heads_decide_between_paging_history_fetching_and_nothing() -> None:
    _sim, group_id, a, b, _c = three_ratifiers()
    held = tuple(a.view(group_id).heads.heads())
    unknown = bytes(32)
    assert a.handle(HeadsAnswered(group_id, b.peer_id, held, catch_up=True)) == []
    assert a.handle(HeadsAnswered(group_id, b.peer_id, (unknown,), catch_up=True)) == [
        SyncHistory(group_id, b.peer_id)
    ]
    assert a.handle(HeadsAnswered(group_id, b.peer_id, (*held, unknown), catch_up=False)) == [
        FetchMissing(group_id, b.peer_id, (unknown,))
    ]


# -- the visible outbox: snapshot and cancel ------------------------------------------------------


def _queue_unanswered(sim: Sim, a: ChatEngine, group_id: bytes) -> Packet:
    """Author and commit a message whose vote requests nobody answers yet."""
    packet, commit = a.author(
        group_id, b"wait", message_type="text", mime="text/plain", ref_hash=None, now=sim.now
    )
    a.handle(Committed(commit, CommitResult(), sim.now))
    return packet


def _vote_of(
    sim: Sim, ratifier: ChatEngine, author: ChatEngine, group_id: bytes, packet: Packet
) -> Vote:
    decision = ratifier.vote_request(group_id, packet, author.peer_id, sim.now)
    assert isinstance(decision, Commit)
    return decode_vote(sim.commit(ratifier, decision).votes[packet.message_hash])


def test_the_outbox_snapshot_shows_votes_refusals_and_silence() -> None:
    sim, group_id, a, b, c = three_ratifiers()
    sim.now += 2_000
    packet = _queue_unanswered(sim, a, group_id)
    sim.now += 500
    own = _vote_of(sim, a, a, group_id, packet)
    assert (
        a.handle(VoteAnswered(group_id, packet.message_hash, a.peer_id, own, None, sim.now)) == []
    )
    a.handle(VoteAnswered(group_id, packet.message_hash, b.peer_id, None, "bad parents", sim.now))
    (view,) = a.outbox_snapshot(sim.now)
    assert view.group_id == group_id
    assert view.message_hash == view.origin == packet.message_hash
    assert view.age == 500
    assert view.failures == 0
    assert view.in_flight
    assert view.next_at is None
    assert view.voted == (a.peer_id,)
    assert view.refused == (Refusal(b.peer_id, "bad parents"),)
    assert view.waiting == (c.peer_id,)  # down: no answer
    assert a.outbox_snapshot(sim.now, group_id=b"\x00" * 32) == []
    # The attempt times out: one failure, due again after the backoff, no attempt to show.
    deadline = sim.now - 500 + CONFIG.attempt_timeout
    a.handle(Tick(deadline))
    (view,) = a.outbox_snapshot(deadline)
    assert (view.failures, view.in_flight) == (1, False)
    assert view.next_at == deadline + CONFIG.retry_initial
    assert (view.voted, view.refused, view.waiting) == ((), (), ())


@pytest.mark.parametrize(
    ("reason", "wait"),
    [("not allowed", CONFIG.retry_initial), (FETCHING, FETCHING_RETRY)],
)
def test_a_ratifier_still_fetching_the_artifact_is_asked_again_soon(reason: str, wait: int) -> None:
    """specs/artifacts.md §6: a ratifier refusing "fetching artifact" held the request while
    it fetched, so the author asks again after FETCHING_RETRY, not after the backoff."""
    assert CONFIG.retry_initial > FETCHING_RETRY
    sim, group_id, a, b, c = three_ratifiers()
    packet = _queue_unanswered(sim, a, group_id)
    own = _vote_of(sim, a, a, group_id, packet)
    a.handle(VoteAnswered(group_id, packet.message_hash, a.peer_id, own, None, sim.now))
    a.handle(VoteAnswered(group_id, packet.message_hash, b.peer_id, None, reason, sim.now))
    a.handle(VoteAnswered(group_id, packet.message_hash, c.peer_id, None, "not allowed", sim.now))
    (view,) = a.outbox_snapshot(sim.now)
    assert (view.failures, view.in_flight) == (1, False)
    assert view.next_at == sim.now + wait


def test_over_quota_is_asked_again_soon_a_few_times_then_backs_off() -> None:
    """specs/chat.md §6 "Quotas": a ratifier's quota also counts our certified messages still
    on their way to it, so the first OVER_QUOTA_SOON refusals are retried after
    FETCHING_RETRY; after them the usual backoff."""
    sim, group_id, a, b, c = three_ratifiers()
    packet = _queue_unanswered(sim, a, group_id)
    own = _vote_of(sim, a, a, group_id, packet)
    waits = []
    for failures in range(1, OVER_QUOTA_SOON + 3):
        if failures > 1:
            sim.now = a.outbox_snapshot(sim.now)[0].next_at or sim.now
            a.handle(Tick(sim.now))
        h = packet.message_hash
        a.handle(VoteAnswered(group_id, h, a.peer_id, own, None, sim.now))
        a.handle(VoteAnswered(group_id, h, b.peer_id, None, "over quota", sim.now))
        a.handle(VoteAnswered(group_id, h, c.peer_id, None, "over quota", sim.now))
        (view,) = a.outbox_snapshot(sim.now)
        assert (view.failures, view.in_flight) == (failures, False)
        assert view.next_at is not None
        waits.append(view.next_at - sim.now)
    later = [backoff(n, CONFIG.retry_initial, CONFIG.retry_max) for n in (4, 5)]
    assert waits == [FETCHING_RETRY] * OVER_QUOTA_SOON + later


def test_cancel_withdraws_a_waiting_message_after_its_commit() -> None:
    sim, group_id, a, b, c = three_ratifiers()
    sim.down |= {b.peer_id, c.peer_id}
    message_hash = send(sim, a, group_id)
    commit = a.cancel(message_hash)
    assert commit.txn.operations == (OutboxDone(group_id, message_hash),)
    assert message_hash in a.outbox  # memory follows the commit
    sim.commit(a, commit)
    assert message_hash not in a.outbox
    assert a.outbox_snapshot(sim.now) == []
    (abandoned,) = sim.actions_of(a, Abandoned)
    assert (abandoned.origin, abandoned.reason) == (message_hash, "cancelled")
    sim.down.clear()
    sim.now += 60_000
    sim.log.clear()
    sim.handle(a, Tick(sim.now))
    assert sim.actions_of(a, AskVote) == []
    assert not a.view(group_id).has(message_hash)
    with pytest.raises(ChatError, match="no such message in the outbox"):
        a.cancel(message_hash)


def test_cancel_is_refused_for_a_ratified_or_unknown_message() -> None:
    sim, group_id, a, _, _ = three_ratifiers()
    message_hash = send(sim, a, group_id)
    assert a.view(group_id).has(message_hash)
    with pytest.raises(ChatError, match="already ratified: too late to cancel"):
        a.cancel(message_hash)
    with pytest.raises(ChatError, match="no such message in the outbox"):
        a.cancel(b"\x01" * 32)


def test_a_vote_arriving_after_a_cancel_does_not_resurrect_the_message() -> None:
    sim, group_id, a, b, c = three_ratifiers()
    packet = _queue_unanswered(sim, a, group_id)
    sim.commit(a, a.cancel(packet.message_hash))
    for ratifier in (b, c):
        vote = _vote_of(sim, ratifier, a, group_id, packet)
        late = VoteAnswered(group_id, packet.message_hash, ratifier.peer_id, vote, None, sim.now)
        assert a.handle(late) == []
    assert not a.view(group_id).has(packet.message_hash)
    assert packet.message_hash not in a.outbox


def test_a_member_refused_as_unknown_by_every_ratifier_learns_the_roster() -> None:
    # Found by the simulator (make sim SEED=1026 STRICT=1): a member that missed its removal
    # is answered "unknown group" by every ratifier (§8) and must fetch the chain to learn it.
    sim, group_id, a, b, c = three_ratifiers()
    d = sim.add()
    sim.invite(a, group_id, d, Role.USER)
    packet = _queue_unanswered(sim, d, group_id)
    out = []
    for ratifier in (a, b, c):
        refusal = VoteAnswered(
            group_id, packet.message_hash, ratifier.peer_id, None, "unknown group", sim.now
        )
        out += d.handle(refusal)
    assert out == [LearnRoster(group_id, a.peer_id)]
