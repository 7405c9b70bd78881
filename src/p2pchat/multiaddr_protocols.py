"""The protocols a multiaddr may hold and their value codecs (specs/multiaddr.md).

The protocol table (codes and sizes from multiformats/multiaddr ``protocols.csv``), lookup by
name and code, and for each protocol with a value a pair of functions: text to bytes, and bytes
to canonical text (the validator of binary values). Both raise :class:`MultiaddrError` only.
``multiaddr.py`` builds components and addresses on these.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Final

import attrs

from .errors import DecodeError
from .identity import PeerID


class MultiaddrError(DecodeError):
    """Text or bytes that are not a valid multiaddr (or a multiaddr operation that is not
    possible). ``hint`` names the rule that was broken, e.g. ``"unknown protocol"``."""


# Protocol codes: multiformats/multiaddr protocols.csv.
P_IP4: Final = 4
P_TCP: Final = 6
P_UDP: Final = 273
P_IP6: Final = 41
P_IP6ZONE: Final = 42
P_DNS: Final = 53
P_DNS4: Final = 54
P_DNS6: Final = 55
P_DNSADDR: Final = 56
P_P2P: Final = 421
P_P2P_CIRCUIT: Final = 290
P_TLS: Final = 448
P_QUIC: Final = 460
P_QUIC_V1: Final = 461
P_WS: Final = 477
P_WSS: Final = 478

# protocols.csv writes "V" in the size column for a uvarint-length-prefixed value.
VARIABLE_SIZE: Final = -1

# Limits of this project (upstream sets none); see specs/multiaddr.md "Limits".
MAX_MULTIADDR_BYTES: Final = 1024
MAX_MULTIADDR_TEXT: Final = 8 * MAX_MULTIADDR_BYTES
MAX_NAME_BYTES: Final = 255  # a DNS name (RFC 1035 section 2.3.4); also ip6zone
MAX_PORT: Final = 65535


@attrs.frozen
class Protocol:
    """A row of ``protocols.csv``: name, code and value size in bits.

    ``size`` is 0 for a protocol without a value and :data:`VARIABLE_SIZE` (-1) for a
    value carried with a uvarint length prefix.
    """

    name: str
    code: int
    size: int

    @property
    def has_value(self) -> bool:
        """True if a component of this protocol carries a value."""
        return self.size != 0


IP4: Final = Protocol("ip4", P_IP4, 32)
TCP: Final = Protocol("tcp", P_TCP, 16)
UDP: Final = Protocol("udp", P_UDP, 16)
IP6: Final = Protocol("ip6", P_IP6, 128)
IP6ZONE: Final = Protocol("ip6zone", P_IP6ZONE, VARIABLE_SIZE)
DNS: Final = Protocol("dns", P_DNS, VARIABLE_SIZE)
DNS4: Final = Protocol("dns4", P_DNS4, VARIABLE_SIZE)
DNS6: Final = Protocol("dns6", P_DNS6, VARIABLE_SIZE)
DNSADDR: Final = Protocol("dnsaddr", P_DNSADDR, VARIABLE_SIZE)
P2P: Final = Protocol("p2p", P_P2P, VARIABLE_SIZE)
P2P_CIRCUIT: Final = Protocol("p2p-circuit", P_P2P_CIRCUIT, 0)
TLS: Final = Protocol("tls", P_TLS, 0)
QUIC: Final = Protocol("quic", P_QUIC, 0)
QUIC_V1: Final = Protocol("quic-v1", P_QUIC_V1, 0)
WS: Final = Protocol("ws", P_WS, 0)
WSS: Final = Protocol("wss", P_WSS, 0)

PROTOCOLS: Final[tuple[Protocol, ...]] = (
    IP4, TCP, UDP, IP6, IP6ZONE, DNS, DNS4, DNS6, DNSADDR,
    P2P, P2P_CIRCUIT, TLS, QUIC, QUIC_V1, WS, WSS,
)  # fmt: skip

BY_CODE: Final = {p.code: p for p in PROTOCOLS}
# addressing/README.md "Historical Note": "ipfs" is the old name of p2p (input only).
BY_NAME: Final = {**{p.name: p for p in PROTOCOLS}, "ipfs": P2P}


def protocol_by_name(name: str) -> Protocol:
    """The protocol called ``name`` (``"ipfs"`` gives p2p).

    Raises:
        MultiaddrError: no supported protocol has that name.
    """
    proto = BY_NAME.get(name)
    if proto is None:
        raise MultiaddrError(f"unknown protocol {name[:64]!r}", hint="unknown protocol")
    return proto


def protocol_by_code(code: int) -> Protocol:
    """The protocol with multicodec ``code``.

    Raises:
        MultiaddrError: no supported protocol has that code.
    """
    proto = BY_CODE.get(code)
    if proto is None:
        raise MultiaddrError(f"unknown protocol code {code}", hint="unknown protocol")
    return proto


# Value codecs ------------------------------------------------------------------------------
# Each protocol with a value has (text -> bytes, bytes -> canonical text). Both raise
# MultiaddrError only. The bytes -> text direction is the validator of binary values.


def _ip4_to_bytes(text: str) -> bytes:
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError:
        raise MultiaddrError(f"invalid IPv4 address {text[:64]!r}", hint="bad ip4") from None


def _ip4_to_text(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


def _ip6_to_bytes(text: str) -> bytes:
    # The ipaddress module accepts "addr%zone"; a multiaddr puts the zone in /ip6zone.
    if "%" in text:
        raise MultiaddrError(
            f"IPv6 address with a zone {text[:64]!r}; use /ip6zone/<zone>/ip6/<addr>",
            hint="bad ip6",
        )
    try:
        return ipaddress.IPv6Address(text).packed
    except ValueError:
        raise MultiaddrError(f"invalid IPv6 address {text[:64]!r}", hint="bad ip6") from None


def _ip6_to_text(raw: bytes) -> str:
    addr = ipaddress.IPv6Address(raw)
    mapped = addr.ipv4_mapped
    if mapped is not None:
        # RFC 5952 section 5, and what go- and rust-multiaddr print.
        return f"::ffff:{mapped}"
    return str(addr)


def _port_to_bytes(text: str) -> bytes:
    # int() would also take " 1", "+1", "1_0" and non-ASCII digits: only ASCII digits here.
    digits = text.lstrip("0") or "0"
    if not (text.isascii() and text.isdigit()) or len(digits) > 5 or int(digits) > MAX_PORT:
        raise MultiaddrError(
            f"invalid port {text[:64]!r}: expected a decimal number 0-65535", hint="bad port"
        )
    return int(digits).to_bytes(2, "big")


def _port_to_text(raw: bytes) -> str:
    return str(int.from_bytes(raw, "big"))


def _name_codec(kind: str) -> tuple[Callable[[str], bytes], Callable[[bytes], str]]:
    """Codec of a name value (dns*, ip6zone): UTF-8, non-empty, no '/', at most 255 bytes."""
    hint = f"bad {kind}"

    def check(text: str, raw_len: int) -> None:
        if raw_len == 0:
            raise MultiaddrError(f"empty {kind} value", hint=hint)
        if "/" in text:
            raise MultiaddrError(f"{kind} value {text[:64]!r} contains '/'", hint=hint)
        if raw_len > MAX_NAME_BYTES:
            raise MultiaddrError(f"{kind} value longer than {MAX_NAME_BYTES} bytes", hint=hint)

    def to_bytes(text: str) -> bytes:
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:
            raise MultiaddrError(f"{kind} value is not valid Unicode", hint=hint) from None
        check(text, len(raw))
        return raw

    def to_text(raw: bytes) -> str:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MultiaddrError(f"{kind} value is not valid UTF-8", hint=hint) from None
        check(text, len(raw))
        return text

    return to_bytes, to_text


def _p2p_to_bytes(text: str) -> bytes:
    try:
        return PeerID.from_string(text).to_bytes()
    except DecodeError as exc:
        raise MultiaddrError(f"invalid peer ID {text[:64]!r}: {exc}", hint="bad peer id") from exc


def _p2p_to_text(raw: bytes) -> str:
    try:
        peer = PeerID.from_bytes(raw)
    except DecodeError as exc:
        raise MultiaddrError(f"invalid peer ID multihash: {exc}", hint="bad peer id") from exc
    if peer.to_bytes() != raw:  # keeps binary -> text -> binary the identity
        raise MultiaddrError("peer ID multihash is not canonical", hint="bad peer id")
    return str(peer)


_Codec = tuple[Callable[[str], bytes], Callable[[bytes], str]]
CODECS: Final[dict[int, _Codec]] = {
    P_IP4: (_ip4_to_bytes, _ip4_to_text),
    P_IP6: (_ip6_to_bytes, _ip6_to_text),
    P_TCP: (_port_to_bytes, _port_to_text),
    P_UDP: (_port_to_bytes, _port_to_text),
    P_IP6ZONE: _name_codec("ip6zone"),
    P_DNS: _name_codec("dns"),
    P_DNS4: _name_codec("dns4"),
    P_DNS6: _name_codec("dns6"),
    P_DNSADDR: _name_codec("dnsaddr"),
    P_P2P: (_p2p_to_bytes, _p2p_to_text),
}
