"""Our own node, in this process, with one fault switched on: the broken peers that prove the
conformance cases can fail.

Each fault replaces one piece of the node's stack (through ``monkeypatch``) by a subclass or a
function that breaks exactly one rule. The conformance client in the same process uses none of
the pieces replaced: it drives the cores at a lower level (see ``p2pchat.conformance``).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import p2pchat.net.identify
import p2pchat.net.secure
import p2pchat.protocols.noise
import p2pchat.protocols.yamux
from p2pchat.app.daemon import NodeOptions, open_daemon
from p2pchat.identity import KeyPair, PeerID, PublicKey
from p2pchat.multiaddr import Multiaddr
from p2pchat.net.host import Host
from p2pchat.net.muxer import MuxedConnection
from p2pchat.net.negotiate import _exchange
from p2pchat.protocols import identify
from p2pchat.protocols import multistream as ms
from p2pchat.protocols.noise import HandshakeComplete, HandshakeState, NoiseHandshakePayload

LOOPBACK = Multiaddr.from_string("/ip4/127.0.0.1/tcp/0")


class Fault(enum.Enum):
    """One rule the node breaks."""

    #: The muxer sends as much as it has, whatever the peer's window.
    IGNORES_WINDOW = "ignores-window"
    #: The Noise responder does not check the identity signature.
    ACCEPTS_BAD_SIGNATURE = "accepts-bad-signature"
    #: The multistream listener answers an unknown protocol with "nope" instead of "na".
    NO_NA = "no-na"
    #: identify sends another key than the node's.
    IDENTIFY_WRONG_KEY = "identify-wrong-key"


class WindowIgnoringYamux(p2pchat.protocols.yamux.YamuxConnection):
    """Sends every byte at once: the stream's send window is raised to whatever is queued."""

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.send_window = max(stream.send_window, len(data))
        return super().send_data(stream_id, data)


class SignatureBlindNoise(p2pchat.protocols.noise.NoiseConnection):
    """Takes the peer's identity key without checking that it signed the static key."""

    def _authenticate(self, handshake: HandshakeState, payload: bytes) -> HandshakeComplete:
        decoded = NoiseHandshakePayload.decode(payload)
        key = PublicKey.from_protobuf(decoded.identity_key)
        peer = PeerID.from_public_key(key)
        self.remote_peer, self.remote_public_key = peer, key
        self.remote_stream_muxers = decoded.stream_muxers
        return HandshakeComplete(peer, key, decoded.stream_muxers)


class NoNaListener(ms.Listener):
    """Answers an unknown proposal with ``nope``."""

    def _handle(self, body: bytes) -> ms.ProtocolAgreed | None:
        event = super()._handle(body)
        na = ms.encode_message(ms.NA)
        if event is None and self._outbound.endswith(na):
            del self._outbound[-len(na) :]
            self._outbound += ms.encode_message("nope")
        return event


async def _negotiate_without_na(
    stream: trio.abc.Stream, supported: Collection[str]
) -> tuple[str, bytes]:
    listener = NoNaListener(supported)
    agreed = await _exchange(stream, listener)
    return agreed.protocol, listener.trailing_data()


_OTHER_KEY = KeyPair.generate()


def _info_with_wrong_key(host: Host, conn: MuxedConnection | None) -> identify.IdentifyInfo:
    info = ORIGINAL_OUR_INFO(host, conn)
    return identify.IdentifyInfo(
        protocol_version=info.protocol_version,
        agent_version=info.agent_version,
        public_key=_OTHER_KEY.public_key,
        listen_addrs=info.listen_addrs,
        observed_addr=info.observed_addr,
        protocols=info.protocols,
        signed_peer_record=info.signed_peer_record,
    )


ORIGINAL_OUR_INFO = p2pchat.net.identify.our_info


def switch_on(monkeypatch: pytest.MonkeyPatch, fault: Fault) -> None:
    """Make the node built next (in this process) break the rule of ``fault``."""
    if fault is Fault.IGNORES_WINDOW:
        monkeypatch.setattr(p2pchat.protocols.yamux, "YamuxConnection", WindowIgnoringYamux)
    elif fault is Fault.ACCEPTS_BAD_SIGNATURE:
        monkeypatch.setattr(p2pchat.protocols.noise, "NoiseConnection", SignatureBlindNoise)
    elif fault is Fault.NO_NA:
        monkeypatch.setattr(p2pchat.net.secure, "negotiate_inbound", _negotiate_without_na)
    elif fault is Fault.IDENTIFY_WRONG_KEY:
        monkeypatch.setattr(p2pchat.net.identify, "our_info", _info_with_wrong_key)


@asynccontextmanager
async def running_node(data_dir: Path) -> AsyncIterator[Multiaddr]:
    """A whole node (chat, identify, ping, perf on) on 127.0.0.1; its address with /p2p."""
    options = NodeOptions(data_dir=data_dir, listen=(LOOPBACK,), perf=True, control=False)
    async with open_daemon(options) as daemon:
        yield daemon.host.addrs[0]
