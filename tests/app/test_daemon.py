"""The running node in process: its table of operations, requests through the control socket,
refusals in one line, ``stop``, and the known peers saved when it stops. 127.0.0.1 only."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from p2pchat.app.control import RemoteCommandError, open_control
from p2pchat.app.daemon import Daemon, NodeOptions, open_daemon
from p2pchat.app.datadir import peers_path
from p2pchat.app.operations import OPERATIONS
from p2pchat.discovery.bootstrap import KnownPeers
from p2pchat.multiaddr import Multiaddr

pytestmark = pytest.mark.timeout(60)

SPEC = Path(__file__).resolve().parents[2] / "specs" / "control.md"
LOOPBACK = (Multiaddr.from_string("/ip4/127.0.0.1/tcp/0"),)


@asynccontextmanager
async def running(data_dir: Path, *, control: bool = True) -> AsyncIterator[Daemon]:
    options = NodeOptions(data_dir=data_dir, listen=LOOPBACK, control=control)
    async with open_daemon(options) as daemon:
        yield daemon


def test_the_operations_table_is_the_specs_list() -> None:
    text = SPEC.read_text()
    section = text[text.index("## Operations") :]
    documented = set(re.findall(r"^\| `([a-z.]+)` \|", section, flags=re.MULTILINE))
    assert documented == set(OPERATIONS)


async def test_status_and_groups_through_the_control_socket(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running(tmp_path) as daemon, open_control(tmp_path) as client:
            status = await client.call("status")
            assert status["peer_id"] == str(daemon.peer_id)
            assert status["addrs"] == [str(a) for a in daemon.host.addrs]
            assert (status["connected"], status["groups"]) == (0, 0)
            created = await client.call("group.create", name="friends")
            listed = await client.call("group.list")
            assert [(g["group_id"], g["name"], g["role"]) for g in listed] == [
                (created["group_id"], "friends", "ratifier")
            ]
            assert (await client.call("status"))["groups"] == 1
            sent = await client.call("send", group="fri", text="hello")
            assert sent["status"] == "ratified"  # the owner alone is the quorum
            history = await client.call("history", group=created["group_id"][:8])
            assert [m.get("text") for m in history if m["type"] == "text"] == ["hello"]


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"op": "frobnicate"}, "unknown operation 'frobnicate'"),
        ({"op": "_op_status"}, "unknown operation '_op_status'"),
        ({"op": "handle"}, "unknown operation 'handle'"),
        ({"op": "history"}, "missing argument 'group'"),
        ({"op": "history", "group": "nothing"}, "no group 'nothing' on this node"),
        ({"op": "group.create", "name": "g", "history": "some"}, "history must be"),
        ({"op": "connect", "peer": "not-a-peer"}, "not a peer id or a multiaddr"),
    ],
)
async def test_a_bad_request_is_refused_in_one_line(
    tmp_path: Path, request_: dict[str, str], error: str
) -> None:
    with trio.fail_after(30):
        async with running(tmp_path), open_control(tmp_path) as client:
            op = request_.pop("op")
            with pytest.raises(RemoteCommandError) as info:
                await client.call(op, **request_)
            assert error in str(info.value)
            assert "\n" not in str(info.value)


async def test_stop_is_a_request_the_node_waits_on(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running(tmp_path) as daemon:
            assert not daemon.stop_requested.is_set()
            async with open_control(tmp_path) as client:
                assert await client.call("stop") == {}
            await daemon.stop_requested.wait()


async def test_the_peers_connected_at_stop_are_saved_and_loaded_at_the_next_start(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with running(tmp_path / "alice", control=False) as alice:
            async with running(tmp_path / "bob", control=False) as bob:
                await bob.host.connect(alice.host.addrs[0])
            saved = KnownPeers.load(peers_path(tmp_path / "bob"))
            assert [(p.peer_id, p.addrs) for p in saved.peers()] == [
                (alice.peer_id, (alice.host.addrs[0].without_peer_id(),))
            ]
            async with running(tmp_path / "bob", control=False) as bob:
                assert [p.peer_id for p in bob.known_peers.peers()] == [alice.peer_id]
                await bob.host.connect(alice.peer_id)  # by the address the file gave


async def test_a_member_who_is_not_the_owner_is_told_so_before_anything_else(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with (
            running(tmp_path / "alice") as alice,
            running(tmp_path / "bob") as bob,
            open_control(tmp_path / "bob") as client,
        ):
            group_id = await alice.chat.create_group("owned")
            await alice.chat.invite(group_id, bob.host.addrs[0], "user")
            await bob.chat.join(group_id, alice.peer_id)
            stranger = "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"  # no address known
            with pytest.raises(RemoteCommandError) as info:
                await client.call("group.invite", group=group_id.hex(), peer=stranger)
            assert str(info.value) == (
                f"only the group's owner can invite; its owner is {alice.peer_id}"
            )


async def test_connect_says_when_it_reuses_a_live_connection_instead_of_dialing(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with (
            running(tmp_path / "alice", control=False) as alice,
            running(tmp_path / "bob"),
            open_control(tmp_path / "bob") as client,
        ):
            first = await client.call("connect", peer=str(alice.host.addrs[0]))
            assert first == {"peer_id": str(alice.peer_id), "already_connected": False}
            nowhere = f"/ip4/127.0.0.1/tcp/9/p2p/{alice.peer_id}"  # nothing listens there
            again = await client.call("connect", peer=nowhere)
            assert again["already_connected"] is True
            assert again["via"] is not None
            assert str(alice.host.addrs[0]).startswith(again["via"])
