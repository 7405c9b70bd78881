"""AutoNAT v1 core: messages, the dial-back rule, rate limits, the verdict, observed addresses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.errors import DecodeError
from p2pchat.identity import KeyPair, PeerID
from p2pchat.multiaddr import Multiaddr
from p2pchat.protocols import autonat as a

P1 = KeyPair.from_seed(bytes([1]) * 32).peer_id
P2 = KeyPair.from_seed(bytes([2]) * 32).peer_id


def ma(text: str) -> Multiaddr:
    return Multiaddr.from_string(text)


# specs/autonat.md "Vectors": a DIAL of peer P1 at /ip4/127.0.0.1/tcp/4001, and an OK answer.
DIAL_HEX = (
    "38080012340a320a26002408011220"
    "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
    "1208047f000001060fa1"
)


def test_dial_round_trips_and_matches_the_vector() -> None:
    request = a.DialRequest(P1, (ma("/ip4/127.0.0.1/tcp/4001"),))
    framed = a.frame(request)
    assert framed.hex() == DIAL_HEX
    reader = a.MessageReader()
    reader.receive_data(framed)
    assert reader.next_message() == request


def test_response_round_trips_with_status_ok_written() -> None:
    response = a.DialResponse(a.ResponseStatus.OK, "", ma("/ip4/127.0.0.1/tcp/4001"))
    data = a.encode(response)
    assert data.startswith(bytes.fromhex("0801"))  # type DIAL_RESPONSE
    assert bytes.fromhex("0800") in data  # status OK (0) is present, proto2 style
    assert a.decode(data) == response


def test_unknown_status_is_refused() -> None:
    with pytest.raises(DecodeError):
        a.decode(bytes.fromhex("0801") + bytes.fromhex("1a02") + bytes.fromhex("0807"))


def test_oversized_message_is_refused() -> None:
    reader = a.MessageReader()
    reader.receive_data(bytes.fromhex("ffff03"))
    with pytest.raises(DecodeError, match="too large"):
        reader.next_message()


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        a.decode(data)
    except DecodeError:
        pass


def test_dial_back_only_the_observed_ip() -> None:
    observed = ma("/ip4/203.0.113.7/tcp/51000")
    requested = [
        ma("/ip4/203.0.113.7/tcp/4001"),
        ma("/ip4/198.51.100.1/tcp/4001"),  # someone else: never dialed
        ma("/dns4/example.org/tcp/4001"),  # a name could point anywhere
        ma("/ip4/203.0.113.7/tcp/4001"),  # duplicate
    ]
    assert a.dial_back_targets(requested, observed) == [
        ma("/ip4/203.0.113.7/tcp/4001"),
        observed,
    ]


def test_dial_back_is_bounded() -> None:
    observed = ma("/ip4/203.0.113.7/tcp/1")
    requested = [ma(f"/ip4/203.0.113.7/tcp/{port}") for port in range(2, 40)]
    assert len(a.dial_back_targets(requested, observed)) == a.MAX_DIAL_BACK


def test_budget_limits_per_peer_and_globally() -> None:
    budget = a.DialBudget(global_dials=4, global_window=60.0, peer_dials=2, peer_window=90.0)
    assert budget.allow(P1, 0.0)
    assert budget.allow(P1, 1.0)
    assert not budget.allow(P1, 2.0)
    assert budget.allow(P2, 2.0)
    assert budget.allow(P2, 3.0)
    for n in range(3, 6):
        assert not budget.allow(KeyPair.from_seed(bytes([n]) * 32).peer_id, 4.0)
    assert budget.allow(P1, 91.0)  # both windows passed


def _server(n: int) -> PeerID:
    return KeyPair.from_seed(bytes([100 + n]) * 32).peer_id


def test_verdict_needs_threshold_servers() -> None:
    verdict = a.Reachability(threshold=3)
    ok = a.DialResponse(a.ResponseStatus.OK)
    failed = a.DialResponse(a.ResponseStatus.E_DIAL_ERROR)
    refused = a.DialResponse(a.ResponseStatus.E_DIAL_REFUSED)
    verdict.record(_server(1), ok)
    verdict.record(_server(1), ok)  # the same server twice counts once
    verdict.record(_server(2), ok)
    verdict.record(_server(3), refused)  # refusals do not count
    assert verdict.status is a.ReachabilityStatus.UNKNOWN
    verdict.record(_server(4), ok)
    assert verdict.counts == (3, 0)
    assert verdict.status.value == "public"
    for n in range(5, 10):
        verdict.record(_server(n), failed)
    assert verdict.status.value == "private"


def test_observed_address_is_confirmed_by_two_peers() -> None:
    observed = a.ObservedAddrs()
    addr = ma("/ip4/203.0.113.7/tcp/4001")
    observed.record(P1, addr)
    observed.record(P1, addr)
    assert observed.confirmed() == []
    observed.record(P2, addr)
    assert observed.confirmed() == [addr]


def test_observed_addresses_are_bounded() -> None:
    observed = a.ObservedAddrs()
    for port in range(100):
        observed.record(P1, ma(f"/ip4/203.0.113.7/tcp/{port + 1}"))
    assert len(observed.all()) == a.MAX_OBSERVED
