"""Reading received mDNS datagrams, leniently (see the package's theory of operation).

Every malformed packet, whatever dnspython raises, becomes an :class:`MdnsDecodeError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

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

from ...identity import PeerID
from ...multiaddr import Multiaddr, MultiaddrError
from .constants import (
    _CLASS_TOP_BIT,
    _HEADER_SIZE,
    _IN,
    _LOOKUP_TYPES,
    _META,
    _OPAQUE_TYPE,
    _PTR_OR_ANY,
    _READ_TYPES,
    DNSADDR_PREFIX,
    MAX_ADDRS_PER_PEER,
    MAX_PACKET_SIZE,
    MAX_PEERS_PER_PACKET,
    SERVICE_NAME,
)
from .messages import MdnsDecodeError, MdnsQuery, MdnsResponse, PeerAnnouncement, _service


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
