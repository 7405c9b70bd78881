"""libp2p mDNS discovery, sans-IO: the DNS messages and the query schedule.

Layout: ``constants`` (numbers and names, each with its section), ``messages`` (the records
and the datagrams we build), ``parse`` (reading what arrives), ``reply`` (what a query asks
of us, which addresses to dial) and ``schedule`` (when to query). The Trio service is
``p2pchat.discovery.mdns``.

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

The package builds those messages (:func:`build_query`, :func:`build_response`,
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

from .constants import DEFAULT_QUERY_INTERVAL as DEFAULT_QUERY_INTERVAL
from .constants import DEFAULT_TTL as DEFAULT_TTL
from .constants import DNSADDR_PREFIX as DNSADDR_PREFIX
from .constants import FIRST_QUERY_GAP as FIRST_QUERY_GAP
from .constants import MAX_ADDRS_PER_PEER as MAX_ADDRS_PER_PEER
from .constants import MAX_PACKET_SIZE as MAX_PACKET_SIZE
from .constants import MAX_PEERS_PER_PACKET as MAX_PEERS_PER_PACKET
from .constants import MAX_RESPONSE_SIZE as MAX_RESPONSE_SIZE
from .constants import MAX_TXT_STRING as MAX_TXT_STRING
from .constants import MDNS_IPV4_GROUP as MDNS_IPV4_GROUP
from .constants import MDNS_PORT as MDNS_PORT
from .constants import META_QUERY_NAME as META_QUERY_NAME
from .constants import PEER_NAME_ALPHABET as PEER_NAME_ALPHABET
from .constants import PEER_NAME_MAX as PEER_NAME_MAX
from .constants import PEER_NAME_MIN as PEER_NAME_MIN
from .constants import SERVICE_NAME as SERVICE_NAME
from .messages import MdnsDecodeError as MdnsDecodeError
from .messages import MdnsQuery as MdnsQuery
from .messages import MdnsResponse as MdnsResponse
from .messages import PeerAnnouncement as PeerAnnouncement
from .messages import Reply as Reply
from .messages import build_query as build_query
from .messages import build_response as build_response
from .messages import build_services_response as build_services_response
from .messages import generate_peer_name as generate_peer_name
from .messages import host_name_for as host_name_for
from .messages import instance_name_for as instance_name_for
from .parse import parse_packet as parse_packet
from .reply import is_dialable as is_dialable
from .reply import plan_reply as plan_reply
from .schedule import next_query_offset as next_query_offset
from .schedule import query_offset as query_offset
