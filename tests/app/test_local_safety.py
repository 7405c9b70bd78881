"""What other users and other peers cannot do to a node on this machine: reach its control
socket, use a data dir open to them, or push the members of its groups out of ``peers.json``.
127.0.0.1 only."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from p2pchat.app.control import ControlError, Emit, serve_control
from p2pchat.app.daemon import NodeOptions, open_daemon
from p2pchat.app.datadir import DataDirError, control_socket_path, ensure_data_dir, peers_path
from p2pchat.discovery.bootstrap import MAX_KNOWN_PEERS, MAX_KNOWN_STRANGERS, KnownPeers
from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr

pytestmark = pytest.mark.timeout(60)

LOOPBACK = (Multiaddr.from_string("/ip4/127.0.0.1/tcp/0"),)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# -- the control socket ------------------------------------------------------------------------


async def test_the_control_socket_is_0600_in_a_directory_closed_to_others(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    with trio.fail_after(30):
        async with open_daemon(NodeOptions(data_dir=data_dir, listen=LOOPBACK)):
            sock = control_socket_path(data_dir)
            assert stat.S_ISSOCK(sock.lstat().st_mode)
            assert mode(sock) == 0o600
            assert mode(sock.parent) & 0o077 == 0
    assert not sock.exists()


async def answer(request: dict[str, object], emit: Emit) -> object:
    return {}


async def test_no_control_socket_is_served_from_a_directory_open_to_others(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with trio.fail_after(10), pytest.raises(ControlError, match="chmod 700"):
        await serve_control(control_socket_path(shared), answer)  # refused before it binds
    assert not control_socket_path(shared).exists()


# -- the data dir --------------------------------------------------------------------------------


def p2pchat(*args: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    def set_umask() -> None:
        if umask is not None:
            import os

            os.umask(umask)

    return subprocess.run(
        [sys.executable, "-m", "p2pchat", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        preexec_fn=set_umask,
    )


def test_a_data_dir_open_to_others_is_refused_in_one_line_naming_the_fix(tmp_path: Path) -> None:
    data_dir = tmp_path / "open"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    with pytest.raises(DataDirError, match=r"mode 755\); fix it with: chmod 700 "):
        ensure_data_dir(data_dir)
    done = p2pchat("--data-dir", str(data_dir), "init")
    assert done.returncode == 1
    assert done.stderr == (
        f"p2pchat: error: data dir {data_dir} is open to other users (mode 755); "
        f"fix it with: chmod 700 {data_dir}\n"
    )
    assert list(data_dir.iterdir()) == []  # no key was written into it
    assert mode(data_dir) == 0o755  # not changed behind the user's back
    data_dir.chmod(0o700)
    assert p2pchat("--data-dir", str(data_dir), "init").returncode == 0


def test_a_data_dir_we_create_is_0700_whatever_the_umask(tmp_path: Path) -> None:
    data_dir = tmp_path / "new"
    done = p2pchat("--data-dir", str(data_dir), "init", umask=0)
    assert done.returncode == 0, done.stderr
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "identity.key") == 0o600


# -- known peers ---------------------------------------------------------------------------------


def peer(n: int) -> PeerID:
    return KeyPair.from_seed(n.to_bytes(32, "big")).peer_id


def addr(n: int) -> list[Multiaddr]:
    return [Multiaddr.from_string(f"/ip4/127.0.0.1/tcp/{1000 + n}")]


def test_300_strangers_leave_the_group_members_in_place_and_the_file_bounded(
    tmp_path: Path,
) -> None:
    path = tmp_path / "peers.json"
    known = KnownPeers(path, max_strangers=MAX_KNOWN_STRANGERS)
    members = [peer(1), peer(2)]
    known.set_members(members)
    for n, member in enumerate(members):
        known.update(member, addr(n), n)  # seen long ago
    strangers = [peer(100 + n) for n in range(300)]
    for n, stranger in enumerate(strangers):
        known.update(stranger, addr(100 + n), 1000 + n)  # every one newer than the members
    known.save()
    saved = json.loads(path.read_text())["peers"]
    assert len(saved) == len(members) + MAX_KNOWN_STRANGERS <= MAX_KNOWN_PEERS
    assert [p["peer_id"] for p in saved[:2]] == [str(members[1]), str(members[0])]
    # the strangers kept are the most recently seen
    assert [p["peer_id"] for p in saved[2:]] == [str(s) for s in strangers[::-1][:64]]
    loaded = KnownPeers.load(path).peers()
    assert {p.peer_id for p in loaded} >= set(members)


def test_without_members_named_the_most_recent_peers_are_kept(tmp_path: Path) -> None:
    known = KnownPeers(tmp_path / "peers.json", max_strangers=MAX_KNOWN_STRANGERS)
    for n in range(100):
        known.update(peer(n), addr(n), n)
    assert len(known.peers()) == 100  # nothing to protect yet: strangers are not trimmed
    known.set_members([peer(0)])
    kept = known.peers()
    assert [p.peer_id for p in kept][:2] == [peer(0), peer(99)]
    assert len(kept) == 1 + MAX_KNOWN_STRANGERS


async def test_the_node_keeps_its_group_members_in_peers_json_before_strangers(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "alice"
    options = NodeOptions(data_dir=data_dir, listen=LOOPBACK, control=False)
    bob_options = NodeOptions(data_dir=tmp_path / "bob", listen=LOOPBACK, control=False)
    with trio.fail_after(30):
        async with open_daemon(options) as alice, open_daemon(bob_options) as bob:
            group_id = await alice.chat.create_group("friends")
            await alice.chat.invite(group_id, bob.host.addrs[0], "user")
            member = bob.peer_id
    # A file full of newer strangers, as 300 fresh identities connecting would leave it.
    entries = [{"peer_id": str(member), "addrs": ["/ip4/127.0.0.1/tcp/9"], "last_seen": 1}]
    entries += [
        {"peer_id": str(peer(n)), "addrs": [str(addr(n)[0])], "last_seen": 1000 + n}
        for n in range(300)
    ]
    peers_path(data_dir).write_text(json.dumps({"version": 1, "peers": entries}))
    with trio.fail_after(30):
        async with open_daemon(options) as alice:
            listed = alice.known_peers.peers()
            assert listed[0].peer_id == member
            assert len(listed) == 1 + MAX_KNOWN_STRANGERS
    saved = KnownPeers.load(peers_path(data_dir)).peers()
    assert len(saved) == 1 + MAX_KNOWN_STRANGERS
    assert member in {p.peer_id for p in saved}
