"""Closing an epoch on real nodes on 127.0.0.1 (specs/chat.md §14): two removed ratifiers
certify a new message of the epoch they closed, and every member refuses it; a member offline
across the close, and one who joins after it, still accept what was certified before. No timed
assertions: every wait is for an event, under a generous bound."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from chat.cluster import Peer, build_group, certified, crafted, open_cluster
from p2pchat.chat.core.packet import Packet
from p2pchat.chat.core.roster import Role
from p2pchat.chat.services.chat_client import open_chat

pytestmark = pytest.mark.timeout(120)


async def smsg(sender: Peer, to: Peer, group_id: bytes, packet: Packet) -> tuple[bool, str | None]:
    async with open_chat(sender.chat.host, to.peer_id) as client:
        answer = await client.query("smsg", {"group_id": group_id, "packet": packet.to_cbor()})
    return answer.ok, answer.reason


async def history_hashes(peer: Peer, group_id: bytes) -> list[bytes]:
    return [m.message_hash for m in await peer.chat.history(group_id)]


async def test_removed_ratifiers_cannot_certify_a_closed_epoch_and_nothing_before_is_lost(
    tmp_path: Path,
) -> None:
    names = ("owner", "r2", "r3", "member", "away", "joiner")
    async with open_cluster(tmp_path, *names) as cluster:
        owner, r2, r3, member, away, joiner = cluster.peers
        group_id = await build_group(
            owner,
            [(r2, Role.RATIFIER), (r3, Role.RATIFIER), (member, Role.USER), (away, Role.USER)],
        )
        assert owner.chat.group_state(group_id).current_roster.quorum == 2
        first = await member.chat.send(group_id, "before the close")
        with trio.fail_after(15):
            await away.chat.wait_ratified(group_id, first)
        await away.stop()
        missed = await member.chat.send(group_id, "while away is offline")
        epoch = owner.chat.group_state(group_id).current_epoch

        # The owner removes both other ratifiers; the first removal closes ``epoch``.
        await owner.chat.remove(group_id, r2.peer_id)
        await owner.chat.remove(group_id, r3.peer_id)
        closing = owner.chat.group_state(group_id).roster_packets[epoch]
        with trio.fail_after(15):
            for peer in (member, r2, r3):
                await peer.chat.wait_ratified(group_id, closing.message_hash)

        # Two of the epoch's three ratifiers (a quorum) certify a new message of it.
        forged = certified(
            crafted(r2, r2, group_id, b"written after the close", epoch=epoch, parents=(missed,)),
            r2,
            r3,
        )
        for to in (owner, member):
            assert await smsg(r2, to, group_id, forged) == (False, "closed epoch")
            assert forged.message_hash not in await history_hashes(to, group_id)

        # The member offline across the close comes back and still gets what came before.
        await away.start()
        latest = owner.chat.group_state(group_id).roster_packets[-1]
        with trio.fail_after(30):
            await away.chat.wait_ratified(group_id, missed)
            await away.chat.wait_ratified(group_id, latest.message_hash)
        assert await smsg(r2, away, group_id, forged) == (False, "closed epoch")

        # A member who joins after the close holds the chain first: all that history is of
        # closed epochs, and is accepted because the closing votes committed to it.
        await owner.chat.invite(group_id, joiner.peer_id, Role.USER)
        await joiner.chat.join(group_id, member.peer_id)
        held = await history_hashes(joiner, group_id)
        assert first in held
        assert missed in held
        assert closing.message_hash in held
        assert await smsg(r2, joiner, group_id, forged) == (False, "closed epoch")
        assert forged.message_hash not in await history_hashes(joiner, group_id)
