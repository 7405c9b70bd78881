"""Choosing who dials on the direct connection of a hole punch we answer (net/simopen.py,
specs/dcutr.md §1 step 4): the peer that proposes a protocol is the dialer, the one that only
writes the multistream header (or nothing) is the listener, and the upgrade then completes
either way."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from p2pchat.identity import KeyPair
from p2pchat.net.muxer import MuxedConnection
from p2pchat.net.simopen import HEADER, choose_role
from p2pchat.net.upgrade import upgrade
from p2pchat.protocols.multistream import encode_message

pytestmark = pytest.mark.timeout(30)

WAIT = 0.3


async def _received(stream: trio.abc.Stream, size: int) -> bytes:
    data = b""
    with trio.fail_after(5):
        while len(data) < size:
            data += await stream.receive_some()
    return data


async def test_a_peer_that_proposes_makes_us_the_responder() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    proposal = HEADER + encode_message("/noise")
    await theirs.send_all(proposal)
    with trio.fail_after(5):
        stream, dialer = await choose_role(ours, WAIT)
    assert dialer is False
    assert await _received(theirs, len(HEADER)) == HEADER  # ours went out at once
    assert await _received(stream, len(proposal)) == proposal  # theirs is put back
    await stream.send_all(HEADER + encode_message("/noise"))  # the listener's answer
    assert await _received(theirs, 7) == encode_message("/noise")  # without a second header


async def test_a_peer_that_only_writes_its_header_makes_us_the_dialer() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    await theirs.send_all(HEADER)
    with trio.fail_after(5):
        stream, dialer = await choose_role(ours, WAIT)
    assert dialer is True
    assert await _received(stream, len(HEADER)) == HEADER


async def test_a_silent_peer_makes_us_the_dialer() -> None:
    ours, _theirs = trio.testing.memory_stream_pair()
    with trio.fail_after(5):
        _stream, dialer = await choose_role(ours, WAIT)
    assert dialer is True


async def _upgrade_both(
    us: KeyPair, them: KeyPair, *, peer_is_initiator: bool
) -> tuple[MuxedConnection, MuxedConnection]:
    """Our side chooses its role against a peer upgrading as ``peer_is_initiator`` says."""
    ours, theirs = trio.testing.memory_stream_pair()
    result: dict[str, MuxedConnection] = {}

    async def their_side() -> None:
        result["theirs"] = await upgrade(
            theirs,
            them,
            outbound=peer_is_initiator,
            expected_peer=us.peer_id if peer_is_initiator else None,
            handshake_timeout=10,
        )

    async def our_side() -> None:
        stream, dialer = await choose_role(ours, WAIT)
        result["ours"] = await upgrade(
            stream,
            us,
            outbound=dialer,
            expected_peer=them.peer_id if dialer else None,
            handshake_timeout=10,
        )

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(their_side)
            nursery.start_soon(our_side)
    return result["ours"], result["theirs"]


async def test_the_upgrade_completes_with_an_initiating_peer() -> None:
    us, them = KeyPair.generate(), KeyPair.generate()
    ours, theirs = await _upgrade_both(us, them, peer_is_initiator=True)
    assert (ours.is_client, theirs.is_client) == (False, True)
    assert (ours.remote_peer, theirs.remote_peer) == (them.peer_id, us.peer_id)


async def test_the_upgrade_completes_with_a_peer_that_waits_as_the_responder() -> None:
    # Both sides think they are the responder, as with py-libp2p's initiating side: we become
    # the dialer once the peer has proposed nothing for WAIT seconds.
    us, them = KeyPair.generate(), KeyPair.generate()
    ours, theirs = await _upgrade_both(us, them, peer_is_initiator=False)
    assert (ours.is_client, theirs.is_client) == (True, False)
    assert (ours.remote_peer, theirs.remote_peer) == (them.peer_id, us.peer_id)
