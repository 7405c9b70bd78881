"""Benchmark: large groups (issue 13, specs/chat.md §16), in one process on 127.0.0.1.

One owner node (the group's sole ratifier) and ``--online`` other full nodes (users, online,
each with its own Host, store and data dir) hold one group; the group is grown with *light
members* (an Ed25519 identity and an HPKE key pair, MLKEM768_X25519 unless ``--kem X25519``;
no node: offline members) in roster changes adding at most ``--batch`` members each, to each
size of ``--sizes`` (default 10, 100, 1000). At each size it measures:

* **change bytes**: the encoded size (CBOR, with certificate) of one roster change that adds
  one member (the last change made at that size);
* **key set bytes**: the wrapped keys that change commits to (§20), which each ratifier
  fetches before it votes (the owner is the only ratifier here, so nobody fetches it);
* **chain bytes**: what a new member downloads to join (history ``since_join``): the signed
  genesis and every roster message, as the ``pktR`` pages carry them (§16), plus its own
  entries of the key set of the change that added it, with their proofs (``keysR``, §20);
* **join s**: a new full node is invited, the owner sends a message, and the time from the
  new node's ``join`` to it holding that message (it pages the chain, verifies it, joins, then
  pages the history);
* **apply s**: a roster change (one more light member) from the owner's call until every
  online full node holds the new epoch (ratified at the owner, delivered, applied);
* **owner CPU s**: process CPU time (``time.process_time``, every node of the process, so an
  upper bound on the owner's) over that change.

Targets of the issue at 1,000 members: join under 5 s, a change applied under 2 s, a joiner
downloading under 2 MB of roster data. When a size cannot be reached (a roster change refused,
e.g. over the 768 KiB artifact limit of §4), the bench says at how many members and why, and
stops. Run: ``PYTHONPATH=src python tools/bench_groups.py [--sizes 10,100] [--online 3]``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from p2pchat.chat.core import cbor, crypto
from p2pchat.chat.core.keyset import KeySet
from p2pchat.chat.core.roster import Member, Role
from p2pchat.chat.node import ChatConfig, ChatError, ChatNode, open_chat_node
from p2pchat.chat.store import open_store
from p2pchat.errors import ProtocolError
from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import HostConfig, open_host
from p2pchat.net.peerstore import PERMANENT

HYBRID = "MLKEM768_X25519"
CONFIG = ChatConfig(query_timeout=10.0, send_timeout=60.0, sync_interval=5.0)
WAIT = 120.0


@asynccontextmanager
async def node(root: Path, name: str) -> AsyncIterator[ChatNode]:
    listen = Multiaddr.from_string("/ip4/127.0.0.1/tcp/0")
    async with (
        open_host(KeyPair.generate(), HostConfig(listen=(listen,))) as host,
        open_store(root / name) as store,
        open_chat_node(host, store, CONFIG) as chat,
    ):
        yield chat


def introduce(a: ChatNode, b: ChatNode) -> None:
    now = trio.current_time()
    for x, y in ((a, b), (b, a)):
        addr = y.host.listen_addrs[0].encapsulate(Multiaddr.from_string(f"/p2p/{y.host.peer_id}"))
        x.host.peer_store.add_addrs(y.host.peer_id, [addr], PERMANENT, now)


#: The KEM of the light members (``--kem``); the full nodes use the default, MLKEM768_X25519.
LIGHT_KEM = [HYBRID]


def light_member() -> Member:
    kem = LIGHT_KEM[0]
    pair = crypto.HpkeKeyPair.generate(kem)
    return Member(KeyPair.generate().peer_id, Role.USER, kem, pair.public_bytes())


def chain_bytes(owner: ChatNode, group_id: bytes) -> int:
    view = owner.view(group_id)
    size = len(cbor.dumps(view.signed.to_cbor()))
    return size + sum(len(cbor.dumps(p.to_cbor())) for p in view.state.roster_packets)


async def grow(owner: ChatNode, group_id: bytes, target: int, batch: int) -> None:
    while (size := len(owner.view(group_id).state.current_roster.members)) < target:
        members = list(owner.view(group_id).state.current_roster.members)
        members += [light_member() for _ in range(min(batch, target - size))]
        await owner._change_roster(group_id, members, added=None)


async def wait_held(nodes: list[ChatNode], group_id: bytes, message_hash: bytes) -> None:
    with trio.fail_after(WAIT):
        for chat in nodes:
            await chat.wait_ratified(group_id, message_hash)


async def measure(
    root: Path, owner: ChatNode, online: list[ChatNode], group_id: bytes, size: int, index: int
) -> str:
    # One more light member: the change whose bytes, apply time and CPU are measured.
    epoch = owner.view(group_id).state.current_epoch
    members = [*owner.view(group_id).state.current_roster.members, light_member()]
    cpu0, t0 = time.process_time(), time.perf_counter()
    await owner._change_roster(group_id, members, added=None)
    change = owner.view(group_id).state.roster_packet(epoch)
    assert change is not None
    await wait_held(online, group_id, change.message_hash)
    apply_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    change_bytes = len(cbor.dumps(change.to_cbor()))
    held = await owner.store.get_key_set(group_id, change.message_hash)
    keyset_bytes = 0 if held is None else len(held)
    async with node(root, f"joiner{index}") as joiner:
        introduce(owner, joiner)
        await owner.invite(group_id, joiner.peer_id, Role.USER)
        chain = chain_bytes(owner, group_id)
        invite = owner.view(group_id).state.roster_packets[-1]
        invite_set = await owner.store.get_key_set(group_id, invite.message_hash)
        if invite_set is not None:  # the joiner's own entries, with proofs (keysR)
            chain += len(cbor.dumps(KeySet.decode(invite_set).mine(joiner.peer_id)))
        latest = await owner.send(group_id, f"latest at {size}")
        t0 = time.perf_counter()
        await joiner.join(group_id, owner.peer_id)
        with trio.fail_after(WAIT):
            await joiner.wait_ratified(group_id, latest)
        join_s = time.perf_counter() - t0
    return (
        f"{size + 2:>7} {change_bytes:>13,} {keyset_bytes:>14,} {chain:>14,} {join_s:>7.2f} "
        f"{apply_s:>8.2f} {cpu_s:>11.2f}"
    )


async def main(sizes: list[int], online_count: int, batch: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-groups-") as tmp:
        root = Path(tmp)
        async with node(root, "owner") as owner:
            group_id = await owner.create_group("bench", history="since_join")
            online: list[ChatNode] = []
            async with trio.open_nursery() as nursery:
                ready = trio.Event()
                done = trio.Event()

                async def run_online(i: int) -> None:
                    async with node(root, f"online{i}") as chat:
                        introduce(owner, chat)
                        online.append(chat)
                        if len(online) == online_count:
                            ready.set()
                        await done.wait()

                for i in range(online_count):
                    nursery.start_soon(run_online, i)
                if online_count:
                    await ready.wait()
                for chat in online:
                    await owner.invite(group_id, chat.peer_id, Role.USER)
                    await chat.join(group_id, owner.peer_id)
                print(
                    f"online full nodes: {online_count} (+ the owner); light members "
                    f"{LIGHT_KEM[0]}, added {batch} per change"
                )
                print(
                    " members  change bytes  key set bytes    chain bytes  join s  apply s  "
                    "owner CPU s"
                )
                for index, size in enumerate(sizes):
                    try:
                        await grow(owner, group_id, size - 2, batch)
                        print(await measure(root, owner, online, group_id, size - 2, index))
                    except (ChatError, ProtocolError, ValueError, trio.TooSlowError) as exc:
                        have = len(owner.view(group_id).state.current_roster.members)
                        print(f"{size:>7} not reached: stopped at {have} members: {exc!r}")
                        break
                done.set()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--online", type=int, default=3)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--kem", choices=(HYBRID, "X25519"), default=HYBRID)
    args = parser.parse_args()
    LIGHT_KEM[0] = args.kem
    logging.basicConfig(level=logging.WARNING)
    sizes = [int(s) for s in args.sizes.split(",")]
    trio.run(main, sizes, args.online, args.batch)


if __name__ == "__main__":
    cli()
