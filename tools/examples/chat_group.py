"""A ratified group chat between two nodes on 127.0.0.1, in one process.

    .venv/bin/python tools/examples/chat_group.py

The owner creates a group, invites a second node as ratifier, and both send a message; each
message counts as sent once a quorum of ratifiers (here both) has signed it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import trio

from p2pchat.chat.node import open_chat_node
from p2pchat.chat.store import open_store
from p2pchat.identity import KeyPair
from p2pchat.net.host import open_host
from p2pchat.net.peerstore import PERMANENT


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            open_host(KeyPair.generate()) as host_a,
            open_host(KeyPair.generate()) as host_b,
            open_store(Path(tmp) / "a") as store_a,
            open_store(Path(tmp) / "b") as store_b,
            open_chat_node(host_a, store_a) as alice,
            open_chat_node(host_b, store_b) as bob,
        ):
            # Discovery is a later layer: here each host is told where the other listens.
            now = trio.current_time()
            host_a.peer_store.add_addrs(host_b.peer_id, host_b.addrs, PERMANENT, now)
            host_b.peer_store.add_addrs(host_a.peer_id, host_a.addrs, PERMANENT, now)

            group = await alice.create_group("example")
            await alice.invite(group, bob.peer_id, "ratifier")
            await bob.join(group, alice.peer_id)

            async with bob.subscribe(group) as messages:
                await alice.send(group, "hello from alice")
                async for message in messages:
                    print(f"bob received: {message.text!r} (ratified: {message.ratified})")
                    break
            sent = await bob.send(group, "**hi** from bob", message_type="markdown")
            await alice.wait_ratified(group, sent)  # delivery to alice follows ratification
            for message in await alice.history(group):
                if message.message_type != "roster":
                    print(f"{message.author.to_base58()[-6:]}: {message.text}")


if __name__ == "__main__":
    trio.run(main)
