"""Bounded resources for every peer (specs/host.md "Resource limits", specs/yamux.md "Bounded
output"): a ping flood, one address taking every slot, idle handshakes. Loopback only."""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable

import pytest
import trio

from p2pchat.identity import KeyPair, PeerID
from p2pchat.net.host import Host, HostConfig, open_host
from p2pchat.net.muxer import MuxedConnection
from p2pchat.net.negotiate import negotiate_outbound
from p2pchat.net.ping import PROTOCOL_ID as PING
from p2pchat.net.ping import open_ping
from p2pchat.net.resources import ResourceLimitError, ResourceLimits, ResourceManager
from p2pchat.net.secure import dial_secure
from p2pchat.net.upgrade import upgrade
from p2pchat.protocols import multistream as ms
from p2pchat.protocols import yamux

pytestmark = pytest.mark.timeout(90)


def _port(host: Host) -> int:
    return int(str(host.listen_addrs[0]).rsplit("/", 1)[1])


async def _wait_for(condition: object, what: str) -> None:
    assert callable(condition)
    with trio.fail_after(20):
        while not condition():  # noqa: ASYNC110 - usage figures have no event to wait on
            await trio.sleep(0.01)


# -- finding 1: a ping flood from a peer that never reads ----------------------------------------


async def test_ping_flood_without_reading_is_cut_off_while_an_honest_peer_pings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    # What the node may hold for the flooder in its yamux queue: the pongs owed, then GoAway.
    bound = (yamux.MAX_CONTROL_BACKLOG + 1) * yamux.HEADER_SIZE
    async with open_host(KeyPair.generate()) as server, open_host(KeyPair.generate()) as good:
        (addr,) = server.addrs
        attacker = KeyPair.generate()
        peak = 0

        async def flood() -> None:
            nonlocal peak
            secure = await dial_secure(addr, attacker, stream_muxers=[])
            async with secure:
                dialer = ms.Dialer(["/yamux/1.0.0"])
                await secure.send_all(dialer.data_to_send())
                while dialer.next_event() is ms.NEED_DATA:
                    dialer.receive_data(await secure.receive_some())
                pings = yamux.encode_header(yamux.FrameType.PING, yamux.Flag.SYN, 0, 1) * 4096
                try:
                    for _ in range(20_000):  # at most 1 GB; cut off long before
                        await secure.send_all(pings)
                        conn = server.connection(attacker.peer_id)
                        if conn is not None:
                            stats = conn.statistics()
                            peak = max(peak, stats.queued_bytes)
                            assert stats.queued_bytes <= bound
                except trio.BrokenResourceError:
                    return  # the node hung up on us: what we want
                pytest.fail("the node never cut the flooding connection off")

        async with open_ping(good, addr) as pinger:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                pongs = 0
                while pongs < 20:
                    await pinger.ping()
                    pongs += 1
            await pinger.ping()  # still fine after the flooder is gone
        assert server.connection(attacker.peer_id) is None
    assert peak <= bound
    reasons = " ".join(r.getMessage() for r in caplog.records)
    assert "control flood" in reasons, reasons


# -- finding 2: one address taking every connection slot ----------------------------------------


async def _raw_connect(
    server: Host, source_ip: str, identity: KeyPair | None = None
) -> MuxedConnection:
    """An upgraded connection to ``server`` from ``source_ip``, for the caller to run."""
    tcp = await trio.open_tcp_stream("127.0.0.1", _port(server), local_address=source_ip)
    identity = identity if identity is not None else KeyPair.generate()
    return await upgrade(
        tcp, identity, outbound=True, expected_peer=server.peer_id, handshake_timeout=10
    )


async def test_one_address_with_300_connections_leaves_room_for_honest_peers_and_our_dials() -> (
    None
):
    config = HostConfig(
        limits=ResourceLimits(max_connections=16, reserved_slots=4, eviction_grace=0.0)
    )
    async with (
        open_host(KeyPair.generate(), config) as server,
        open_host(KeyPair.generate()) as friend,
        trio.open_nursery() as nursery,
    ):
        # 14 upgraded connections from 127.0.0.1 fill the 12 inbound slots.
        attackers = []
        for _ in range(14):
            conn = await _raw_connect(server, "127.0.0.1")
            await nursery.start(conn.run)
            attackers.append(conn)
        await _wait_for(lambda: server.resource_usage().connections >= 12, "attackers admitted")
        # Then 300 idle sockets from the same address, which never start a handshake.
        idle = []
        for _ in range(300):
            idle.append(await trio.open_tcp_stream("127.0.0.1", _port(server)))
        await _wait_for(lambda: server.resource_usage().refused >= 292, "idle sockets refused")
        usage = server.resource_usage()
        assert usage.handshakes <= usage.limits.max_handshakes_per_ip
        assert usage.inbound <= 12

        # An honest peer on another address still gets in, and pings.
        honest_id = KeyPair.generate()
        honest = await _raw_connect(server, "127.0.0.2", honest_id)
        await nursery.start(honest.run)
        stream = await honest.open_stream()
        await negotiate_outbound(stream, [PING])
        payload = os.urandom(32)
        await stream.send_all(payload)
        echoed = b""
        with trio.fail_after(10):
            while len(echoed) < 32:
                echoed += await stream.receive_some()
        assert echoed == payload
        await stream.aclose()
        await _wait_for(lambda: honest_id.peer_id in server.connected_peers(), "honest admitted")

        # The node dials a protected peer: the reserved slots are its.
        server.protect(friend.peer_id)
        assert server.is_protected(friend.peer_id)
        conn = await server.connect(friend.addrs[0])
        assert not conn.is_closed
        assert await conn.ping() >= 0
        usage = server.resource_usage()
        assert usage.outbound == 1
        assert usage.connections <= 16
        assert usage.inbound <= 12
        assert usage.evicted >= 1

        for sock in idle:
            await trio.aclose_forcefully(sock)
        for c in [*attackers, honest]:
            await c.aclose()
        nursery.cancel_scope.cancel()


# -- finding 2b: handshakes in flight ---------------------------------------------------------


async def test_handshakes_in_flight_are_capped_in_all_and_per_address() -> None:
    config = HostConfig(limits=ResourceLimits(max_handshakes=4, max_handshakes_per_ip=2))
    async with open_host(KeyPair.generate(), config) as server:
        sockets = []
        for ip in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
            for _ in range(3):
                sockets.append(
                    await trio.open_tcp_stream("127.0.0.1", _port(server), local_address=ip)
                )
        await _wait_for(
            lambda: server.resource_usage().handshakes + server.resource_usage().refused == 9,
            "every socket accepted",
        )
        usage = server.resource_usage()
        assert usage.handshakes == 4
        assert usage.refused == 5
        for sock in sockets:
            await trio.aclose_forcefully(sock)
        await _wait_for(lambda: server.resource_usage().handshakes == 0, "handshakes released")


# -- the resource manager alone -----------------------------------------------------------------


def _no_streams(key: Hashable) -> int:
    return 0


def _peer() -> PeerID:
    return KeyPair.generate().peer_id


def test_eviction_takes_the_crowded_idle_oldest_unprotected_inbound_connection() -> None:
    manager = ResourceManager(ResourceLimits(max_connections=4, reserved_slots=0, eviction_grace=0))
    streams: dict[Hashable, int] = {"a1": 0, "a2": 3, "b1": 0, "p": 0}
    in_use = streams.__getitem__
    protected = _peer()
    manager.protect(protected)
    assert (
        manager.add_connection(
            "p", peer=protected, ip="10.0.0.9", outbound=False, now=0, open_streams=in_use
        )
        is None
    )
    for key, ip in (("a1", "10.0.0.1"), ("a2", "10.0.0.1"), ("b1", "10.0.0.2")):
        assert (
            manager.add_connection(
                key, peer=_peer(), ip=ip, outbound=False, now=1, open_streams=in_use
            )
            is None
        )
    # Full: the newcomer takes the slot of the idle connection from the crowded address.
    victim = manager.add_connection(
        "new", peer=_peer(), ip="10.0.0.3", outbound=False, now=2, open_streams=in_use
    )
    assert victim == "a1"
    usage = manager.usage()
    assert usage.connections == 4
    assert usage.evicted == 1


def test_new_inbound_connections_are_safe_from_inbound_newcomers_during_grace() -> None:
    manager = ResourceManager(
        ResourceLimits(max_connections=2, reserved_slots=0, eviction_grace=10)
    )
    for key in ("a", "b"):
        manager.add_connection(
            key, peer=_peer(), ip="10.0.0.1", outbound=False, now=0, open_streams=_no_streams
        )
    with pytest.raises(ResourceLimitError) as info:
        manager.add_connection(
            "c", peer=_peer(), ip="10.0.0.2", outbound=False, now=5, open_streams=_no_streams
        )
    assert info.value.scope == "system"
    # Our own dial may still take a slot.
    assert manager.add_connection(
        "d", peer=_peer(), ip=None, outbound=True, now=5, open_streams=_no_streams
    ) in ("a", "b")


def test_reserved_slots_are_for_dials_and_protected_peers_and_the_per_peer_limit_holds() -> None:
    manager = ResourceManager(
        ResourceLimits(max_connections=4, reserved_slots=2, max_per_peer=2, eviction_grace=10)
    )
    peer = _peer()
    for key in ("a", "b"):
        manager.add_connection(
            key, peer=peer, ip="10.0.0.1", outbound=False, now=0, open_streams=_no_streams
        )
    with pytest.raises(ResourceLimitError) as info:
        manager.add_connection(
            "c", peer=peer, ip=None, outbound=True, now=0, open_streams=_no_streams
        )
    assert info.value.scope == "peer"
    with pytest.raises(ResourceLimitError):
        manager.add_connection(
            "c", peer=_peer(), ip="10.0.0.2", outbound=False, now=0, open_streams=_no_streams
        )
    friend = _peer()
    manager.protect(friend)
    assert (
        manager.add_connection(
            "f", peer=friend, ip="10.0.0.2", outbound=False, now=0, open_streams=_no_streams
        )
        is None
    )
    assert (
        manager.add_connection(
            "o", peer=_peer(), ip=None, outbound=True, now=0, open_streams=_no_streams
        )
        is None
    )
    assert manager.usage().connections == 4


def test_handshake_slots_per_address_and_in_all() -> None:
    manager = ResourceManager(ResourceLimits(max_handshakes=3, max_handshakes_per_ip=2))
    a1 = manager.open_handshake("10.0.0.1", now=0)
    manager.open_handshake("10.0.0.1", now=0)
    with pytest.raises(ResourceLimitError, match=r"10\.0\.0\.1"):
        manager.open_handshake("10.0.0.1", now=0)
    manager.open_handshake("10.0.0.2", now=0)
    with pytest.raises(ResourceLimitError) as info:
        manager.open_handshake("10.0.0.3", now=0)
    assert info.value.scope == "transient"
    manager.close_handshake(a1)
    manager.close_handshake(a1)  # idempotent
    assert manager.usage().handshakes == 2
    manager.open_handshake("10.0.0.3", now=0)


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_per_peer"):
        ResourceLimits(max_per_peer=0)
    with pytest.raises(ValueError, match="max_handshakes"):
        ResourceLimits(max_handshakes=0)
