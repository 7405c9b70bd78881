"""DCUtR through real (virtual) NATs (tools/holepunch_node.py ``two_nats``: namespaces made for
this test only): two homes, each behind its own nftables masquerade, reach each other through a
relay in a "public" namespace; the hole punch then gives them a direct connection whose remote
address is the other router's. Behind NATs that pick a random port per connection (symmetric)
the punch fails and they stay on the relay, which still carries their traffic. Skipped, with
the reason, where namespaces or nftables are missing (``make netns-deps`` installs them)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Final

import pytest

TOOLS: Final = Path(__file__).resolve().parents[2] / "tools"
sys.path.insert(0, str(TOOLS))

from holepunch_node import (  # noqa: E402
    HOME_ADDRS,
    RELAY_ADDR,
    WAN_ADDRS,
    TwoNats,
    nat_unavailable_reason,
    two_nats,
)
from mdns_node import NodeProcess, pump  # noqa: E402

pytestmark = [pytest.mark.timeout(120)]

NODE: Final = str(TOOLS / "holepunch_node.py")
DEADLINE: Final = 40.0


@pytest.fixture(scope="module")
def nat_ok() -> None:
    reason = nat_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def _python() -> list[str]:
    src = str(TOOLS.parent / "src")
    path = src + os.pathsep + os.environ.get("PYTHONPATH", "")
    return ["env", f"PYTHONPATH={path}", sys.executable]


def _punch(net: TwoNats) -> dict[str, Any]:
    relay = NodeProcess(
        net.command(net.public, [*_python(), NODE, "relay", "--listen",
                                 f"/ip4/{RELAY_ADDR}/tcp/4001"]),
        label="relay",
    )  # fmt: skip
    nodes = [relay]
    try:
        assert pump(nodes, lambda: relay.first("listening") is not None or relay.eof, DEADLINE)
        listening = relay.first("listening")
        assert listening is not None, relay.stop()
        relay_addr = str(listening["addrs"][0])
        a = NodeProcess(
            net.command(net.homes[0], [*_python(), NODE, "listen", "--listen",
                                       f"/ip4/{HOME_ADDRS[0]}/tcp/4002", "--relay", relay_addr]),
            label="a",
        )  # fmt: skip
        nodes.append(a)
        assert pump(nodes, lambda: a.first("reserved") is not None or a.eof, DEADLINE)
        reserved = a.first("reserved")
        assert reserved is not None, a.stop()
        b = NodeProcess(
            net.command(net.homes[1], [*_python(), NODE, "dial", "--listen",
                                       f"/ip4/{HOME_ADDRS[1]}/tcp/4003", "--relay", relay_addr,
                                       "--target", str(reserved["circuit"])]),
            label="b",
        )  # fmt: skip
        nodes.append(b)
        assert pump(nodes, lambda: b.first("result") is not None or b.eof, DEADLINE)
        result = b.first("result")
        assert result is not None, b.stop()
        connected = b.first("connected")
        assert connected is not None
        assert connected["relayed"] is True  # first through the relay
        return result
    finally:
        for node in nodes:
            node.stop()


@pytest.mark.usefixtures("nat_ok")
def test_hole_punch_gives_a_direct_connection_through_two_nats() -> None:
    with two_nats() as net:
        result = _punch(net)
    assert result["relayed"] is False
    assert result["remote"].startswith(f"/ip4/{WAN_ADDRS[0]}/tcp/")  # a's router, not the relay


@pytest.mark.slow  # three failed rounds of dials: about 20 s
@pytest.mark.usefixtures("nat_ok")
def test_symmetric_nat_stays_on_the_relay() -> None:
    with two_nats(symmetric=True) as net:
        result = _punch(net)
    assert result["relayed"] is True
    assert result["ping"] >= 0  # the relay still carries their traffic
