"""Kademlia DHT (``/ipfs/kad/1.0.0``), sans-IO: messages, keyspace, routing table, lookups,
records, providers and the answering side. The Trio service is ``p2pchat.discovery.kad``.

Normative text: ``specs/kad.md``.
"""

from __future__ import annotations

from .keyspace import common_prefix_length as common_prefix_length
from .keyspace import distance as distance
from .keyspace import kad_key as kad_key
from .keyspace import peer_key as peer_key
from .lookup import ALPHA as ALPHA
from .lookup import Lookup as Lookup
from .messages import PROTOCOL_ID as PROTOCOL_ID
from .messages import ConnectionType as ConnectionType
from .messages import KadPeer as KadPeer
from .messages import Message as Message
from .messages import MessageReader as MessageReader
from .messages import MessageType as MessageType
from .messages import Record as Record
from .messages import decode_message_bytes as decode_message_bytes
from .messages import encode_message as encode_message
from .messages import frame as frame
from .providers import ProviderStore as ProviderStore
from .records import InvalidRecordError as InvalidRecordError
from .records import RecordStore as RecordStore
from .routing import K_VALUE as K_VALUE
from .routing import AddResult as AddResult
from .routing import RoutingTable as RoutingTable
from .server import KadServer as KadServer
from .server import OverBudgetError as OverBudgetError
