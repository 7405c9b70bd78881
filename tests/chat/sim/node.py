"""A simulated node and the simulation's timing constants (see :mod:`.world`)."""

from __future__ import annotations

import attrs

from p2pchat.chat.core import crypto
from p2pchat.chat.core.engine import ChatEngine, EngineConfig
from p2pchat.chat.core.packet import Packet
from p2pchat.identity import KeyPair, PeerID

from .memstore import MemStore

T0 = 1_700_000_000_000
CONFIG = EngineConfig(
    retry_initial=500, retry_max=8_000, attempt_timeout=5_000, sync_interval=10_000
)
#: A query without an answer this long has failed (the client pool's timeout).
QUERY_TIMEOUT = 3_000
#: Delivery: tries, the first backoff (doubling), the refusals retried (specs/chat.md §9a).
DELIVER_TRIES = 4
DELIVER_BACKOFF = 500
RETRIED = ("too many queries", "missing parents", "internal error")
#: Pages of one history sync, as the sync budget bounds them.
MAX_PAGES = 100
#: Join attempts of an invited node, one every JOIN_RETRY ms.
MAX_JOIN_TRIES = 100
JOIN_RETRY = 1_500
#: How long the world runs whole and reliable after the faulty phase, before the end checks.
SETTLE = 60_000
#: Events a run may take before it counts as a livelock.
MAX_EVENTS = 400_000


@attrs.define(eq=False)
class Node:
    index: int
    identity: KeyPair
    hpke: crypto.HpkeKeyPair
    skew: int
    store: MemStore = attrs.Factory(MemStore)
    engine: ChatEngine | None = None
    incarnation: int = 0
    wake: int | None = None
    crash_on_commit: str = ""
    #: Ratified packets held in the store, to serve ``get`` (rebuilt from it on restart).
    certified: dict[bytes, Packet] = attrs.Factory(dict)
    links: set[int] = attrs.Factory(set)
    invited: bool = False
    join_tries: int = 0
    sent: int = 0

    @property
    def peer(self) -> PeerID:
        return self.identity.peer_id
