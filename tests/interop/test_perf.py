"""perf against py-libp2p 0.8.1 (its ``PerfService``), both directions.

py-libp2p runs as a subprocess in its own virtualenv (``make unit`` provides it); these tests
are skipped, with that reason, where it is absent.
"""

from __future__ import annotations

from typing import Final

import pytest

from conftest import PyLibp2p
from p2pchat.identity import KeyPair
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import open_host
from p2pchat.net.perf import PROTOCOL_ID, PerfLimits, install_perf, measure, run_perf

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

MIB: Final = 1024 * 1024
TEN_MIB: Final = 10 * MIB


@pytest.mark.parametrize(
    ("upload", "download"), [(TEN_MIB, TEN_MIB), (0, TEN_MIB), (TEN_MIB, 0), (0, 0)]
)
async def test_our_client_against_pylibp2p_server(
    pylibp2p: PyLibp2p, upload: int, download: int
) -> None:
    async with pylibp2p.listen() as peer, open_host(KeyPair.generate()) as host:
        assert PROTOCOL_ID in peer["protocols"]
        result = await run_perf(host, Multiaddr.from_string(peer["addrs"][0]), upload, download)
    # run_perf fails unless exactly ``download`` bytes came back before the end of stream.
    assert (result.upload_bytes, result.download_bytes) == (upload, download)
    assert not result.reused_connection
    assert result.total_s >= result.upload_s + result.download_s


async def test_our_client_repeats_on_one_pylibp2p_connection(pylibp2p: PyLibp2p) -> None:
    async with pylibp2p.listen() as peer, open_host(KeyPair.generate()) as host:
        results = await measure(
            host, Multiaddr.from_string(peer["addrs"][0]), upload=1, download=1, iterations=3
        )
    assert [r.reused_connection for r in results] == [False, True, True]


@pytest.mark.parametrize(
    ("upload", "download"), [(TEN_MIB, TEN_MIB), (0, TEN_MIB), (TEN_MIB, 0), (0, 0)]
)
async def test_pylibp2p_client_against_our_server(
    pylibp2p: PyLibp2p, upload: int, download: int
) -> None:
    async with open_host(KeyPair.generate()) as host:
        install_perf(host)
        status, out = await pylibp2p.run(
            "perf", str(host.addrs[0]), "--upload", str(upload), "--download", str(download)
        )
    assert status == 0, out
    assert out["event"] == "perf"
    assert out["peer_id"] == str(host.peer_id)
    # The script fails unless exactly ``download`` bytes came back before the end of stream.
    assert (out["upload_bytes"], out["download_bytes"]) == (upload, download)
    assert out["seconds"] >= out["upload_seconds"] >= 0


async def test_our_server_refuses_pylibp2p_beyond_the_limit(pylibp2p: PyLibp2p) -> None:
    async with open_host(KeyPair.generate()) as host:
        install_perf(host, PerfLimits(max_download_bytes=MIB))
        status, out = await pylibp2p.run(
            "perf", str(host.addrs[0]), "--upload", "0", "--download", str(MIB + 1)
        )
    assert status == 1
    assert out["event"] == "error"
    # py-libp2p reads the reset as an end of stream.
    assert f"sent 0 of {MIB + 1} bytes" in out["message"]


async def test_pylibp2p_is_refused_when_perf_is_off(pylibp2p: PyLibp2p) -> None:
    async with open_host(KeyPair.generate()) as host:
        status, out = await pylibp2p.run("perf", str(host.addrs[0]), "--download", "1")
    assert status == 1
    assert out["event"] == "error"
