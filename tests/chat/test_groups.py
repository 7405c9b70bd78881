"""Groups whose roster chain outgrows one frame (specs/chat.md §13): grown one invite at a time
on real Hosts on 127.0.0.1, with light members (an HPKE key pair and a member entry, no node)
beside the nodes that join. No timed assertions."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat.cluster import Peer, open_cluster
from p2pchat.chat.core import crypto, wire
from p2pchat.chat.core.roster import Member, Role
from p2pchat.identity import KeyPair

pytestmark = pytest.mark.timeout(240)

HYBRID = "MLKEM768_X25519"


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


async def test_the_24th_member_joins_a_chain_larger_than_a_frame(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "owner", "late") as cluster:
        owner, late = cluster.peers
        group_id = await owner.chat.create_group("large")
        for _ in range(22):
            await add_light_member(owner, group_id)
        await owner.chat.invite(group_id, late.peer_id, Role.USER)
        # 24 members (owner, 22 light, late): the chain no longer fits one frame.
        assert len(owner.chat.view(group_id).state.current_roster.members) == 24
        assert chain_size(owner, group_id) > wire.MAX_FRAME_SIZE
        await late.chat.join(group_id, owner.peer_id)
        state = late.chat.group_state(group_id)
        assert state.current_epoch == owner.chat.view(group_id).state.current_epoch == 23
        sent = await late.chat.send(group_id, "hello from the 24th")
        await owner.chat.wait_ratified(group_id, sent)
        texts = [m.text for m in await owner.chat.history(group_id)]
        assert texts[-1] == "hello from the 24th"


async def test_a_member_offline_for_many_changes_learns_them_in_pages(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "owner", "away") as cluster:
        owner, away = cluster.peers
        group_id = await owner.chat.create_group("churn")
        await owner.chat.invite(group_id, away.peer_id, Role.USER)
        await away.chat.join(group_id, owner.peer_id)
        await away.stop()
        for _ in range(22):
            await add_light_member(owner, group_id)
        assert chain_size(owner, group_id) > wire.MAX_FRAME_SIZE
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
        # History "all": each invite wraps every earlier epoch key for the newcomer.
        assert chain_size(owner, group_id) > wire.MAX_FRAME_SIZE
        await late.chat.join(group_id, owner.peer_id)
        sent = await late.chat.send(group_id, "after the churn")
        await regular.chat.wait_ratified(group_id, sent)
        texts = [m.text for m in await regular.chat.history(group_id)]
        assert texts[-1] == "after the churn"
