"""The node with ``[relay]``: a relay node, a member that reserves on it, another member that
reaches the first only through it; they form a group and ratify a message over the relayed
connection; ``status`` shows the reservation and ``peers`` says the connection is relayed.
127.0.0.1 only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from p2pchat.app.config import parse_config
from p2pchat.app.control import open_control
from p2pchat.app.daemon import Daemon, NodeOptions, open_daemon
from p2pchat.app.internet import InternetOptions
from p2pchat.app.relaying import RelayOptions
from p2pchat.multiaddr import Multiaddr

pytestmark = pytest.mark.timeout(90)

LOOPBACK = (Multiaddr.from_string("/ip4/127.0.0.1/tcp/0"),)


@asynccontextmanager
async def running(data_dir: Path, relay: RelayOptions) -> AsyncIterator[Daemon]:
    options = NodeOptions(
        data_dir=data_dir,
        listen=LOOPBACK,
        internet=InternetOptions(autonat=False),
        relay=relay,
    )
    async with open_daemon(options) as daemon:
        yield daemon


async def _reserved(daemon: Daemon) -> list[Multiaddr]:
    """The node's circuit addresses, once its first reservation holds (bounded wait)."""
    for _ in range(200):
        circuits = [a for a in daemon.host.advertised_addrs if "p2p-circuit" in str(a)]
        if circuits:
            return circuits
        await trio.sleep(0.05)
    raise AssertionError("no reservation within 10 s")


def test_relay_section_is_read() -> None:
    peer = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"
    config = parse_config(
        "[relay]\nenabled = true\nclient = false\nhole_punch = true\n"
        f'reserve = ["/ip4/127.0.0.1/tcp/1/p2p/{peer}"]'
    )
    assert (config.relay, config.relay_client, config.relay_hole_punch) == (True, False, True)
    assert [str(a) for a in config.relay_reserve] == [f"/ip4/127.0.0.1/tcp/1/p2p/{peer}"]
    options = NodeOptions.from_config(Path("x"), config)
    assert options.relay.serve
    assert options.relay.hole_punch
    assert parse_config("").relay is False  # not a relay unless asked


@pytest.mark.parametrize("dcutr", [False, True])
async def test_members_ratify_over_a_relayed_connection(tmp_path: Path, dcutr: bool) -> None:
    """Without DCUtR the members stay relayed; with it (on loopback nothing is in the way) the
    connection becomes direct and the relayed one closes."""
    with trio.fail_after(80):
        async with running(tmp_path / "r", RelayOptions(serve=True)) as r:
            reserve = RelayOptions(reserve=(r.host.addrs[0],), dcutr=dcutr)
            async with (
                running(tmp_path / "a", reserve) as a,
                running(tmp_path / "b", RelayOptions(dcutr=dcutr)) as b,
                open_control(tmp_path / "a") as ca,
                open_control(tmp_path / "b") as cb,
                open_control(tmp_path / "r") as cr,
            ):
                circuit = (await _reserved(a))[0].with_peer_id(a.peer_id)
                status = await ca.call("status")
                assert [h["relay"] for h in status["relay"]["reservations"]] == [str(r.peer_id)]
                relay_status = await cr.call("status")
                assert relay_status["relay"]["serving"]
                assert relay_status["relay"]["reserved_here"] == 1

                await cb.call("connect", peer=str(circuit))
                created = await ca.call("group.create", name="behind-nat")
                await ca.call("group.invite", group=created["group_id"], peer=str(b.peer_id))
                await cb.call("group.join", group=created["group_id"], via=str(circuit))
                sent = await cb.call("send", group=created["group_id"], text="through the relay")
                assert sent["status"] == "ratified"
                for _ in range(200):  # the certificate reaches a with smsg, soon after
                    history = await ca.call("history", group=created["group_id"])
                    if "through the relay" in [m.get("text") for m in history]:
                        break
                    await trio.sleep(0.05)
                else:
                    raise AssertionError("a never got the ratified message")

                if dcutr:
                    for _ in range(200):  # the relayed connection closes after its grace
                        if (await cr.call("status"))["relay"]["circuits"] == 0:
                            break
                        await trio.sleep(0.05)
                    punches = (await ca.call("status"))["relay"]["hole_punches"]
                    assert punches == {"upgraded": 1, "failed": 0}
                for client, other in ((cb, a), (ca, b)):
                    peers = (await client.call("peers"))["connected"]
                    entry = [p for p in peers if p["peer_id"] == str(other.peer_id)]
                    assert [p["via"] for p in entry] == ["direct" if dcutr else "relayed"]
                assert (await cr.call("status"))["relay"]["circuits"] == (0 if dcutr else 1)
                again = await cb.call("send", group=created["group_id"], text="and after")
                assert again["status"] == "ratified"
