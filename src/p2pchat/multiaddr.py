"""Multiaddr: self-describing network addresses (multiformats/multiaddr, libp2p addressing).

Theory of operation
-------------------
A multiaddr is a sequence of components. Each component is a protocol (from
``protocols.csv``) and, for most protocols, a value. There are two encodings:

* binary: ``(uvarint code, value)+``, where the value is fixed-size for ip4, ip6,
  tcp and udp, absent for quic-v1, p2p-circuit and the like, and otherwise a
  uvarint length followed by that many bytes;
* text: ``(/name/value)+`` with each value in its protocol's human form.

The binary value is the source of truth. A :class:`Component` is built from a
protocol and its binary value, and building it validates that value and derives the
canonical text of it (compressed IPv6, decimal port, base58btc peer ID). Parsing text
converts each value to bytes first and then builds the component the same way, so
every component, however it was made, is valid and prints canonically, and two
components are equal exactly when their bytes are. Parsing is therefore strict in
both directions, and text that is accepted but not canonical (``/ipfs/...``, a CIDv1
peer ID, ``/tcp/080``, a trailing ``/``) prints in its canonical form.

Every malformed input, text or bytes, raises :class:`MultiaddrError` with a short
``hint``; nothing else escapes the parsers. Our normative reading of the format, the
limits and the test vectors are in ``specs/multiaddr.md``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Final, NamedTuple

import attrs

from .errors import DecodeError
from .identity import PeerID
from .varint import decode_uvarint, encode_uvarint

__all__ = [
    "PROTOCOLS",
    "VARIABLE_SIZE",
    "Component",
    "Multiaddr",
    "MultiaddrError",
    "Protocol",
    "TcpTarget",
    "protocol_by_code",
    "protocol_by_name",
    "tcp_host_port",
    "tcp_multiaddr",
]


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

_BY_CODE: Final = {p.code: p for p in PROTOCOLS}
# addressing/README.md "Historical Note": "ipfs" is the old name of p2p (input only).
_BY_NAME: Final = {**{p.name: p for p in PROTOCOLS}, "ipfs": P2P}


def protocol_by_name(name: str) -> Protocol:
    """The protocol called ``name`` (``"ipfs"`` gives p2p).

    Raises:
        MultiaddrError: no supported protocol has that name.
    """
    proto = _BY_NAME.get(name)
    if proto is None:
        raise MultiaddrError(f"unknown protocol {name[:64]!r}", hint="unknown protocol")
    return proto


def protocol_by_code(code: int) -> Protocol:
    """The protocol with multicodec ``code``.

    Raises:
        MultiaddrError: no supported protocol has that code.
    """
    proto = _BY_CODE.get(code)
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
_CODECS: Final[dict[int, _Codec]] = {
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


# Components --------------------------------------------------------------------------------


@attrs.frozen
class Component:
    """One ``/name/value`` of a multiaddr.

    Built from a protocol and its binary value (``value_bytes``, without the length
    prefix); building it validates the value and sets ``value`` to its canonical text,
    or ``None`` for a protocol that has no value. Use :meth:`from_text` to build one
    from text.

    Raises:
        MultiaddrError: ``value_bytes`` is not a valid value for ``protocol``.
    """

    protocol: Protocol = attrs.field(validator=attrs.validators.instance_of(Protocol))
    value_bytes: bytes = attrs.field(
        default=b"", repr=False, validator=attrs.validators.instance_of(bytes)
    )
    value: str | None = attrs.field(init=False, eq=False)

    def __attrs_post_init__(self) -> None:
        proto = self.protocol
        raw = self.value_bytes
        if _BY_CODE.get(proto.code) != proto:
            raise MultiaddrError(f"unsupported protocol {proto}", hint="unknown protocol")
        if proto.size == 0:
            if raw:
                raise MultiaddrError(f"/{proto.name} takes no value", hint="unexpected value")
            text = None
        else:
            if proto.size > 0 and len(raw) != proto.size // 8:
                raise MultiaddrError(
                    f"/{proto.name} value must be {proto.size // 8} bytes, got {len(raw)}",
                    hint="bad value length",
                )
            if not raw:
                raise MultiaddrError(f"/{proto.name} needs a value", hint="missing value")
            text = _CODECS[proto.code][1](raw)
        object.__setattr__(self, "value", text)  # attrs' way to set a derived field

    @classmethod
    def from_text(cls, name: str, value: str | None = None) -> Component:
        """The component ``/name/value`` (``value`` None for protocols without one).

        Raises:
            MultiaddrError: unknown protocol, a missing or unexpected value, or a value
                that is not valid for the protocol.
        """
        proto = protocol_by_name(name)
        if not proto.has_value:
            if value is not None:
                raise MultiaddrError(f"/{proto.name} takes no value", hint="unexpected value")
            return cls(proto)
        if not value:
            raise MultiaddrError(f"/{proto.name} needs a value", hint="missing value")
        return cls(proto, _CODECS[proto.code][0](value))

    def to_bytes(self) -> bytes:
        """The binary encoding: code, then the value (length-prefixed when variable)."""
        out = encode_uvarint(self.protocol.code)
        if self.protocol.size == VARIABLE_SIZE:
            out += encode_uvarint(len(self.value_bytes))
        return out + self.value_bytes

    def __str__(self) -> str:
        if self.value is None:
            return f"/{self.protocol.name}"
        return f"/{self.protocol.name}/{self.value}"


def _to_components(items: Iterable[Component]) -> tuple[Component, ...]:
    components = tuple(items)
    size = 0
    for item in components:
        if not isinstance(item, Component):
            raise TypeError(f"expected Component, got {type(item).__name__}")
        size += len(item.to_bytes())
    if size > MAX_MULTIADDR_BYTES:
        raise MultiaddrError(
            f"multiaddr of {size} bytes exceeds {MAX_MULTIADDR_BYTES}", hint="too long"
        )
    return components


# Multiaddr ---------------------------------------------------------------------------------


@attrs.frozen(repr=False)
class Multiaddr:
    """An immutable, hashable multiaddr: a sequence of :class:`Component`.

    Parse with :meth:`from_string` or :meth:`from_bytes`. The empty multiaddr exists
    (it is what decapsulating everything leaves; it prints as ``""``), but neither
    parser accepts it.

    Raises:
        MultiaddrError: the components encode to more than 1024 bytes.
    """

    components: tuple[Component, ...] = attrs.field(converter=_to_components)

    @classmethod
    def from_string(cls, text: str) -> Multiaddr:
        """Parse the text form, e.g. ``/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...``.

        One trailing ``/`` is allowed; ``/ipfs/`` is read as ``/p2p/``; a peer ID may be
        base58btc or a CIDv1.

        Raises:
            MultiaddrError: empty, not starting with ``/``, an empty segment, an unknown
                protocol, a missing value, an invalid value, or too long.
        """
        if not isinstance(text, str):
            raise TypeError(f"expected str, got {type(text).__name__}")
        if len(text) > MAX_MULTIADDR_TEXT:
            raise MultiaddrError("multiaddr text too long", hint="too long")
        if not text:
            raise MultiaddrError("empty multiaddr", hint="empty multiaddr")
        if not text.startswith("/"):
            raise MultiaddrError(
                f"multiaddr {text[:64]!r} must start with '/'", hint="must start with /"
            )
        parts = text[1:].split("/")
        if parts[-1] == "":
            parts.pop()
        if not parts:
            raise MultiaddrError("empty multiaddr", hint="empty multiaddr")
        components: list[Component] = []
        segments = iter(parts)
        for name in segments:
            if name == "":
                raise MultiaddrError(f"empty segment in {text[:64]!r}", hint="empty segment")
            proto = _BY_NAME.get(name)
            if proto is None:
                after = ""
                if components and not components[-1].protocol.has_value:
                    after = f" (/{components[-1].protocol.name} takes no value)"
                raise MultiaddrError(
                    f"unknown protocol {name[:64]!r}{after}", hint="unknown protocol"
                )
            if not proto.has_value:
                components.append(Component(proto))
                continue
            value = next(segments, None)
            if not value:
                raise MultiaddrError(f"/{proto.name} needs a value", hint="missing value")
            components.append(Component(proto, _CODECS[proto.code][0](value)))
        return cls(components)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Multiaddr:
        """Parse the binary form.

        Raises:
            MultiaddrError: empty, too long, a bad or unknown code, a truncated or empty
                value, or an invalid value.
        """
        data = bytes(data)
        if not data:
            raise MultiaddrError("empty multiaddr", hint="empty multiaddr")
        if len(data) > MAX_MULTIADDR_BYTES:
            raise MultiaddrError(
                f"multiaddr of {len(data)} bytes exceeds {MAX_MULTIADDR_BYTES}", hint="too long"
            )
        components: list[Component] = []
        pos = 0
        end = len(data)
        while pos < end:
            code, pos = _read_uvarint(data, pos)
            proto = protocol_by_code(code)
            if proto.size == 0:
                components.append(Component(proto))
                continue
            if proto.size > 0:
                length = proto.size // 8
            else:
                length, pos = _read_uvarint(data, pos)  # 0 is rejected by Component
            if length > end - pos:
                raise MultiaddrError(
                    f"/{proto.name} value truncated: {length} bytes needed, {end - pos} left",
                    hint="truncated",
                )
            components.append(Component(proto, data[pos : pos + length]))
            pos += length
        return cls(components)

    def to_bytes(self) -> bytes:
        """The binary form."""
        return b"".join(c.to_bytes() for c in self.components)

    def __str__(self) -> str:
        return "".join(str(c) for c in self.components)

    def __repr__(self) -> str:
        return f"Multiaddr({str(self)!r})"

    def __iter__(self) -> Iterator[Component]:
        return iter(self.components)

    def __len__(self) -> int:
        return len(self.components)

    def protocols(self) -> tuple[Protocol, ...]:
        """The protocols of the components, in order."""
        return tuple(c.protocol for c in self.components)

    def value_for(self, name: str) -> str | None:
        """The text value of the first component of protocol ``name``.

        ``None`` if there is no such component or it has no value.

        Raises:
            MultiaddrError: ``name`` is not a supported protocol.
        """
        proto = protocol_by_name(name)
        for component in self.components:
            if component.protocol == proto:
                return component.value
        return None

    def encapsulate(self, other: Multiaddr | str) -> Multiaddr:
        """``self`` followed by ``other`` (a multiaddr, or its text form).

        Raises:
            MultiaddrError: ``other`` is text that does not parse, or the result exceeds
                1024 bytes.
        """
        if isinstance(other, str):
            other = Multiaddr.from_string(other)
        return Multiaddr(self.components + other.components)

    def decapsulate(self, target: str | Protocol | Multiaddr) -> Multiaddr:
        """Remove the last occurrence of ``target`` and everything after it.

        ``target`` is a protocol (or its name, e.g. ``"p2p"``), which matches any
        component of that protocol, or a multiaddr (or text starting with ``/``), whose
        component sequence must match exactly (addressing/README.md "Decapsulation").
        Without an occurrence, ``self`` is returned unchanged; removing the first
        component leaves the empty multiaddr.

        Raises:
            MultiaddrError: ``target`` is an unknown protocol name or text that does not
                parse.
        """
        comps = self.components
        if isinstance(target, str) and not target.startswith("/"):
            target = protocol_by_name(target)
        if isinstance(target, Protocol):
            for index in range(len(comps) - 1, -1, -1):
                if comps[index].protocol == target:
                    return Multiaddr(comps[:index])
            return self
        if isinstance(target, str):
            target = Multiaddr.from_string(target)
        sub = target.components
        if not sub:
            return self
        for index in range(len(comps) - len(sub), -1, -1):
            if comps[index : index + len(sub)] == sub:
                return Multiaddr(comps[:index])
        return self

    @property
    def peer_id(self) -> PeerID | None:
        """The peer ID of a trailing ``/p2p`` component, else None."""
        if self.components and self.components[-1].protocol == P2P:
            return PeerID.from_bytes(self.components[-1].value_bytes)
        return None

    def with_peer_id(self, peer: PeerID) -> Multiaddr:
        """This address ending in ``/p2p/<peer>`` (unchanged if it already does).

        Raises:
            MultiaddrError: the address already ends with a different peer ID, or the
                result exceeds 1024 bytes.
        """
        current = self.peer_id
        if current == peer:
            return self
        if current is not None:
            raise MultiaddrError(
                f"{self} already names peer {current}, not {peer}", hint="conflicting peer id"
            )
        return Multiaddr((*self.components, Component(P2P, peer.to_bytes())))

    def without_peer_id(self) -> Multiaddr:
        """This address without a trailing ``/p2p`` component."""
        if self.peer_id is None:
            return self
        return Multiaddr(self.components[:-1])


def _read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    try:
        return decode_uvarint(data, pos)
    except DecodeError as exc:
        hint = "truncated" if exc.hint == "truncated varint" else "bad varint"
        raise MultiaddrError(f"at byte {pos}: {exc}", hint=hint) from exc


# TCP helpers -------------------------------------------------------------------------------


class TcpTarget(NamedTuple):
    """Where to open a TCP connection: ``host`` is an IP literal or a DNS name."""

    host: str
    port: int
    family: socket.AddressFamily  # AF_UNSPEC for /dns (either family)


_HOST_FAMILIES: Final = {
    P_IP4: socket.AddressFamily.AF_INET,
    P_IP6: socket.AddressFamily.AF_INET6,
    P_DNS: socket.AddressFamily.AF_UNSPEC,
    P_DNS4: socket.AddressFamily.AF_INET,
    P_DNS6: socket.AddressFamily.AF_INET6,
}


def tcp_host_port(ma: Multiaddr) -> TcpTarget | None:
    """The TCP target of ``<host>/tcp/<port>[/p2p/<id>]``, else None.

    ``<host>`` is ``/ip4/a``, ``/ip6/a``, ``/ip6zone/z/ip6/a`` (host ``a%z``), ``/dns/n``,
    ``/dns4/n`` or ``/dns6/n``. Anything else (``/ws``, ``/p2p-circuit``, ``/dnsaddr``,
    which needs a TXT lookup first) is not a plain TCP address and gives None.
    """
    comps = ma.components
    zone = None
    if comps and comps[0].protocol == IP6ZONE:
        zone = comps[0].value
        comps = comps[1:]
        if not comps or comps[0].protocol != IP6:
            return None
    if comps and comps[-1].protocol == P2P:
        comps = comps[:-1]
    if len(comps) != 2 or comps[1].protocol != TCP:
        return None
    host, port = comps
    family = _HOST_FAMILIES.get(host.protocol.code)
    if family is None or host.value is None or port.value is None:
        return None
    name = host.value if zone is None else f"{host.value}%{zone}"
    return TcpTarget(name, int(port.value), family)


def tcp_multiaddr(host: str, port: int) -> Multiaddr:
    """``/ip4|ip6/<host>/tcp/<port>`` for an IP literal (``fe80::1%eth0`` gives an
    ``/ip6zone`` prefix), ``/dns/<host>/tcp/<port>`` for any other host name.

    Raises:
        MultiaddrError: ``port`` is not 0-65535 or ``host`` is not a valid name.
    """
    if not 0 <= port <= MAX_PORT:
        raise MultiaddrError(f"port {port} out of range 0-65535", hint="bad port")
    tcp = Component(TCP, port.to_bytes(2, "big"))
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if ":" in host:  # meant as an IPv6 literal: a DNS name has no ':'
            raise MultiaddrError(f"invalid IPv6 address {host[:64]!r}", hint="bad ip6") from None
        return Multiaddr((Component.from_text("dns", host), tcp))
    if isinstance(ip, ipaddress.IPv4Address):
        return Multiaddr((Component(IP4, ip.packed), tcp))
    prefix = () if ip.scope_id is None else (Component.from_text("ip6zone", ip.scope_id),)
    return Multiaddr((*prefix, Component(IP6, ip.packed), tcp))
