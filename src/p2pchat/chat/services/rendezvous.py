"""Group rendezvous in the DHT: members provide under the group's rendezvous keys and dial the
members they find there (specs/kad.md §10).

:func:`run_rendezvous` runs in a nursery its caller owns (the daemon's). Every ``interval`` it
takes, for each group whose current epoch key we hold, the keys of
:mod:`p2pchat.protocols.kad.rendezvous`: it provides under this window's and the next one's
(and stops republishing older ones), then looks up the providers of the same two keys, and
dials each provider that is a current member we are not connected to, at the addresses the
provider record gives. A key says nothing of the group to DHT nodes; a
provider that is not a member is ignored. Work per round is bounded: at most
:data:`MAX_GROUPS` groups, 2 provides and 2 lookups each, :data:`MAX_DIALS` dials.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, Protocol

import trio

from ...errors import P2PChatError
from ...identity import PeerID
from ...multiaddr import Multiaddr
from ...net.peerstore import TEMP_ADDR_TTL
from ...protocols.kad.providers import Provider
from ...protocols.kad.rendezvous import keys_to_provide, keys_to_search

if TYPE_CHECKING:
    from ..node import ChatNode

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL: Final = 10 * 60.0
MAX_GROUPS: Final = 64
MAX_DIALS: Final = 32
DIAL_TIMEOUT: Final = 15.0


class Providing(Protocol):
    """What the rendezvous needs of the DHT (``discovery.kad.KadDHT`` has it)."""

    async def provide(self, key: bytes) -> int: ...

    def stop_providing(self, key: bytes) -> None: ...

    async def providers(self, key: bytes, count: int = 20) -> list[Provider]: ...


async def rendezvous_once(
    node: ChatNode, dht: Providing, provided: set[bytes], now: float
) -> list[PeerID]:
    """One round (see the module docstring); ``provided`` is the set of keys we provide,
    updated in place. Returns the members newly connected."""
    host = node.host
    wanted: set[bytes] = set()
    searches: list[tuple[bytes, set[PeerID]]] = []
    for group_id in node.groups()[:MAX_GROUPS]:
        view = node.view(group_id)
        epoch = view.state.current_epoch
        epoch_key = view.epoch_keys.get(epoch)
        if epoch_key is None:
            continue
        wanted.update(keys_to_provide(epoch_key, group_id, epoch, now))
        members = {m.peer for m in view.state.current_roster.members} - {host.peer_id}
        searches += [(key, members) for key in keys_to_search(epoch_key, group_id, epoch, now)]
    for key in provided - wanted:
        dht.stop_providing(key)
    for key in sorted(wanted - provided):
        await dht.provide(key)
    provided.clear()
    provided.update(wanted)
    dialed: list[PeerID] = []
    for key, members in searches:
        for provider in await dht.providers(key):
            peer = provider.peer
            if peer not in members or host.connection(peer) is not None or peer in dialed:
                continue
            if len(dialed) >= MAX_DIALS:
                break
            if await _dial(node, peer, provider.addrs):
                dialed.append(peer)
    return dialed


async def _dial(node: ChatNode, peer: PeerID, addrs: Sequence[Multiaddr]) -> bool:
    host = node.host
    if addrs:
        host.peer_store.add_addrs(peer, addrs, TEMP_ADDR_TTL, trio.current_time())
    try:
        with trio.fail_after(DIAL_TIMEOUT):
            await host.connect(peer)
    except (P2PChatError, trio.TooSlowError) as exc:
        logger.info("member %s found by rendezvous, not reached: %s", peer, exc)
        return False
    logger.info("member %s found by rendezvous and connected", peer)
    return True


async def run_rendezvous(
    node: ChatNode,
    dht: Providing,
    *,
    interval: float = DEFAULT_INTERVAL,
    clock: Callable[[], float] = time.time,
) -> None:
    """Meet the members of our groups through the DHT every ``interval`` seconds, forever
    (run it in a nursery you own; cancel it to stop). ``clock`` gives the Unix time that
    picks the rendezvous window."""
    provided: set[bytes] = set()
    try:
        while True:
            await rendezvous_once(node, dht, provided, clock())
            await trio.sleep(interval)
    finally:
        for key in provided:
            dht.stop_providing(key)
