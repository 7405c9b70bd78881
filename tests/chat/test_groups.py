"""Groups whose roster chain outgrows one frame (specs/chat.md §16): grown one invite at a time
on real Hosts on 127.0.0.1, with light members (an HPKE key pair and a member entry, no node)
beside the nodes that join. No timed assertions."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat.cluster import Peer, open_cluster
from p2pchat.chat.core import crypto, roster_sync, wire
from p2pchat.chat.core.roster import MAX_MEMBERS, Member, Role
from p2pchat.chat.services.chat_client import open_chat
from p2pchat.identity import KeyPair

pytestmark = pytest.mark.timeout(240)

HYBRID = "MLKEM768_X25519"


def light_entry(kem: str = HYBRID) -> Member:
    """A member entry of a fresh identity and HPKE key pair (the member runs no node)."""
    hpke = crypto.HpkeKeyPair.generate(kem)
    return Member(KeyPair.generate().peer_id, Role.USER, kem, hpke.public_bytes())


async def grow(owner: Peer, group_id: bytes, size: int, *, kem: str, batch: int) -> None:
    """Add light members, ``batch`` per roster change, until the group has ``size`` members."""
    while (have := len(owner.chat.view(group_id).state.current_roster.members)) < size:
        members = [*owner.chat.view(group_id).state.current_roster.members]
        members += [light_entry(kem) for _ in range(min(batch, size - have))]
        await owner.chat._change_roster(group_id, members, added=None)


async def add_light_member(owner: Peer, group_id: bytes) -> KeyPair:
    """Invite a member that has keys but runs no node (as ``invite`` does, without ``hpk``)."""
    identity = KeyPair.generate()
    hpke = crypto.HpkeKeyPair.generate(HYBRID)
    entry = Member(identity.peer_id, Role.USER, HYBRID, hpke.public_bytes())
    members = [*owner.chat.view(group_id).state.current_roster.members, entry]
    await owner.chat._change_roster(group_id, members, added=identity.peer_id)
    return identity


def chain_size(owner: Peer, group_id: bytes) -> int:
    view = owner.chat.view(group_id)
    return len(view.signed.encode()) + sum(len(p.encode()) for p in view.state.roster_packets)


def chain_pages(owner: Peer, group_id: bytes) -> int:
    """The ``pktR`` pages the owner serves the chain in (from epoch 0)."""
    view = owner.chat.view(group_id)
    chain, pages, first = view.state.roster_packets, 0, 0
    while first is not None:
        first = roster_sync.roster_page(view.signed, chain, first)["next"]
        pages += 1
    return pages


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 8 KiB, so that a chain of a few dozen roster deltas spans several (the delta
    format of specs/chat.md §20 keeps such a chain well under one frame)."""
    monkeypatch.setattr(roster_sync, "PKT_PAGE_BYTES", 8 * 1024)


async def test_the_24th_member_joins_a_chain_of_several_pages(
    tmp_path: Path, small_pages: None
) -> None:
    async with open_cluster(tmp_path, "owner", "late") as cluster:
        owner, late = cluster.peers
        group_id = await owner.chat.create_group("large")
        for _ in range(22):
            await add_light_member(owner, group_id)
        await owner.chat.invite(group_id, late.peer_id, Role.USER)
        # 24 members (owner, 22 light, late): the chain was over 1 MiB with whole rosters
        # (format 1); as deltas it fits one frame, and is still paged here.
        assert len(owner.chat.view(group_id).state.current_roster.members) == 24
        assert chain_size(owner, group_id) < wire.MAX_FRAME_SIZE
        assert chain_pages(owner, group_id) > 3
        await late.chat.join(group_id, owner.peer_id)
        state = late.chat.group_state(group_id)
        assert state.current_epoch == owner.chat.view(group_id).state.current_epoch == 23
        sent = await late.chat.send(group_id, "hello from the 24th")
        await owner.chat.wait_ratified(group_id, sent)
        texts = [m.text for m in await owner.chat.history(group_id)]
        assert texts[-1] == "hello from the 24th"


async def test_a_member_offline_for_many_changes_learns_them_in_pages(
    tmp_path: Path, small_pages: None
) -> None:
    async with open_cluster(tmp_path, "owner", "away") as cluster:
        owner, away = cluster.peers
        group_id = await owner.chat.create_group("churn")
        await owner.chat.invite(group_id, away.peer_id, Role.USER)
        await away.chat.join(group_id, owner.peer_id)
        await away.stop()
        for _ in range(22):
            await add_light_member(owner, group_id)
        assert chain_pages(owner, group_id) > 3
        await away.start()
        await away.chat._sync.learn_roster(group_id, owner.peer_id)
        assert away.chat.group_state(group_id).current_epoch == 23


async def test_a_member_joins_after_26_invite_and_remove_cycles(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "owner", "regular", "late") as cluster:
        owner, regular, late = cluster.peers
        group_id = await owner.chat.create_group("churn")
        await owner.chat.invite(group_id, regular.peer_id, Role.USER)
        await regular.chat.join(group_id, owner.peer_id)
        for _ in range(26):
            light = await add_light_member(owner, group_id)
            await owner.chat.remove(group_id, light.peer_id)
        assert owner.chat.view(group_id).state.current_epoch == 53
        await owner.chat.invite(group_id, late.peer_id, Role.USER)
        # History "all": each invite wraps every earlier epoch key for the newcomer. With
        # whole rosters and keys in the body (format 1) the chain passed 1 MiB here; as deltas
        # committing to their keys (specs/chat.md §20) it grows by a few hundred bytes a change.
        assert chain_size(owner, group_id) < wire.MAX_FRAME_SIZE // 8
        await late.chat.join(group_id, owner.peer_id)
        sent = await late.chat.send(group_id, "after the churn")
        await regular.chat.wait_ratified(group_id, sent)
        texts = [m.text for m in await regular.chat.history(group_id)]
        assert texts[-1] == "after the churn"


async def join_write_change_and_remove(owner: Peer, node: Peer, group_id: bytes) -> None:
    """``node`` (invited) joins, writes, sees a change, is removed, and cannot read what
    follows its removal."""
    await node.chat.join(group_id, owner.peer_id)
    sent = await node.chat.send(group_id, "hello, large group")
    await owner.chat.wait_ratified(group_id, sent)
    assert [m.text for m in await owner.chat.history(group_id)][-1] == "hello, large group"
    epoch = owner.chat.view(group_id).state.current_epoch
    await grow(
        owner,
        group_id,
        len(owner.chat.view(group_id).state.current_roster.members) + 1,
        kem=HYBRID,
        batch=1,
    )
    change = owner.chat.view(group_id).state.roster_packet(epoch)
    assert change is not None
    await node.chat.wait_ratified(group_id, change.message_hash)
    assert node.chat.group_state(group_id).current_epoch == epoch + 1
    await owner.chat.remove(group_id, node.peer_id)
    after = await owner.chat.send(group_id, "after the removal")
    removed_in = epoch + 1
    assert owner.chat.view(group_id).state.current_epoch == removed_in + 1
    # The removed member holds no key of the epoch that follows its removal, and is refused
    # the messages of that epoch.
    assert set(node.chat.view(group_id).epoch_keys) <= set(range(removed_in + 1))
    async with open_chat(node.chat.host, owner.peer_id) as client:
        answer = await client.query("get", {"group_id": group_id, "hashes": [after]})
    assert (answer.ok, answer.reason) == (False, "unknown group")
    assert not node.chat.view(group_id).has(after)


async def test_a_group_of_100_members_is_joined_written_to_and_changed(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "owner", "member") as cluster:
        owner, node = cluster.peers
        group_id = await owner.chat.create_group("hundred", history="since_join")
        await grow(owner, group_id, 99, kem=HYBRID, batch=49)
        await owner.chat.invite(group_id, node.peer_id, Role.USER)
        assert len(owner.chat.view(group_id).state.current_roster.members) == 100
        await join_write_change_and_remove(owner, node, group_id)


@pytest.mark.slow
async def test_a_group_at_the_maximum_of_1024_members_works(tmp_path: Path) -> None:
    # MLKEM768_X25519 light members (the default KEM): a roster delta commits to its wrapped
    # keys (specs/chat.md §20), so a change stays small at any size.
    async with open_cluster(tmp_path, "owner", "member") as cluster:
        owner, node = cluster.peers
        group_id = await owner.chat.create_group("maximum", history="since_join")
        await grow(owner, group_id, MAX_MEMBERS - 2, kem=HYBRID, batch=255)
        await owner.chat.invite(group_id, node.peer_id, Role.USER)
        assert len(owner.chat.view(group_id).state.current_roster.members) == MAX_MEMBERS - 1
        assert chain_size(owner, group_id) < 2 * 1024 * 1024  # a joiner's roster data
        await join_write_change_and_remove(owner, node, group_id)


async def test_pkt_pages_refuse_a_bad_or_future_from(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "owner", "member") as cluster:
        owner, node = cluster.peers
        group_id = await owner.chat.create_group("pages")
        await owner.chat.invite(group_id, node.peer_id, Role.USER)
        await node.chat.join(group_id, owner.peer_id)
        async with open_chat(node.chat.host, owner.peer_id) as client:
            last = await client.query("pkt", {"group_id": group_id, "from": 1})
            assert (last.ok, last.body) == (True, {"rosters": [], "next": None})
            future = await client.query("pkt", {"group_id": group_id, "from": 2})
            assert (future.ok, future.reason) == (False, "future epoch")
            bad = await client.query("pkt", {"group_id": group_id, "from": -1})
            assert (bad.ok, bad.reason) == (False, "malformed")
