"""A member's fetch of its own keys of a roster delta (specs/chat.md §20, chat/core/key_fetch.py):
which holders it asks and in what order, a bad answer moves to the next holder, the asks are
bounded, and a node that stopped before it had its key asks again at start."""

from __future__ import annotations

from chat.core.enginesim import Sim
from p2pchat.chat.core.engine import ChatEngine
from p2pchat.chat.core.events import Commit, Committed, FetchKeys, KeysAnswered, Tick
from p2pchat.chat.core.key_fetch import BACKOFF_FIRST, MAX_TRIES
from p2pchat.chat.core.keyset import KeySet
from p2pchat.chat.core.roster import Role
from p2pchat.chat.core.txn import CommitResult, PutEpochKey


def group_with_a_missed_change() -> tuple[Sim, bytes, ChatEngine, ChatEngine, ChatEngine, bytes]:
    """A owns a group with ratifiers A, B and user M; M misses the roster change that adds N
    (it is down), then receives it and wants its key; the sim does not carry out its fetch."""
    sim = Sim()
    a, b, m, n = sim.add(), sim.add(), sim.add(), sim.add()
    group_id = sim.create(a)
    sim.invite(a, group_id, b, Role.RATIFIER)
    sim.invite(a, group_id, m, Role.USER)
    sim.down.add(m.peer_id)
    sim.invite(a, group_id, n, Role.USER)
    sim.down.discard(m.peer_id)
    change = a.view(group_id).state.roster_packets[-1]
    decision = m.receive(group_id, change, sim.now)
    assert isinstance(decision, Commit)
    sim.log.clear()
    # Commit it without carrying out what follows (the FetchKeys stays in m's actions).
    sim.commits[m.peer_id].append(decision)
    actions = m.handle(Committed(decision, CommitResult(), sim.now))
    asks = [x for x in actions if isinstance(x, FetchKeys)]
    assert len(asks) == 1
    return sim, group_id, a, b, m, change.message_hash


def test_the_voters_are_asked_then_the_author_and_a_bad_answer_moves_on() -> None:
    sim, group_id, a, b, m, message_hash = group_with_a_missed_change()
    epoch = a.view(group_id).state.current_epoch
    assert epoch not in m.view(group_id).epoch_keys
    assert m.keys.waiting(group_id)
    want = m.keys._wants[message_hash]
    voters = sorted({a.peer_id, b.peer_id}, key=lambda p: p.to_bytes())
    assert list(want.holders) == voters  # the author A voted: it is among them once
    first = want.asking
    assert first == voters[0]
    # A holder that answers another member's entries: refused, the next holder is asked at once.
    held = KeySet.decode(sim.key_sets[(a.peer_id, message_hash)])
    other = held.mine(a.peer_id)
    assert m.handle(KeysAnswered(group_id, message_hash, first, other, sim.now)) == []
    again = m.handle(Tick(sim.now))
    asks = [x for x in again if isinstance(x, FetchKeys)]
    assert [x.holder for x in asks] == [voters[1]]
    # The right answer: its key, committed, then held.
    actions = m.handle(
        KeysAnswered(group_id, message_hash, voters[1], held.mine(m.peer_id), sim.now)
    )
    (commit,) = actions
    assert isinstance(commit, Commit)
    assert [op.epoch for op in commit.txn.operations if isinstance(op, PutEpochKey)] == [epoch]
    assert m.keys.waiting(group_id)  # until the commit is done
    sim.commit(m, commit)
    assert epoch in m.view(group_id).epoch_keys
    assert not m.keys.waiting(group_id)


def test_the_asks_are_bounded() -> None:
    sim, group_id, _a, _b, m, message_hash = group_with_a_missed_change()
    now = sim.now
    asked = 1
    while m.keys.wanted(message_hash):
        holder = m.keys._wants[message_hash].asking
        assert holder is not None
        assert m.handle(KeysAnswered(group_id, message_hash, holder, None, now)) == []
        if not m.keys.wanted(message_hash):
            break
        due = m.keys._wants[message_hash].due
        wake = m.next_wake()
        assert wake is not None
        assert wake <= due  # the engine wakes for it
        now = max(now, due)
        asks = [x for x in m.handle(Tick(now)) if isinstance(x, FetchKeys)]
        assert len(asks) == 1
        asked += 1
    assert asked == MAX_TRIES
    assert not m.keys.waiting(group_id)  # it keeps the roster without the key
    assert now - sim.now >= BACKOFF_FIRST  # it waited between rounds


def test_a_node_that_stopped_before_its_key_came_asks_again_at_start() -> None:
    sim, group_id, a, _b, m, message_hash = group_with_a_missed_change()
    view = m.view(group_id)
    restarted = ChatEngine(m.identity, m.hpke)
    restarted.load_group(view.signed.encode(), view.state.roster_packets, dict(view.epoch_keys), [])
    asks = [x for x in restarted.handle(Tick(sim.now)) if isinstance(x, FetchKeys)]
    assert [x.message_hash for x in asks] == [message_hash]
    held = KeySet.decode(sim.key_sets[(a.peer_id, message_hash)])
    (commit,) = restarted.handle(
        KeysAnswered(group_id, message_hash, asks[0].holder, held.mine(m.peer_id), sim.now)
    )
    assert isinstance(commit, Commit)
