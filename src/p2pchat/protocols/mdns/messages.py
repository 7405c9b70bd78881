"""The mDNS messages of libp2p discovery: what a query asks, what a response announces, the names
involved, and the datagrams we send (:func:`build_query`, :func:`build_response`,
:func:`build_services_response`).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Sequence

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

from ...errors import DecodeError
from ...identity import PeerID
from ...multiaddr import P_IP4, P_IP6, Multiaddr, tcp_host_port
from .constants import (
    _IN,
    _IN_FLUSH,
    _LOCAL,
    _META,
    DEFAULT_TTL,
    DNSADDR_PREFIX,
    MAX_RESPONSE_SIZE,
    MAX_TXT_STRING,
    PEER_NAME_ALPHABET,
    PEER_NAME_MAX,
    PEER_NAME_MIN,
    SERVICE_NAME,
)


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
