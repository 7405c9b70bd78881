"""A member removed while it was down learns of its removal on real nodes on 127.0.0.1
(specs/chat.md §8 "Membership that ends", "Learning the roster without the parents"): the
roster message that removed it names history it lacks, which members no longer serve it; it
takes that roster message from the chain without those parents and drops its queued message.
No timed assertions: every wait is for an event, under a generous bound."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import trio

from chat.cluster import CONFIG, build_group, open_cluster
from p2pchat.chat.core.roster import Role
from p2pchat.chat.core.view import ChatError

pytestmark = pytest.mark.timeout(120)


async def test_a_member_removed_while_down_learns_it_without_the_parents_and_stops_sending(
    tmp_path: Path,
) -> None:
    async with open_cluster(tmp_path, "owner", "r2", "r3", "member", "away") as cluster:
        owner, r2, r3, member, away = cluster.peers
        group_id = await build_group(
            owner,
            [(r2, Role.RATIFIER), (r3, Role.RATIFIER), (member, Role.USER), (away, Role.USER)],
        )
        await away.stop()
        missed = await member.chat.send(group_id, "while away is down")
        with trio.fail_after(15):
            for peer in (owner, r2, r3):
                await peer.chat.wait_ratified(group_id, missed)
        await member.stop()  # so that nobody delivers ``missed`` to away later
        await owner.chat.remove(group_id, away.peer_id)
        removal = owner.chat.group_state(group_id).roster_packets[-1]
        assert missed in removal.message.parents  # the parent away lacks

        away.config = attrs.evolve(CONFIG, send_timeout=60.0)  # wait for the outcome
        await away.start()
        assert away.chat.view(group_id).is_current_member(away.peer_id)  # not known yet
        with trio.fail_after(30), pytest.raises(ChatError, match="removed from the group"):
            await away.chat.send(group_id, "sent after the removal")
        assert away.chat.outbox(group_id) == []
        view = away.chat.view(group_id)
        assert not view.is_current_member(away.peer_id)
        assert view.has(removal.message_hash)
        assert not view.has(missed)  # members serve a removed member nothing of the history
