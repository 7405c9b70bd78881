"""A cluster of chat nodes on 127.0.0.1 for the ChatNode tests: start, stop, restart."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import attrs
import trio

from chat.crash import CrashingStore, SimulatedCrashError
from p2pchat.chat.artifacts import ArtifactConfig
from p2pchat.chat.core import crypto
from p2pchat.chat.core.packet import (
    Artifact,
    Certificate,
    Headers,
    Message,
    Packet,
    make_vote,
    sha256,
    sign_message,
)
from p2pchat.chat.core.roster import History, Role
from p2pchat.chat.node import RECORDS_FILE, ChatConfig, ChatNode, open_chat_node
from p2pchat.chat.store import ChatStore, open_store
from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import Host, HostConfig, open_host
from p2pchat.net.peerstore import PERMANENT

CONFIG = ChatConfig(
    query_timeout=2.0, send_timeout=3.0, retry_initial=0.05, retry_max=0.5, sync_interval=0.5
)
#: CONFIG for the artifact tests: no disk reserve, short waits on votes and stalled fetches,
#: and time to send a large artifact.
FAST_ARTIFACTS = attrs.evolve(
    CONFIG,
    send_timeout=30.0,
    artifacts=ArtifactConfig(disk_reserve=0, vote_wait=0.5, stall_timeout=3.0),
)


@attrs.define(eq=False)
class Peer:
    """One node: its identity and data dir survive restarts; its port too."""

    name: str
    data_dir: Path
    identity: KeyPair
    cluster: Cluster
    port: int = 0
    _chat: ChatNode | None = None
    _scope: trio.CancelScope | None = None
    _stopped: trio.Event = attrs.Factory(trio.Event)
    #: Wraps the node's store (the crash-point tests give each start its own wrapper).
    wrap_store: Callable[[ChatStore], CrashingStore] | None = None
    #: The node's configuration (the cluster's ``CONFIG`` when None).
    config: ChatConfig | None = None

    @property
    def peer_id(self) -> PeerID:
        return self.identity.peer_id

    @property
    def chat(self) -> ChatNode:
        assert self._chat is not None, f"{self.name} is not running"
        return self._chat

    @property
    def addr(self) -> Multiaddr:
        return Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/{self.port}/p2p/{self.peer_id}")

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listen = Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/{self.port}")
        self._stopped = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                async with (
                    open_host(self.identity, HostConfig(listen=(listen,))) as host,
                    open_store(self.data_dir) as store,
                ):
                    port = host.listen_addrs[0].value_for("tcp")
                    assert port is not None
                    self.port = int(port)
                    self.cluster.introduce(self, host)
                    if self.wrap_store is None:
                        config = CONFIG if self.config is None else self.config
                        async with open_chat_node(
                            host, store, config, records_path=self.data_dir / RECORDS_FILE
                        ) as chat:
                            self._chat = chat
                            task_status.started()
                            await trio.sleep_forever()
                    else:
                        await self._run_crashing(host, self.wrap_store(store), task_status)
        finally:
            self._chat = None
            self._stopped.set()

    async def _run_crashing(
        self, host: Host, store: CrashingStore, task_status: trio.TaskStatus[None]
    ) -> None:
        """Run the node until its store crashes; then it is gone, as a killed process is."""
        started = False
        try:
            async with trio.open_nursery() as nursery:

                async def die() -> None:
                    await store.crashed.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(die)
                async with open_chat_node(
                    host,
                    cast(ChatStore, store),
                    CONFIG,
                    records_path=self.data_dir / RECORDS_FILE,
                ) as chat:
                    self._chat = chat
                    task_status.started()
                    started = True
                    await trio.sleep_forever()
        except* SimulatedCrashError:
            pass
        if not started:
            task_status.started()

    async def start(self) -> None:
        await self.cluster.nursery.start(self._run)

    async def stop(self) -> None:
        assert self._scope is not None
        self._scope.cancel()
        await self._stopped.wait()


@attrs.define(eq=False)
class Cluster:
    nursery: trio.Nursery
    root: Path
    peers: list[Peer] = attrs.Factory(list)
    #: With a hub, each peer is told only where the hub is (and the hub where each peer is):
    #: the star a new user makes by bootstrapping every node to the owner.
    hub: str | None = None

    def add(self, name: str) -> Peer:
        peer = Peer(name, self.root / name, KeyPair.generate(), self)
        self.peers.append(peer)
        return peer

    def introduce(self, peer: Peer, host: object) -> None:
        """Tell the new host where everyone is, and everyone where it is (the discovery that a
        later layer does)."""
        from p2pchat.net.host import Host

        assert isinstance(host, Host)
        now = trio.current_time()
        for other in self.peers:
            if other is peer or other.port == 0:
                continue
            if self.hub is not None and self.hub not in (peer.name, other.name):
                continue
            host.peer_store.add_addrs(other.peer_id, [other.addr], PERMANENT, now)
            if other._chat is not None:
                other._chat.host.peer_store.add_addrs(peer.peer_id, [peer.addr], PERMANENT, now)


@asynccontextmanager
async def open_cluster(
    root: Path, *names: str, start: bool = True, hub: str | None = None
) -> AsyncIterator[Cluster]:
    """Peers named ``names`` on 127.0.0.1, started in order (unless ``start`` is false); with
    ``hub``, each knows only where the hub is."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, root, hub=hub)
        for name in names:
            cluster.add(name)
        for peer in cluster.peers if start else ():
            await peer.start()
        yield cluster
        nursery.cancel_scope.cancel()


async def build_group(
    owner: Peer, members: list[tuple[Peer, Role]], *, history: History = "all"
) -> bytes:
    """``owner`` creates a group and invites ``members`` in order; each joins at once."""
    group_id = await owner.chat.create_group("test group", history=history)
    for peer, role in members:
        await owner.chat.invite(group_id, peer.peer_id, role)
        await peer.chat.join(group_id, owner.peer_id)
    return group_id


def crafted(
    author: Peer,
    owner: Peer,
    group_id: bytes,
    text: bytes,
    *,
    epoch: int | None = None,
    parents: tuple[bytes, ...] | None = None,
    time_stamp: int | None = None,
) -> Packet:
    """A signed text packet by ``author``, made outside its node: of the current epoch unless
    ``epoch`` is given, encrypted with the epoch key ``owner`` holds, on ``owner``'s heads unless
    ``parents`` are given, stamped now unless ``time_stamp`` is given."""
    view = owner.chat.view(group_id)
    epoch = view.state.current_epoch if epoch is None else epoch
    sealed = crypto.encrypt_artifact(
        text,
        epoch_key=view.epoch_keys[epoch],
        group_id=group_id,
        epoch=epoch,
        author=author.peer_id,
    )
    artifact = Artifact(
        "text/plain", sealed.data, sha256(sealed.data), sha256(sealed.aes_key + sealed.iv)
    )
    message = Message(
        group_id,
        epoch,
        "text",
        time.time_ns() // 1_000_000 if time_stamp is None else time_stamp,
        author.peer_id,
        None,
        view.heads.heads() if parents is None else parents,
        Headers(),
        artifact,
    )
    return sign_message(author.identity, message, sealed.aes_key, sealed.iv)


def certified(packet: Packet, *ratifiers: Peer) -> Packet:
    """``packet`` with a certificate of the votes of ``ratifiers`` in its epoch."""
    message = packet.message
    votes = sorted(
        (
            make_vote(r.identity, message.group_id, message.epoch, packet.message_hash)
            for r in ratifiers
        ),
        key=lambda v: v.ratifier.to_bytes(),
    )
    return packet.with_certificate(Certificate(message.epoch, tuple(votes)))


async def stored(peer: Peer, group_id: bytes, message_hash: bytes) -> Packet:
    """The packet ``peer`` holds in its store (ratified or pending), with its certificate."""
    row = await peer.chat.store.get_message(group_id, message_hash)
    assert row is not None
    return Packet.decode(row.packet_with_certificate())
