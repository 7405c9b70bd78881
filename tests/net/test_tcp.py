"""The TCP transport's address helpers: wildcard listen addresses shown as dialable ones."""

from __future__ import annotations

import pytest

from p2pchat.multiaddr import Multiaddr
from p2pchat.net.tcp import expand_wildcard, interface_addresses

INTERFACES = ["127.0.0.1", "192.0.2.7", "fd00::7", "::1"]


@pytest.mark.parametrize(
    ("bound", "shown"),
    [
        ("/ip4/0.0.0.0/tcp/4001", ["/ip4/127.0.0.1/tcp/4001", "/ip4/192.0.2.7/tcp/4001"]),
        ("/ip6/::/tcp/4001", ["/ip6/fd00::7/tcp/4001", "/ip6/::1/tcp/4001"]),
        ("/ip4/127.0.0.1/tcp/4001", ["/ip4/127.0.0.1/tcp/4001"]),
        ("/ip6/::1/tcp/9", ["/ip6/::1/tcp/9"]),
    ],
)
def test_a_wildcard_becomes_one_address_per_interface_of_its_family(
    bound: str, shown: list[str]
) -> None:
    expanded = expand_wildcard(Multiaddr.from_string(bound), INTERFACES)
    assert [str(a) for a in expanded] == shown


def test_a_wildcard_with_no_interface_of_its_family_stays_as_it_is() -> None:
    bound = Multiaddr.from_string("/ip6/::/tcp/1")
    assert expand_wildcard(bound, ["127.0.0.1"]) == [bound]


def test_this_machine_has_a_loopback_address_and_no_wildcard_or_link_local_one() -> None:
    found = interface_addresses()
    assert "127.0.0.1" in found
    assert "0.0.0.0" not in found
    assert not any(ip.lower().startswith("fe80:") for ip in found)
