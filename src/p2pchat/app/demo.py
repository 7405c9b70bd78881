"""The three-node demo behind ``p2pchat demo`` and ``make demo`` (specs/cli.md "Demo").

Three in-process nodes (full daemons without a control socket) on 127.0.0.1, data dirs in a
temporary directory: a group, ratified messages, one node stopped and catching up after its
restart on the same data dir and port. It narrates each step on stdout.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Final

import trio

from ..chat.node import ChatConfig
from ..cli.sanitize import terminal_text
from ..multiaddr import Multiaddr
from .daemon import Daemon, NodeOptions, open_daemon

DEMO_TIMEOUT: Final = 90.0


class _DemoNode:
    """One in-process node of the demo, restartable on the same data dir and port."""

    def __init__(self, name: str, root: Path, nursery: trio.Nursery) -> None:
        self.name = name
        self.data_dir = root / name
        self._nursery = nursery
        self.port = 0
        self.bootstrap: tuple[Multiaddr, ...] = ()
        self.daemon: Daemon | None = None
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()

    @property
    def node(self) -> Daemon:
        """The running node.

        Raises:
            RuntimeError: it is not running.
        """
        if self.daemon is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.daemon

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        options = NodeOptions(
            data_dir=self.data_dir,
            listen=(Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/{self.port}"),),
            bootstrap=self.bootstrap,
            chat=ChatConfig(query_timeout=3.0, retry_initial=0.2, retry_max=2.0),
            control=False,
        )
        self._stopped = trio.Event()
        try:
            with trio.CancelScope() as self._scope:
                async with open_daemon(options) as daemon:
                    self.daemon = daemon
                    self.port = int(daemon.host.listen_addrs[0].value_for("tcp") or 0)
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            self.daemon = None
            self._stopped.set()

    async def start(self) -> None:
        """Start the node (on its previous port, after a stop) and wait until it listens."""
        await self._nursery.start(self._run)

    async def stop(self) -> None:
        """Stop the node and wait until it has shut down."""
        if self._scope is not None:
            self._scope.cancel()
        await self._stopped.wait()


def _say(text: str = "") -> None:
    print(text, flush=True)


async def _demo_send(alice: _DemoNode, group_id: bytes, text: str) -> bytes:
    node = alice.node
    _say(f'    {alice.name} sends "{text}"')
    async with node.chat.subscribe(group_id) as updates:
        start = trio.current_time()
        message_hash = await node.chat.send(group_id, text, wait=False)
        async for update in updates:
            if update.message_hash != message_hash:
                continue
            if not update.ratified:
                _say(f"      {alice.name}: pending (stored, asking the ratifiers for votes)")
                continue
            ms = (trio.current_time() - start) * 1e3
            votes = await node.votes(group_id, message_hash)
            roster = node.chat.group_state(group_id).current_roster
            _say(
                f"      {alice.name}: ratified in {ms:.0f} ms, certificate of {votes} votes "
                f"(quorum {roster.quorum} of {len(roster.ratifiers)} ratifiers)"
            )
            break
    return message_hash


async def demo(root: Path) -> None:
    """The demo's steps, with data dirs under ``root``, narrated on stdout."""
    async with trio.open_nursery() as nursery:
        alice, bob, carol = (_DemoNode(n, root, nursery) for n in ("alice", "bob", "carol"))
        nodes = (alice, bob, carol)
        _say("[1] three nodes start on 127.0.0.1, each with its own data dir and identity")
        await alice.start()
        alice_addr = alice.node.host.addrs[0]
        bob.bootstrap = carol.bootstrap = (alice_addr,)
        await bob.start()
        await carol.start()
        names = {str(n.node.peer_id): n.name for n in nodes}
        for n in nodes:
            _say(f"    {n.name:<6} {n.node.host.addrs[0]}")
        _say("    bob and carol have alice's address as a bootstrap entry")
        with trio.fail_after(10):
            for n in (bob, carol):  # joins the dial their bootstrap task started
                await n.node.host.connect(alice.node.peer_id)
        _say("    alice is connected to bob and carol")

        _say()
        _say('[2] alice creates the group "demo" and invites bob and carol as ratifiers')
        group_id = await alice.node.chat.create_group("demo")
        _say(f"    group id {group_id.hex()}")
        for n in (bob, carol):
            await alice.node.chat.invite(group_id, n.node.peer_id, "ratifier")
            await n.node.chat.join(group_id, alice.node.peer_id)
            roster = alice.node.chat.group_state(group_id).current_roster
            _say(
                f"    {n.name} joined: epoch {roster.epoch}, {len(roster.ratifiers)} ratifiers, "
                f"quorum {roster.quorum}"
            )

        _say()
        _say("[3] a message counts as sent only once a quorum of ratifiers signed for it")
        first = await _demo_send(alice, group_id, "hello from alice")
        for n in (bob, carol):
            with trio.fail_after(10):
                await n.node.chat.wait_ratified(group_id, first)
            _say(f"      {n.name} received it, with its certificate")

        _say()
        _say("[4] carol stops; alice and bob are still a quorum (2 of 3)")
        await carol.stop()
        away = [
            await _demo_send(alice, group_id, text)
            for text in ("carol is away", "she will catch up when she is back")
        ]

        _say()
        _say("[5] carol restarts on the same data dir: same identity, groups and history;")
        _say("    she redials the peers she knew and syncs what she missed")
        await carol.start()
        with trio.fail_after(20):
            for message_hash in away:
                await carol.node.chat.wait_ratified(group_id, message_hash)
        for message in await carol.node.chat.history(group_id):
            if message.message_type == "roster":
                continue
            who = names.get(str(message.author), str(message.author))
            _say(f"    carol's history: {who}: {terminal_text(message.text, multiline=True)}")

        histories = [[m.message_hash for m in await n.node.chat.history(group_id)] for n in nodes]
        same = all(h == histories[0] for h in histories)
        _say()
        _say(
            f"[6] done: {len(histories[0])} messages (roster changes included), "
            + ("in the same order on all three nodes" if same else "BUT THE ORDERS DIFFER")
        )
        nursery.cancel_scope.cancel()


async def run_demo() -> None:
    """The demo in a temporary directory, removed at the end.

    Raises:
        trio.TooSlowError: it did not finish within :data:`DEMO_TIMEOUT` seconds.
    """
    with tempfile.TemporaryDirectory(prefix="p2pchat-demo-") as root:
        _say(f"p2pchat demo (data dirs under {root}, removed at the end)")
        _say()
        with trio.fail_after(DEMO_TIMEOUT):
            await demo(Path(root))
