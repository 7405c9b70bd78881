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
from collections.abc import Iterable, Iterator
from typing import Final, NamedTuple

import attrs

from .errors import DecodeError
from .identity import PeerID
from .multiaddr_protocols import (
    BY_CODE,
    BY_NAME,
    CODECS,
    IP4,
    IP6,
    IP6ZONE,
    MAX_MULTIADDR_BYTES,
    MAX_MULTIADDR_TEXT,
    MAX_PORT,
    P2P,
    P_DNS,
    P_DNS4,
    P_DNS6,
    P_IP4,
    P_IP6,
    PROTOCOLS,
    TCP,
    VARIABLE_SIZE,
    MultiaddrError,
    Protocol,
    protocol_by_code,
    protocol_by_name,
)
from .varint import decode_uvarint, encode_uvarint

__all__ = [
    "IP4",
    "MAX_MULTIADDR_BYTES",
    "P2P",
    "PROTOCOLS",
    "P_IP4",
    "P_IP6",
    "TCP",
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
        if BY_CODE.get(proto.code) != proto:
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
            text = CODECS[proto.code][1](raw)
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
        return cls(proto, CODECS[proto.code][0](value))

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
            proto = BY_NAME.get(name)
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
            components.append(Component(proto, CODECS[proto.code][0](value)))
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
