"""libp2p mDNS discovery, sans-IO: the DNS messages and the query schedule.

Normative text: ``specs/mdns.md`` (our reading of libp2p/specs ``discovery/mdns.md``, with
RFC 6762 and RFC 6763 where the libp2p text is silent).

Theory of operation
-------------------
A peer finds others on its link by multicasting one question, ``_p2p._udp.local. PTR``. Every
peer that hears it, the asker included, multicasts a response:

* answer: ``_p2p._udp.local. PTR <peer-name>._p2p._udp.local.``
* additional: ``<peer-name>._p2p._udp.local. TXT "dnsaddr=<multiaddr>/p2p/<id>" ...`` with one
  string per address, then, for DNS-SD browsers such as go-libp2p's (which drop an instance
  without an address record), ``SRV 0 0 <port> <peer-name>.local.`` and the ``A``/``AAAA``
  records of ``<peer-name>.local.``.

This module builds those messages (:func:`build_query`, :func:`build_response`,
:func:`build_services_response`), parses what arrives (:func:`parse_packet` gives an
:class:`MdnsQuery`, an :class:`MdnsResponse` or ``None`` for DNS traffic that is not about
libp2p discovery) and decides what a query asks of us (:func:`plan_reply`). The DNS wire format
is dnspython's; every malformed packet, whatever dnspython raises, becomes an
:class:`MdnsDecodeError`. A response is read leniently, as go-libp2p, rust-libp2p and
python-zeroconf (py-libp2p) write it: records in any section, the cache-flush bit set or not,
several TXT strings or several TXT records, a PTR to ``<peer-name>.<service>`` or to a bare
``<peer-name>.`` (rust). Strings that do not hold a ``/p2p`` multiaddr are skipped one by one,
and records we do not read are made opaque before dnspython sees them, so that one record it
cannot read (python-zeroconf's NSEC with a compressed name) does not hide the rest.

There is no clock and no socket here. The query schedule is a pure function of the query's
index (:func:`query_offset`) or of the time elapsed since start (:func:`next_query_offset`);
the caller supplies randomness (the first query's jitter, a ``random.Random`` for
:func:`generate_peer_name`) so tests are deterministic.
"""

from __future__ import annotations

import ipaddress
import math
import random
import string
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Final

import attrs
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

from ..errors import DecodeError
from ..identity import PeerID
from ..multiaddr import P_IP4, P_IP6, Multiaddr, MultiaddrError, tcp_host_port

__all__ = [
    "DEFAULT_QUERY_INTERVAL",
    "DEFAULT_TTL",
    "DNSADDR_PREFIX",
    "FIRST_QUERY_GAP",
    "MAX_PACKET_SIZE",
    "MAX_RESPONSE_SIZE",
    "MDNS_IPV4_GROUP",
    "MDNS_PORT",
    "META_QUERY_NAME",
    "SERVICE_NAME",
    "MdnsDecodeError",
    "MdnsQuery",
    "MdnsResponse",
    "PeerAnnouncement",
    "Reply",
    "build_query",
    "build_response",
    "build_services_response",
    "generate_peer_name",
    "host_name_for",
    "instance_name_for",
    "is_dialable",
    "next_query_offset",
    "parse_packet",
    "plan_reply",
    "query_offset",
]

# discovery/mdns.md "Definitions": the DNS-SD service name of every libp2p peer.
SERVICE_NAME: Final = "_p2p._udp.local."
# discovery/mdns.md "Meta Query" (RFC 6763 section 9).
META_QUERY_NAME: Final = "_services._dns-sd._udp.local."
# RFC 6762 section 3: the mDNS port and IPv4 group (ff02::fb is the IPv6 one; not used yet).
MDNS_PORT: Final = 5353
MDNS_IPV4_GROUP: Final = "224.0.0.251"
# discovery/mdns.md "Response": each address is a TXT attribute "dnsaddr=<multiaddr>".
DNSADDR_PREFIX: Final = "dnsaddr="
# RFC 6762 section 17: no mDNS packet exceeds 9000 bytes; larger datagrams are refused.
MAX_PACKET_SIZE: Final = 9000
# Ours: responses fit a 1500-byte Ethernet MTU (minus IPv4 and UDP headers) unfragmented.
MAX_RESPONSE_SIZE: Final = 1500 - 20 - 8
# RFC 1035 section 3.3: a <character-string> holds at most 255 bytes.
MAX_TXT_STRING: Final = 255
# discovery/mdns.md "Definitions": random, lower-case alphanumeric, at least 32 characters and
# (as a DNS label, RFC 1035 section 2.3.4) at most 63.
PEER_NAME_MIN: Final = 32
PEER_NAME_MAX: Final = 63
PEER_NAME_ALPHABET: Final = string.ascii_lowercase + string.digits
# RFC 6762 section 10: 120 s for records that name a host (ours all do).
DEFAULT_TTL: Final = 120
# RFC 6762 section 5.2: at least 1 s between the first two queries, then at least doubling.
FIRST_QUERY_GAP: Final = 1.0
# Ours (go-libp2p's zeroconf caps its back-off at 60 s too); DEFAULT_TTL covers two gaps.
DEFAULT_QUERY_INTERVAL: Final = 60.0
# Ours: what one response may make us believe.
MAX_PEERS_PER_PACKET: Final = 32
MAX_ADDRS_PER_PEER: Final = 32

# RFC 6762 section 10.2: the top bit of a record's class is the cache-flush bit; in a question
# (section 5.4) the same bit asks for a unicast response.
_CLASS_TOP_BIT: Final = 0x8000
_IN: Final = dns.rdataclass.IN
_IN_FLUSH: Final = dns.rdataclass.RdataClass.make(_IN | _CLASS_TOP_BIT)
# Types whose question about our instance or host name gets our full response
# (discovery/mdns.md "Gotchas").
_LOOKUP_TYPES: Final = frozenset(
    int(t)
    for t in (
        dns.rdatatype.TXT,
        dns.rdatatype.SRV,
        dns.rdatatype.A,
        dns.rdatatype.AAAA,
        dns.rdatatype.ANY,
    )
)
_PTR_OR_ANY: Final = frozenset((int(dns.rdatatype.PTR), int(dns.rdatatype.ANY)))
# The record types parse_packet reads; others are made opaque first (_make_unread_records_opaque)
_READ_TYPES: Final = frozenset((int(dns.rdatatype.PTR), int(dns.rdatatype.TXT)))
# RFC 6895 section 3.1: 65280-65534 are for private use.
_OPAQUE_TYPE: Final = 65280
# RFC 1035 section 4.1.1.
_HEADER_SIZE: Final = 12
_LOCAL: Final = dns.name.from_text("local.")
_META: Final = dns.name.from_text(META_QUERY_NAME)


class MdnsDecodeError(DecodeError):
    """A datagram that is not a well-formed DNS message, or is larger than 9000 bytes."""


@attrs.frozen
class MdnsQuery:
    """What a received query asks about libp2p discovery.

    ``names`` holds the other names asked for with TXT, SRV, A, AAAA or ANY (lower case, with
    the trailing dot). ``known_instances`` maps each instance the asker already knows (a PTR
    in its answer section, RFC 6762 section 7.1) to the TTL it holds.
    """

    wants_peers: bool = False
    wants_services: bool = False
    names: frozenset[str] = frozenset()
    known_instances: tuple[tuple[str, int], ...] = ()


@attrs.frozen
class PeerAnnouncement:
    """One peer found in a response: its addresses (without ``/p2p``) and their TTL (seconds).

    A TTL of 0 is a goodbye (RFC 6762 section 10.1): the peer is leaving.
    """

    peer_name: str
    peer_id: PeerID
    addrs: tuple[Multiaddr, ...]
    ttl: int


@attrs.frozen
class MdnsResponse:
    """The peers announced in a received response (possibly none)."""

    peers: tuple[PeerAnnouncement, ...] = ()


@attrs.frozen
class Reply:
    """What to send for one query: our peer response, the DNS-SD meta response, or neither."""

    peers: bool = False
    services: bool = False


# -- names -------------------------------------------------------------------------------------


def _service(service: str) -> dns.name.Name:
    try:
        name = dns.name.from_text(service)
    except dns.exception.DNSException as exc:
        raise ValueError(f"invalid service name {service!r}: {exc}") from exc
    if not name.is_subdomain(_LOCAL) or len(name) < 3:
        raise ValueError(f"service name {service!r} is not <service>.<proto>.local.")
    return name


def _check_peer_name(peer_name: str) -> None:
    if not (
        PEER_NAME_MIN <= len(peer_name) <= PEER_NAME_MAX
        and all(c in PEER_NAME_ALPHABET for c in peer_name)
    ):
        raise ValueError(
            f"peer name must be {PEER_NAME_MIN}-{PEER_NAME_MAX} lower-case letters and digits,"
            f" got {peer_name!r}"
        )


def generate_peer_name(rng: random.Random | None = None) -> str:
    """A fresh peer name: 32 to 63 random lower-case letters and digits.

    ``rng`` defaults to the operating system's generator (``random.SystemRandom``).
    """
    rng = rng if rng is not None else random.SystemRandom()
    length = rng.randint(PEER_NAME_MIN, PEER_NAME_MAX)
    return "".join(rng.choice(PEER_NAME_ALPHABET) for _ in range(length))


def instance_name_for(peer_name: str, service: str = SERVICE_NAME) -> str:
    """``<peer-name>.<service-name>``, e.g. ``abc...._p2p._udp.local.``.

    Raises:
        ValueError: ``service`` is not a ``.local.`` service name.
    """
    return dns.name.Name((peer_name,)).concatenate(_service(service)).to_text().lower()


def host_name_for(peer_name: str) -> str:
    """``<peer-name>.local.``: the host name our SRV record points at."""
    return f"{peer_name}.local."


# -- building ------------------------------------------------------------------------------------


def build_query(service: str = SERVICE_NAME) -> bytes:
    """The "find all peers" query: ID 0, one question ``<service> PTR IN``, QU bit clear.

    Raises:
        ValueError: ``service`` is not a ``.local.`` service name.
    """
    msg = dns.message.Message(id=0)  # RFC 6762 section 18.1: multicast queries use ID 0
    msg.flags = 0
    msg.find_rrset(
        msg.question, _service(service), dns.rdataclass.IN, dns.rdatatype.PTR, create=True
    )
    return msg.to_wire()


def _rrset(
    name: dns.name.Name,
    ttl: int,
    kind: Callable[..., dns.rdata.Rdata],
    rdclass: dns.rdataclass.RdataClass,
    rdtype: dns.rdatatype.RdataType,
    *fields: object,
) -> dns.rrset.RRset:
    """An RRset of one record, ``kind(rdclass, rdtype, *fields)`` (dnspython's rdata classes
    are untyped, hence the ``Callable``)."""
    rdata = kind(rdclass, rdtype, *fields)
    rrset = dns.rrset.RRset(name, rdclass, rdtype)
    rrset.update_ttl(ttl)
    rrset.add(rdata)
    return rrset


def _response_message(
    peer_name: str, peer_id: PeerID, addrs: Sequence[Multiaddr], ttl: int, service: dns.name.Name
) -> dns.message.Message:
    instance = dns.name.Name((peer_name,)).concatenate(service)
    host = dns.name.Name((peer_name, "local", ""))
    msg = dns.message.Message(id=0)
    msg.flags = dns.flags.QR | dns.flags.AA  # RFC 6762 section 18.2 and 18.4
    # The PTR is a shared record: no cache-flush bit (RFC 6762 section 10.2). The rest are
    # unique to us and carry it.
    msg.answer.append(_rrset(service, ttl, PTR, _IN, dns.rdatatype.PTR, instance))
    strings = [f"{DNSADDR_PREFIX}{addr.with_peer_id(peer_id)}".encode() for addr in addrs]
    # RFC 6763 section 6.1: a TXT record without attributes holds one empty string.
    txt = _rrset(instance, ttl, TXT, _IN_FLUSH, dns.rdatatype.TXT, strings or [b""])
    msg.additional.append(txt)
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    port = 0
    for addr in addrs:
        if not addr.components:
            continue
        first = addr.components[0]
        if first.protocol.code in (P_IP4, P_IP6) and first.value is not None:
            ip = ipaddress.ip_address(first.value)
            if ip not in ips:
                ips.append(ip)
            target = tcp_host_port(addr)
            if port == 0 and target is not None:
                port = target.port
    if ips:
        msg.additional.append(
            _rrset(instance, ttl, SRV, _IN_FLUSH, dns.rdatatype.SRV, 0, 0, port, host)
        )
        for ip in ips:
            if ip.version == 4:
                record = _rrset(host, ttl, A, _IN_FLUSH, dns.rdatatype.A, str(ip))
            else:
                record = _rrset(host, ttl, AAAA, _IN_FLUSH, dns.rdatatype.AAAA, str(ip))
            msg.additional.append(record)
    return msg


def build_response(
    peer_name: str,
    peer_id: PeerID,
    addrs: Sequence[Multiaddr],
    *,
    ttl: int = DEFAULT_TTL,
    service: str = SERVICE_NAME,
    max_size: int = MAX_RESPONSE_SIZE,
) -> bytes:
    """Our response to "find all peers": the PTR answer, then TXT, SRV, A and AAAA records.

    ``addrs`` (with or without ``/p2p/<peer_id>``) go into the TXT record in order; one whose
    ``dnsaddr=`` string exceeds 255 bytes is left out, and so are the last ones if the
    message would exceed ``max_size`` bytes. ``ttl`` 0 makes a goodbye.

    Raises:
        ValueError: a bad ``peer_name`` (not 32-63 of ``[a-z0-9]``), ``service``, ``ttl``
            (not 0 to 2**31-1) or ``max_size`` (too small for a response without addresses).
        MultiaddrError: an address names another peer.
    """
    _check_peer_name(peer_name)
    if not 0 <= ttl < 2**31:
        raise ValueError(f"ttl {ttl} out of range")
    name = _service(service)
    fitting: list[Multiaddr] = []
    room = max_size  # the TXT strings alone cannot exceed the message
    for addr in addrs:
        length = len(DNSADDR_PREFIX) + len(str(addr.with_peer_id(peer_id)))
        if length > MAX_TXT_STRING:
            continue
        room -= 1 + length
        if room < 0:
            break
        fitting.append(addr)
    # Drop addresses from the end until the message fits (a few encodings: the strings fit).
    while True:
        wire = _response_message(peer_name, peer_id, fitting, ttl, name).to_wire()
        if len(wire) <= max_size:
            return wire
        if not fitting:
            raise ValueError(f"max_size {max_size} is too small for any response")
        fitting.pop()


def build_services_response(*, ttl: int = DEFAULT_TTL, service: str = SERVICE_NAME) -> bytes:
    """The DNS-SD meta response: ``_services._dns-sd._udp.local. PTR <service>``.

    Raises:
        ValueError: a bad ``service`` or ``ttl``.
    """
    if not 0 <= ttl < 2**31:
        raise ValueError(f"ttl {ttl} out of range")
    msg = dns.message.Message(id=0)
    msg.flags = dns.flags.QR | dns.flags.AA
    msg.answer.append(_rrset(_META, ttl, PTR, _IN, dns.rdatatype.PTR, _service(service)))
    return msg.to_wire()


# -- parsing -------------------------------------------------------------------------------------


def _truncated(what: str) -> MdnsDecodeError:
    return MdnsDecodeError(f"DNS message truncated in {what}", hint="malformed DNS")


def _skip_name(data: bytes, pos: int) -> int:
    """The offset just past the (possibly compressed) name at ``pos``."""
    while True:
        if pos >= len(data):
            raise _truncated("a name")
        length = data[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:  # a compression pointer ends the name
            if pos + 2 > len(data):
                raise _truncated("a name")
            return pos + 2
        if length & 0xC0:
            raise MdnsDecodeError(f"bad label type {length:#04x}", hint="malformed DNS")
        pos += 1 + length


def _make_unread_records_opaque(data: bytes) -> bytes:
    """``data`` with the type of every record we do not read (anything but a PTR or a
    non-empty TXT) rewritten to a private-use type, which dnspython keeps as opaque bytes.

    dnspython rejects a whole message for one record it cannot read, such as the NSEC that
    python-zeroconf sends with a compressed next-name (RFC 6762 section 18.14 allows that;
    RFC 4034 does not), or an empty TXT. The rewrite keeps every length
    and offset, so compression pointers still hold.
    """
    if len(data) < _HEADER_SIZE:
        return data  # dnspython reports the short header
    out = bytearray(data)
    questions, answers, authorities, additionals = struct.unpack_from(">4H", data, 4)
    pos = _HEADER_SIZE
    for _ in range(questions):  # bounded: each question consumes at least 5 bytes
        pos = _skip_name(data, pos) + 4
    for _ in range(answers + authorities + additionals):  # each record takes >= 11 bytes
        pos = _skip_name(data, pos)
        if pos + 10 > len(data):
            raise _truncated("a record header")
        rdtype, _, _, rdlength = struct.unpack_from(">HHIH", data, pos)
        if rdtype not in _READ_TYPES or rdlength == 0:
            out[pos : pos + 2] = _OPAQUE_TYPE.to_bytes(2, "big")
        pos += 10 + rdlength
        if pos > len(data):
            raise _truncated("record data")
    return bytes(out)


def _from_wire(data: bytes) -> dns.message.Message:
    if len(data) > MAX_PACKET_SIZE:
        raise MdnsDecodeError(
            f"mDNS packet of {len(data)} bytes exceeds {MAX_PACKET_SIZE}", hint="too large"
        )
    data = _make_unread_records_opaque(data)
    try:
        # Trailing bytes are tolerated: they hurt nobody, and some stacks pad.
        return dns.message.from_wire(data, ignore_trailing=True)
    except dns.exception.DNSException as exc:
        raise MdnsDecodeError(f"malformed DNS message: {exc}", hint="malformed DNS") from exc
    except (ValueError, TypeError, IndexError, UnicodeError) as exc:
        # Defence in depth: dnspython wraps rdata errors in FormError, but no builtin error
        # from another corner of it may escape either.
        raise MdnsDecodeError(f"malformed DNS message: {exc!r}", hint="malformed DNS") from exc


def _is_in(rdclass: int) -> bool:
    return rdclass & ~_CLASS_TOP_BIT == _IN


def parse_packet(
    data: bytes | bytearray | memoryview, service: str = SERVICE_NAME
) -> MdnsQuery | MdnsResponse | None:
    """Read one received datagram.

    Returns an :class:`MdnsQuery` for a query that asks anything of a libp2p peer, an
    :class:`MdnsResponse` for a response (its ``peers`` may be empty), and ``None`` for any
    other well-formed DNS traffic (other services' queries, non-zero opcode or rcode, which
    RFC 6762 sections 18.3 and 18.11 say to ignore).

    Raises:
        MdnsDecodeError: not a DNS message, or larger than 9000 bytes.
        ValueError: ``service`` is not a ``.local.`` service name.
    """
    name = _service(service)
    data = bytes(data)
    # RFC 6762 section 18.3: a non-zero opcode is ignored, whatever follows the header (and
    # dnspython would read an UPDATE's sections differently).
    if len(data) >= 4 and dns.opcode.from_flags(int.from_bytes(data[2:4], "big")) != 0:
        return None
    msg = _from_wire(data)
    if msg.rcode() != dns.rcode.NOERROR:
        return None
    if msg.flags & dns.flags.QR:
        return _parse_response(msg, name)
    return _parse_query(msg, name)


def _parse_query(msg: dns.message.Message, service: dns.name.Name) -> MdnsQuery | None:
    wants_peers = wants_services = False
    names: set[str] = set()
    for question in msg.question:
        if not (_is_in(question.rdclass) or question.rdclass == dns.rdataclass.ANY):
            continue
        rdtype = int(question.rdtype)
        if question.name == service and rdtype in _PTR_OR_ANY:
            wants_peers = True
        elif question.name == _META and rdtype in _PTR_OR_ANY:
            wants_services = True
        elif rdtype in _LOOKUP_TYPES:
            names.add(question.name.to_text().lower())
    if not (wants_peers or wants_services or names):
        return None
    known: list[tuple[str, int]] = []
    for rrset in msg.answer:
        if rrset.name == service and rrset.rdtype == dns.rdatatype.PTR and _is_in(rrset.rdclass):
            known.extend(
                (rdata.target.to_text().lower(), int(rrset.ttl))
                for rdata in rrset
                if isinstance(rdata, PTR)
            )
    return MdnsQuery(wants_peers, wants_services, frozenset(names), tuple(known))


def _records(msg: dns.message.Message, rdtype: dns.rdatatype.RdataType) -> list[dns.rrset.RRset]:
    return [
        rrset
        for section in (msg.answer, msg.authority, msg.additional)
        for rrset in section
        if rrset.rdtype == rdtype and _is_in(rrset.rdclass)
    ]


def _parse_response(msg: dns.message.Message, service: dns.name.Name) -> MdnsResponse:
    txts = _records(msg, dns.rdatatype.TXT)
    peers: list[PeerAnnouncement] = []
    seen: set[dns.name.Name] = set()
    for ptrs in _records(msg, dns.rdatatype.PTR):
        if ptrs.name != service:
            continue
        for rdata in ptrs:
            if len(peers) >= MAX_PEERS_PER_PACKET:
                break
            # Any target is accepted: go and py-libp2p point at <peer-name>.<service>, but
            # rust-libp2p at a bare one-label <peer-name>. The TXT records must share it.
            instance = rdata.target if isinstance(rdata, PTR) else None
            if instance is None or instance in seen or len(instance.labels) < 2:
                continue
            seen.add(instance)
            peer = _announcement(instance, int(ptrs.ttl), [t for t in txts if t.name == instance])
            if peer is not None:
                peers.append(peer)
    return MdnsResponse(tuple(peers))


def _announcement(
    instance: dns.name.Name, ptr_ttl: int, txts: Iterable[dns.rrset.RRset]
) -> PeerAnnouncement | None:
    try:
        peer_name = instance.labels[0].decode("ascii").lower()
    except UnicodeDecodeError:
        return None
    peer_id: PeerID | None = None
    addrs: list[Multiaddr] = []
    ttl = ptr_ttl
    for rrset in txts:
        used = False
        for rdata in rrset:
            for raw in rdata.strings if isinstance(rdata, TXT) else ():
                addr = _dnsaddr(raw)
                if addr is None:
                    continue
                named = addr.peer_id
                if peer_id is None:
                    peer_id = named
                if named != peer_id:  # one instance speaks for one peer: the first named
                    continue
                bare = addr.without_peer_id()
                if bare not in addrs and len(addrs) < MAX_ADDRS_PER_PEER:
                    addrs.append(bare)
                used = True
        if used:
            ttl = min(ttl, int(rrset.ttl))
    if peer_id is None:
        return None
    return PeerAnnouncement(peer_name, peer_id, tuple(addrs), ttl)


def _dnsaddr(raw: bytes) -> Multiaddr | None:
    """The multiaddr of a ``dnsaddr=<multiaddr>/p2p/<id>`` string, else None."""
    prefix = len(DNSADDR_PREFIX)
    if raw[:prefix].lower() != DNSADDR_PREFIX.encode():  # RFC 6763 6.4: keys ignore case
        return None
    try:
        addr = Multiaddr.from_string(raw[prefix:].decode("ascii"))
    except (UnicodeDecodeError, MultiaddrError):
        return None
    return addr if addr.peer_id is not None else None


# -- deciding ------------------------------------------------------------------------------------


def plan_reply(
    query: MdnsQuery, peer_name: str, *, ttl: int = DEFAULT_TTL, service: str = SERVICE_NAME
) -> Reply:
    """What we send for ``query``, as the peer called ``peer_name``.

    Our peer response, if the query asks for all peers (unless it lists our instance as a
    known answer with at least half our TTL left, RFC 6762 section 7.1), or asks for our
    instance or host name by TXT, SRV, A, AAAA or ANY; the meta response if it asks for the
    DNS-SD service list.

    Raises:
        ValueError: a bad ``service``.
    """
    instance = instance_name_for(peer_name, service)
    peers = False
    if query.wants_peers:
        peers = not any(
            name == instance and held >= ttl / 2 for name, held in query.known_instances
        )
    if instance in query.names or host_name_for(peer_name) in query.names:
        peers = True
    return Reply(peers=peers, services=query.wants_services)


def is_dialable(addr: Multiaddr, *, allow_loopback: bool) -> bool:
    """True for a plain TCP address (``/ip4``, ``/ip6``, ``/dns*`` + ``/tcp``) that names a
    host: not the unspecified address, and not loopback unless ``allow_loopback``."""
    target = tcp_host_port(addr)
    if target is None or target.port == 0:
        return False
    try:
        ip = ipaddress.ip_address(target.host)
    except ValueError:
        return True  # a DNS name
    return not (ip.is_unspecified or ip.is_multicast or (ip.is_loopback and not allow_loopback))


# -- the query schedule --------------------------------------------------------------------------


def _check_schedule(first_delay: float, interval: float, first_gap: float) -> None:
    if not (first_delay >= 0 and first_gap > 0 and interval >= first_gap):
        raise ValueError(
            f"need first_delay >= 0 and interval >= first_gap > 0, got first_delay={first_delay},"
            f" first_gap={first_gap}, interval={interval}"
        )
    if not all(math.isfinite(x) for x in (first_delay, interval, first_gap)):
        raise ValueError("query schedule values must be finite")


def _doubling_steps(interval: float, first_gap: float) -> int:
    """How many gaps double before the gap reaches ``interval``."""
    steps = 0
    while first_gap * (1 << steps) < interval:
        steps += 1
    return steps


def query_offset(
    index: int,
    *,
    first_delay: float,
    interval: float = DEFAULT_QUERY_INTERVAL,
    first_gap: float = FIRST_QUERY_GAP,
) -> float:
    """Seconds from start to query number ``index`` (0 is the first).

    The first query goes at ``first_delay`` (RFC 6762 section 5.2 suggests 20-120 ms of
    random delay); the gaps after it are ``first_gap``, then twice as long each time, until
    they reach ``interval``, which they keep: with the defaults, 1, 2, 4, ..., 32, 60, 60, ...

    Raises:
        ValueError: ``index`` < 0, or ``first_delay`` < 0, or not 0 < first_gap <= interval.
    """
    _check_schedule(first_delay, interval, first_gap)
    if index < 0:
        raise ValueError(f"query index {index} < 0")
    doubling = min(index, _doubling_steps(interval, first_gap))
    # Gaps first_gap * 2**k for k < doubling sum to first_gap * (2**doubling - 1).
    return first_delay + first_gap * ((1 << doubling) - 1) + (index - doubling) * interval


def next_query_offset(
    elapsed: float,
    *,
    first_delay: float,
    interval: float = DEFAULT_QUERY_INTERVAL,
    first_gap: float = FIRST_QUERY_GAP,
) -> float:
    """The offset (from start) of the first query strictly later than ``elapsed`` seconds.

    Raises:
        ValueError: as :func:`query_offset`, or ``elapsed`` not finite.
    """
    _check_schedule(first_delay, interval, first_gap)
    if not math.isfinite(elapsed):
        raise ValueError(f"elapsed time {elapsed} is not finite")
    steps = _doubling_steps(interval, first_gap)
    for index in range(steps + 1):
        offset = query_offset(
            index, first_delay=first_delay, interval=interval, first_gap=first_gap
        )
        if offset > elapsed:
            return offset
    base = query_offset(steps, first_delay=first_delay, interval=interval, first_gap=first_gap)
    index = steps + math.floor((elapsed - base) / interval) + 1
    offset = query_offset(index, first_delay=first_delay, interval=interval, first_gap=first_gap)
    # Floating point may land on ``elapsed`` itself: step once more if so.
    return offset if offset > elapsed else offset + interval
