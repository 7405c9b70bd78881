"""A deleted message's content leaves every node (specs/chat.md §17 "Pruned packets"): three
nodes on 127.0.0.1 store the delete and drop the content key and the artifact's files; a
member that joins later receives the pruned packets, checks them and shows the history the
same way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from chat.cluster import FAST_ARTIFACTS as FAST
from chat.cluster import Peer, build_group, open_cluster, stored
from chat.test_refs_node import folded, wait_everywhere
from p2pchat.chat.core.artifact import CHUNK_SIZE
from p2pchat.chat.core.refs import DELETE
from p2pchat.chat.core.roster import Role

pytestmark = pytest.mark.timeout(120)


async def wait_files_gone(peer: Peer, group_id: bytes, root: bytes) -> None:
    artifacts = peer.chat.artifacts
    assert artifacts is not None
    with trio.fail_after(15):
        # The files go in the node's own nursery after the commit: watch them.
        while artifacts.files.has(group_id, root):  # noqa: ASYNC110
            await trio.sleep(0.05)


def store_bytes(peer: Peer) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(peer.data_dir.glob("store.sqlite3*")))


async def test_a_delete_drops_the_content_everywhere_and_a_joiner_gets_a_valid_history(
    tmp_path: Path,
) -> None:
    async with open_cluster(tmp_path, "owner", "bob", "carol", "dave", start=False) as cluster:
        for peer in cluster.peers:
            peer.config = FAST
            await peer.start()
        owner, bob, carol, dave = cluster.peers
        first = [owner, bob, carol]
        group_id = await build_group(owner, [(bob, Role.RATIFIER), (carol, Role.USER)])
        secret = await carol.chat.send(group_id, "my pin is 4711")
        path = tmp_path / "leaked.bin"
        path.write_bytes(os.urandom(2 * CHUNK_SIZE + 77))
        leaked = await carol.chat.send_file(group_id, path)
        kept = await bob.chat.send(group_id, "this one stays")
        await wait_everywhere(first, group_id, secret, leaked, kept)
        keys = [(await stored(carol, group_id, h)).aes_key for h in (secret, leaked)]
        root = (await stored(carol, group_id, leaked)).message.artifact.chunked
        assert root is not None
        for peer in (owner, bob):  # the ratifiers hold the file in custody
            artifacts = peer.chat.artifacts
            assert artifacts is not None
            assert artifacts.files.is_complete(group_id, root.root)

        # Carol deletes her text; the owner deletes her file (moderation).
        gone = await carol.chat.send(group_id, b"", message_type=DELETE, ref_hash=secret)
        moderated = await owner.chat.send(group_id, b"", message_type=DELETE, ref_hash=leaked)
        await wait_everywhere(first, group_id, gone, moderated)
        for peer in first:
            for message_hash in (secret, leaked):
                packet = await stored(peer, group_id, message_hash)
                assert packet.pruned
                assert (packet.aes_key, packet.iv) == (b"", b"")
            assert not (await stored(peer, group_id, kept)).pruned
            await wait_files_gone(peer, group_id, root.root)

        # A member invited now pages the history (dht) and gets the pruned packets.
        await owner.chat.invite(group_id, dave.peer_id, Role.USER)
        await dave.chat.join(group_id, owner.peer_id)
        await wait_everywhere([dave], group_id, secret, leaked, kept, gone, moderated)
        for message_hash in (secret, leaked):
            assert (await stored(dave, group_id, message_hash)).pruned
        views = [await folded(peer, group_id) for peer in cluster.peers]
        assert views[0] == views[1] == views[2] == views[3]
        shown = {f.item.message_hash: f for f in views[3]}
        assert (shown[secret].deleted_by, shown[secret].content) == (carol.peer_id, None)
        assert (shown[leaked].deleted_by, shown[leaked].content) == (owner.peer_id, None)
        assert shown[kept].content == b"this one stays"
        opened = dave.chat.artifacts
        assert opened is not None
        assert not opened.files.has(group_id, root.root)

        # Stopped (the WAL checkpointed into the file), no store holds the content keys.
        for peer in cluster.peers:
            await peer.stop()
        for peer in cluster.peers:
            content = store_bytes(peer)
            assert content  # the check can fail: the file is there
            for key in keys:
                assert key not in content, peer.name
