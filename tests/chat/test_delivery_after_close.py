"""Delivery after the close on real nodes on 127.0.0.1 (specs/chat.md §14): an author whose
deliveries of a certified message were lost, and who is removed while down, delivers it again
once it learns of the close, and the members take it. No timed assertions: every wait is for
an event, under a generous bound."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import trio

from chat.cluster import CONFIG, open_cluster
from p2pchat.chat.core.events import Deliver
from p2pchat.chat.core.roster import Role

pytestmark = pytest.mark.timeout(120)

#: Anti-entropy so rare that only a new connection compares heads: the message can reach the
#: members only by being delivered again.
NO_PERIODIC_SYNC = attrs.evolve(CONFIG, sync_interval=3600.0)


async def test_a_message_whose_author_was_removed_before_delivering_it_reaches_the_group(
    tmp_path: Path,
) -> None:
    async with open_cluster(tmp_path, "owner", "r2", "r3", "member", "author", start=False) as c:
        owner, r2, r3, member, author = c.peers
        for peer in c.peers:
            peer.config = NO_PERIODIC_SYNC
            await peer.start()
        group_id = await owner.chat.create_group("test group")
        for peer, role in ((r2, Role.RATIFIER), (r3, Role.RATIFIER), (member, Role.USER)):
            await owner.chat.invite(group_id, peer.peer_id, role)
            await peer.chat.join(group_id, owner.peer_id)
        await owner.chat.invite(group_id, author.peer_id, Role.USER)
        await author.chat.join(group_id, owner.peer_id)
        # The author's deliveries are lost: it stops before any smsg goes out.
        table = author.chat._runtime._table
        table[Deliver] = lambda action: None
        with trio.fail_after(15):
            lost = await author.chat.send(group_id, "certified, never delivered")
        await author.stop()
        assert lost not in [m.message_hash for m in await member.chat.history(group_id)]

        await owner.chat.remove(group_id, author.peer_id)  # closes the message's epoch
        closing = owner.chat.group_state(group_id).roster_packets[-1]
        with trio.fail_after(15):
            await member.chat.wait_ratified(group_id, closing.message_hash)
        assert lost not in [m.message_hash for m in await member.chat.history(group_id)]

        # Back up, the author is refused hds, learns of its removal and delivers it again.
        await author.start()
        with trio.fail_after(30):
            for peer in (member, owner, r2, r3):
                await peer.chat.wait_ratified(group_id, lost)
        assert not author.chat.view(group_id).is_current_member(author.peer_id)
        shown = [m.message_hash for m in await member.chat.history(group_id)]
        assert lost in shown
