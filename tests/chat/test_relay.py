"""Delivery relayed through members (specs/chat.md §13) in a group of real nodes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import trio

from chat.cluster import build_group, open_cluster, stored
from p2pchat.chat.core.packet import Packet
from p2pchat.chat.core.roster import Role
from p2pchat.chat.services import deliver
from p2pchat.chat.services.chat_client import open_chat
from p2pchat.chat.services.deliver import DeliverService
from p2pchat.identity import KeyPair, PeerID

pytestmark = pytest.mark.timeout(120)

SEVEN = ("owner", "ratifier2", "ratifier3", "user1", "user2", "user3", "user4")


async def test_a_group_larger_than_the_fanout_gets_every_message_through_relays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deliver, "RELAY_FANOUT", 2)
    # (message hash, service, recipient, carried a relay list)
    sent: list[tuple[bytes, int, PeerID, bool]] = []
    real_ask = DeliverService._ask

    async def recording(
        self: DeliverService,
        peer: PeerID,
        group_id: bytes,
        packets: list[Packet],
        rest: tuple[PeerID, ...],
    ) -> list[str | None]:
        sent.extend((p.message_hash, id(self), peer, bool(rest)) for p in packets)
        return await real_ask(self, peer, group_id, packets, rest)

    monkeypatch.setattr(DeliverService, "_ask", recording)
    async with open_cluster(tmp_path, *SEVEN) as cluster:
        owner, r2, r3, *users = cluster.peers
        members = [(r2, Role.RATIFIER), (r3, Role.RATIFIER)] + [(u, Role.USER) for u in users]
        group_id = await build_group(owner, members)
        message_hash = await users[0].chat.send(group_id, "to six members, two at a time")
        with trio.fail_after(30):
            for peer in cluster.peers:
                await peer.chat.wait_ratified(group_id, message_hash)
        ours = [(service, peer, relayed) for h, service, peer, relayed in sent if h == message_hash]
        recipients = Counter(peer for _, peer, _ in ours)
        assert set(recipients) == {p.peer_id for p in cluster.peers} - {users[0].peer_id}
        assert all(count == 1 for count in recipients.values())  # nobody got it twice
        per_sender = Counter(service for service, _, _ in ours)
        assert max(per_sender.values()) <= 2  # no node sent more than the fan-out
        assert any(relayed for _, _, relayed in ours)


async def test_a_relay_list_naming_a_non_member_or_garbage_is_refused(tmp_path: Path) -> None:
    async with open_cluster(tmp_path, "owner", "ratifier2", "ratifier3", "user") as cluster:
        owner, r2, r3, user = cluster.peers
        group_id = await build_group(
            owner, [(r2, Role.RATIFIER), (r3, Role.RATIFIER), (user, Role.USER)]
        )
        message_hash = await user.chat.send(group_id, "relay me")
        with trio.fail_after(15):
            await owner.chat.wait_ratified(group_id, message_hash)
        packet = (await stored(owner, group_id, message_hash)).to_cbor()
        async with open_chat(user.chat.host, owner.peer_id) as client:

            async def ask(relay: object) -> str | None:
                body = {"group_id": group_id, "packet": packet, "relay": relay}
                answer = await client.query("smsg", body)
                return None if answer.ok else answer.reason

            stranger = KeyPair.generate().peer_id.to_bytes()
            assert await ask([stranger]) == "malformed"
            assert await ask([owner.peer_id.to_bytes()]) == "malformed"  # the receiver itself
            assert await ask([user.peer_id.to_bytes()]) == "malformed"  # the sender
            assert await ask([r2.peer_id.to_bytes(), r2.peer_id.to_bytes()]) == "malformed"
            assert await ask(["not bytes"]) == "malformed"
            assert await ask(b"not a list") == "malformed"
            assert await ask([r2.peer_id.to_bytes()]) is None  # a member: fine (a duplicate)
