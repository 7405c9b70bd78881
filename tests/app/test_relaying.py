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

from p2pchat.app.config import ConfigError, parse_config
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
    assert options.relay.auto_relays == 2
    assert parse_config("[relay]\nauto_relays = 0").relay_auto == 0
    with pytest.raises(ConfigError):
        parse_config("[relay]\nauto_relays = 9")


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


async def test_a_private_node_reserves_on_a_relay_by_itself(tmp_path: Path) -> None:
    """No ``[relay] reserve``: the member listens on 127.0.0.2 and its connections come from
    127.0.0.1, so AutoNAT says private; it reserves on the one peer that speaks hop, advertises
    the circuit address, and another node reaches it there. The relay, with the DHT on,
    provides the relay key."""
    from p2pchat.net.autorelay import RELAY_KEY
    from p2pchat.net.identify import identify_peer
    from p2pchat.protocols.autonat import ReachabilityStatus

    def options(name: str, relay: RelayOptions, **internet: object) -> NodeOptions:
        listen = "127.0.0.2" if name == "m" else "127.0.0.1"
        return NodeOptions(
            data_dir=tmp_path / name,
            listen=(Multiaddr.from_string(f"/ip4/{listen}/tcp/0"),),
            internet=InternetOptions(autonat=True, **internet),  # type: ignore[arg-type]
            relay=relay,
        )

    with trio.fail_after(80):
        async with open_daemon(
            options("r", RelayOptions(serve=True), dht=True, dht_mode="server")
        ) as r:
            boot = {"dht": True, "dht_mode": "server", "dht_bootstrap": (r.host.addrs[0],)}
            async with (
                open_daemon(options("s1", RelayOptions(), **boot)) as s1,
                open_daemon(options("s2", RelayOptions())) as s2,
                open_daemon(options("m", RelayOptions(dcutr=False))) as m,
                open_daemon(options("c", RelayOptions(dcutr=False))),
                open_control(tmp_path / "m") as cm,
                open_control(tmp_path / "c") as cc,
            ):
                assert s1.internet is not None
                assert s1.internet.dht is not None
                await s1.internet.dht.bootstrapped.wait()
                providers = await s1.internet.dht.providers(RELAY_KEY)
                assert [p.peer for p in providers] == [r.peer_id]

                assert m.internet is not None
                assert m.internet.autonat is not None
                assert m.internet.autorelay is not None
                for server in (r, s1, s2):
                    await identify_peer(m.host, await m.host.connect(server.host.addrs[0]))
                assert await m.internet.autonat.probe() is ReachabilityStatus.PRIVATE
                circuit = (await _reserved(m))[0].with_peer_id(m.peer_id)
                assert circuit.value_for("p2p") == str(r.peer_id)
                status = await cm.call("status")
                assert [h["relay"] for h in status["relay"]["reservations"]] == [str(r.peer_id)]
                assert status["reachability"] == "private"

                await cc.call("connect", peer=str(circuit))
                peers = (await cc.call("peers"))["connected"]
                entry = [p for p in peers if p["peer_id"] == str(m.peer_id)]
                assert [p["via"] for p in entry] == ["relayed"]
