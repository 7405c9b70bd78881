"""What a query asks of us, and which announced addresses are worth dialing."""

from __future__ import annotations

import ipaddress

from ...multiaddr import Multiaddr, tcp_host_port
from .constants import DEFAULT_TTL, SERVICE_NAME
from .messages import MdnsQuery, Reply, host_name_for, instance_name_for


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
