"""The numbers and names of libp2p mDNS discovery, each with the section that sets it."""

from __future__ import annotations

import string
from typing import Final

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
