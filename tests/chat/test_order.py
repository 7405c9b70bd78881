"""One author's order across crashes and restarts (specs/chat.md §11), on nodes on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from chat.cluster import Peer, build_group, open_cluster
from chat.crash import CrashingStore
from p2pchat.chat.core.roster import Role
from p2pchat.chat.store import ChatStore

pytestmark = pytest.mark.timeout(180)

#: How long the nodes get to ratify everything once a quorum is back (a bound, not a target).
CONVERGE = 60.0


def _lines(first: int, last: int) -> list[str]:
    return [f"line {n}" for n in range(first, last + 1)]


async def _send(alice: Peer, group_id: bytes, lines: list[str]) -> None:
    for line in lines:
        await alice.chat.send(group_id, line, wait=False)


async def _texts(peer: Peer, group_id: bytes) -> list[str | None]:
    return [m.text for m in await peer.chat.history(group_id) if m.message_type == "text"]


async def _converged(peers: list[Peer], group_id: bytes, count: int) -> None:
    """Wait (polling, at most ``CONVERGE`` s) until every peer holds ``count`` text messages
    and has nothing left in its outbox."""
    for _ in range(int(CONVERGE * 10)):
        counts = [len(await _texts(peer, group_id)) for peer in peers]
        if counts == [count] * len(peers) and not any(p.chat.outbox(group_id) for p in peers):
            return
        await trio.sleep(0.1)
    raise AssertionError(f"not converged: {counts} of {count} held")


async def test_thirty_lines_across_a_ratifiers_crash_show_in_send_order(tmp_path: Path) -> None:
    """The issue's trial: quorum 2 of 2, bob killed after line 8 (at his next commit, as a
    killed process dies) and restarted from his data dir after line 20."""
    async with open_cluster(tmp_path, "alice", "bob") as cluster:
        alice, bob = cluster.peers
        group_id = await build_group(alice, [(bob, Role.RATIFIER)])
        assert alice.chat.group_state(group_id).current_roster.quorum == 2
        await bob.stop()
        crashing: list[CrashingStore] = []

        def wrap(store: ChatStore) -> CrashingStore:
            crashing.append(CrashingStore(store, None, after=False))
            return crashing[-1]

        bob.wrap_store = wrap
        await bob.start()
        await _send(alice, group_id, _lines(1, 8))
        store = crashing[-1]
        store.crash_at = store.commits + 1  # bob dies at his next commit
        await _send(alice, group_id, _lines(9, 9))
        with trio.fail_after(CONVERGE):
            await store.crashed.wait()
        await bob.stop()
        await _send(alice, group_id, _lines(10, 20))
        bob.wrap_store = None
        await bob.start()
        await _send(alice, group_id, _lines(21, 30))
        await _converged([alice, bob], group_id, 30)
        for peer in (alice, bob):
            assert await _texts(peer, group_id) == _lines(1, 30)


async def test_the_authors_restart_keeps_the_order_of_its_queued_lines(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "alice", "bob") as cluster:
        alice, bob = cluster.peers
        group_id = await build_group(alice, [(bob, Role.RATIFIER)])
        await _send(alice, group_id, _lines(1, 5))
        await bob.stop()
        await _send(alice, group_id, _lines(6, 15))
        await alice.stop()
        await alice.start()
        assert len(alice.chat.outbox(group_id)) >= 10
        await _send(alice, group_id, _lines(16, 20))
        await bob.start()
        await _converged([alice, bob], group_id, 20)
        for peer in (alice, bob):
            assert await _texts(peer, group_id) == _lines(1, 20)


async def test_the_authors_crash_in_the_middle_of_its_chain_keeps_the_order(
    tmp_path: Path,
) -> None:
    """alice dies (as a killed process, at a commit) while her queued lines are being
    ratified one after the other, and is restarted from her data dir."""
    async with open_cluster(tmp_path, "alice", "bob") as cluster:
        alice, bob = cluster.peers
        group_id = await build_group(alice, [(bob, Role.RATIFIER)])
        await alice.stop()
        crashing: list[CrashingStore] = []

        def wrap(store: ChatStore) -> CrashingStore:
            crashing.append(CrashingStore(store, None, after=True))
            return crashing[-1]

        alice.wrap_store = wrap
        await alice.start()
        await bob.stop()
        await _send(alice, group_id, _lines(1, 12))
        store = crashing[-1]
        # Once bob is back, alice's certificate commits follow one another: she dies just
        # after the fourth commit from now (durable, but nothing after it happens).
        store.crash_at = store.commits + 4
        await bob.start()
        with trio.fail_after(CONVERGE):
            await store.crashed.wait()
        await alice.stop()
        alice.wrap_store = None
        await alice.start()
        await _send(alice, group_id, _lines(13, 15))
        await _converged([alice, bob], group_id, 15)
        for peer in (alice, bob):
            assert await _texts(peer, group_id) == _lines(1, 15)
