"""DCUtR on loopback hosts: a relayed connection is upgraded to a direct one, which the Host then
prefers, and the relayed one closes; the exchange follows the spec's messages."""

from __future__ import annotations

import time

import pytest
import trio

from p2pchat.identity import KeyPair
from p2pchat.net.dcutr import DCUtRConfig, open_dcutr
from p2pchat.net.host import open_host
from p2pchat.net.ping import open_ping
from p2pchat.net.relay import is_relayed, open_relay_client, open_relay_service

pytestmark = pytest.mark.timeout(60)


async def test_relayed_connection_is_upgraded_to_a_direct_one() -> None:
    config = DCUtRConfig(grace=0.2)
    async with (
        open_host(KeyPair.generate()) as r,
        open_relay_service(r),
        open_host(KeyPair.generate()) as a_host,
        open_relay_client(a_host) as a,
        open_dcutr(a_host, config) as a_dcutr,
        open_host(KeyPair.generate()) as b_host,
        open_relay_client(b_host),
        open_dcutr(b_host, config),
    ):
        await a.reserve(r.addrs[0])
        circuit = a.book.circuit_addrs(time.time())[0].with_peer_id(a_host.peer_id)
        relayed = await b_host.connect(circuit)
        assert is_relayed(relayed.remote_addr)
        with trio.fail_after(30):
            await a_dcutr.done.wait()
            assert a_dcutr.stats.upgraded == 1
            await relayed.wait_closed()  # after the grace period
        direct = b_host.connection(a_host.peer_id)
        assert direct is not None
        assert not is_relayed(direct.remote_addr)
        async with open_ping(b_host, a_host.peer_id) as pinger:
            assert await pinger.ping() >= 0
