"""Direct Connection Upgrade through Relay (``/libp2p/dcutr``), sans-IO.

Normative text: ``specs/dcutr.md`` (our reading of libp2p/specs ``relay/DCUtR.md``).

Theory of operation
-------------------
A relayed connection from ``A`` to ``B`` is up. ``B`` (the inbound side) opens a ``/libp2p/dcutr``
stream on it and writes ``CONNECT`` with the addresses it is observed at; ``A`` answers
``CONNECT`` with its own; ``B`` writes ``SYNC``. ``A`` dials ``B``'s addresses as soon as ``SYNC``
arrives, ``B`` dials ``A``'s half a round trip after it wrote ``SYNC`` (the round trip measured
from its ``CONNECT`` to ``A``'s answer), so that the two TCP opens cross in the NATs. ``B`` tries
:data:`MAX_ATTEMPTS` times on the same stream. :class:`Attempts` is ``B``'s schedule;
:func:`punch_targets` picks what may be dialed. Messages are ``uvarint(length) || HolePunch``,
at most :data:`MAX_MESSAGE_SIZE` bytes. No clock: callers pass times.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from typing import Final

import attrs

from ..errors import DecodeError, LocalProtocolError
from ..multiaddr import Multiaddr, MultiaddrError, tcp_host_port
from ..protobuf import WT_LEN, WT_VARINT, decode_message, encode_bytes_field, encode_varint_field
from ..varint import encode_uvarint, try_decode_uvarint
from ._need_data import NEED_DATA, NeedData

PROTOCOL_ID: Final = "/libp2p/dcutr"
#: DCUtR.md "RPC messages": refuse messages over 4 KiB.
MAX_MESSAGE_SIZE: Final = 4096
#: specs/dcutr.md: addresses in one message, and dialed in one attempt.
MAX_ADDRS: Final = 16
MAX_TARGETS: Final = 8
#: DCUtR.md step 6: the inbound peer tries three times in all.
MAX_ATTEMPTS: Final = 3


class HolePunchType(enum.IntEnum):
    CONNECT = 100
    SYNC = 300


@attrs.frozen
class HolePunch:
    """``HolePunch {type = 1, ObsAddrs = 2}``."""

    type: HolePunchType
    addrs: tuple[Multiaddr, ...] = ()


_SCHEMA: Final = {1: WT_VARINT, 2: WT_LEN}


def encode(message: HolePunch) -> bytes:
    out = encode_varint_field(1, int(message.type))
    return out + b"".join(encode_bytes_field(2, a.to_bytes()) for a in message.addrs[:MAX_ADDRS])


def frame(message: HolePunch) -> bytes:
    """``uvarint(length) || message``.

    Raises:
        LocalProtocolError: over :data:`MAX_MESSAGE_SIZE`.
    """
    data = encode(message)
    if len(data) > MAX_MESSAGE_SIZE:
        raise LocalProtocolError("dcutr message too large")
    return encode_uvarint(len(data)) + data


def decode(data: bytes) -> HolePunch:
    """Parse one message; addresses that do not parse are skipped.

    Raises:
        DecodeError: malformed, an unknown type, or more than :data:`MAX_ADDRS` addresses.
    """
    fields = decode_message(data, _SCHEMA)
    kinds = fields.get(1)
    kind = kinds[-1] if kinds else None
    if not isinstance(kind, int) or kind not in HolePunchType._value2member_map_:
        raise DecodeError(f"dcutr type {kind!r}", hint="bad dcutr message")
    raw_addrs = fields.get(2, [])
    if len(raw_addrs) > MAX_ADDRS:
        raise DecodeError("dcutr message with too many addresses", hint="bad dcutr message")
    addrs = []
    for raw in raw_addrs:
        try:
            addrs.append(Multiaddr.from_bytes(raw if isinstance(raw, bytes) else b""))
        except MultiaddrError:
            continue
    return HolePunch(HolePunchType(kind), tuple(addrs))


class MessageReader:
    """Cuts a byte stream into framed ``HolePunch`` messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        if len(self._buffer) > 2 * MAX_MESSAGE_SIZE + 16:
            raise DecodeError("dcutr peer sent too much", hint="dcutr flood")

    def next_message(self) -> HolePunch | NeedData:
        """The next message or :data:`NEED_DATA`.

        Raises:
            DecodeError: oversized or malformed.
        """
        decoded = try_decode_uvarint(self._buffer)
        if decoded is None:
            return NEED_DATA
        length, pos = decoded
        if length > MAX_MESSAGE_SIZE:
            raise DecodeError("dcutr message too large", hint="dcutr message too large")
        if len(self._buffer) - pos < length:
            return NEED_DATA
        body = bytes(self._buffer[pos : pos + length])
        del self._buffer[: pos + length]
        return decode(body)


def punch_targets(addrs: Iterable[Multiaddr]) -> list[Multiaddr]:
    """The addresses a hole punch dials: plain IP and TCP ones (no relayed, DNS, loopback
    unless all are loopback), without ``/p2p``, no duplicates, at most :data:`MAX_TARGETS`."""
    out: list[Multiaddr] = []
    for addr in addrs:
        bare = addr.without_peer_id()
        if any(c.protocol.name == "p2p-circuit" for c in bare) or bare in out:
            continue
        target = tcp_host_port(bare)
        if target is None:
            continue
        try:
            ipaddress.ip_address(target.host)
        except ValueError:
            continue  # a DNS name
        out.append(bare)
    return out[:MAX_TARGETS]


def public_targets(addrs: Iterable[Multiaddr], *, private: bool = False) -> list[Multiaddr]:
    """The addresses the direct step dials before any hole punch: those of
    :func:`punch_targets` at a public (global) IP; with ``private`` any IP."""
    out = []
    for addr in punch_targets(addrs):
        target = tcp_host_port(addr)
        if target is not None and (private or ipaddress.ip_address(target.host).is_global):
            out.append(addr)
    return out


class Attempts:
    """The inbound peer's schedule: up to :data:`MAX_ATTEMPTS` rounds of CONNECT, CONNECT,
    SYNC, dial; each round measures its own round trip (DCUtR.md "FAQ")."""

    def __init__(self, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.max_attempts = max_attempts
        self.made = 0
        self._sent_at: float | None = None

    @property
    def exhausted(self) -> bool:
        return self.made >= self.max_attempts

    def connect_sent(self, now: float) -> None:
        """Our CONNECT went out at ``now``.

        Raises:
            LocalProtocolError: every attempt was made.
        """
        if self.exhausted:
            raise LocalProtocolError("no dcutr attempt left")
        self.made += 1
        self._sent_at = now

    def sync_delay(self, answer_at: float) -> float:
        """Seconds to wait after SYNC before dialing: half the round trip of this attempt.

        Raises:
            LocalProtocolError: no CONNECT was sent.
        """
        if self._sent_at is None:
            raise LocalProtocolError("no dcutr CONNECT was sent")
        rtt = max(0.0, answer_at - self._sent_at)
        self._sent_at = None
        return rtt / 2
