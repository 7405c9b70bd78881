"""Peer discovery: how a node finds peers, as Trio tasks feeding the host's peer store.

``discovery.mdns`` is the sans-IO core of libp2p mDNS (DNS messages, the query schedule) and
``discovery.mdns_service`` runs it on a UDP socket in the caller's nursery (specs/mdns.md).
``discovery.bootstrap`` keeps configured and previously known peers connected.
"""

from __future__ import annotations

from .mdns import MdnsDecodeError as MdnsDecodeError
from .mdns_service import DiscoveredPeer as DiscoveredPeer
from .mdns_service import MdnsConfig as MdnsConfig
from .mdns_service import MdnsError as MdnsError
from .mdns_service import MdnsService as MdnsService
from .mdns_service import MdnsStatistics as MdnsStatistics
from .mdns_service import open_mdns as open_mdns
from .mdns_service import run_mdns as run_mdns
