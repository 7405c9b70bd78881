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

from holepunch_node import WAN_ADDRS, TwoNats, nat_unavailable_reason, punch, two_nats  # noqa: E402

pytestmark = [pytest.mark.timeout(120)]

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
    connected, result = punch(net, _python(), deadline=DEADLINE)
    assert connected["relayed"] is True  # first through the relay
    return result


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
