"""The node on the internet: AutoNAT, the Kademlia DHT, and finding members through it.

:func:`open_internet` is entered by the daemon after the chat node. It runs AutoNAT (serving
dial-backs and probing, ``[autonat] enabled``) and, with ``[dht] enabled``, the DHT: joined
through ``[dht] bootstrap`` (none by default: no public peer is ever dialed unless the user
names it), in server or client mode, or with ``mode = "auto"`` as a client that becomes a
server while AutoNAT says the node is public (and back). With the DHT the chat node looks up
members no member can locate (``ChatNode.use_peer_finder``) and meets its groups' members at
their rendezvous keys (``chat/services/rendezvous.py``). Every task lives in the nursery this
context owns.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Final

import attrs

from ..aio import open_service_nursery
from ..chat.node import ChatNode
from ..chat.services.rendezvous import run_rendezvous
from ..discovery.kad import KadConfig, KadDHT, open_kad
from ..errors import P2PChatError
from ..identity import PeerID
from ..multiaddr import Multiaddr
from ..net.autonat import AutoNAT, AutoNATConfig, open_autonat
from ..net.autorelay import RELAY_KEY, AutoRelay, AutoRelayConfig
from ..net.host import Host
from ..protocols.autonat import ReachabilityStatus
from .relaying import Relaying

logger = logging.getLogger(__name__)

DHT_MODES: Final = ("auto", "client", "server")


@attrs.frozen
class InternetOptions:
    """``[dht]`` and ``[autonat]`` of the configuration."""

    dht: bool = False
    dht_mode: str = "auto"
    dht_bootstrap: tuple[Multiaddr, ...] = ()
    autonat: bool = True


@attrs.define
class Internet:
    """What runs: AutoNAT (if enabled) and the DHT (if enabled)."""

    autonat: AutoNAT | None
    dht: KadDHT | None
    options: InternetOptions
    autorelay: AutoRelay | None = None

    def reachability(self) -> str:
        """public, private or unknown."""
        return self.autonat.status.value if self.autonat is not None else "unknown"

    def advertised_addrs(self, host: Host) -> list[Multiaddr]:
        """What the node advertises (the address manager's choice, then relayed addresses)."""
        return host.advertised_addrs


def _initial_mode(options: InternetOptions) -> str:
    return "client" if options.dht_mode == "auto" else options.dht_mode


async def follow_reachability(autonat: AutoNAT, dht: KadDHT) -> None:
    """``mode = auto``: a DHT server only while AutoNAT says we are public."""
    while True:
        dht.set_mode("server" if autonat.status is ReachabilityStatus.PUBLIC else "client")
        await autonat.wait_status_changed()


async def provide_relay(autonat: AutoNAT | None, dht: KadDHT) -> None:
    """A relay with the DHT provides :data:`RELAY_KEY` unless AutoNAT says it is private."""
    while True:
        private = autonat is not None and autonat.status is ReachabilityStatus.PRIVATE
        if private:
            dht.stop_providing(RELAY_KEY)
        else:
            try:
                await dht.provide(RELAY_KEY)
            except P2PChatError as exc:
                logger.info("could not announce this relay in the DHT: %s", exc)
        if autonat is None:
            return
        await autonat.wait_status_changed()


def _relay_finder(
    dht: KadDHT,
) -> Callable[[], Awaitable[list[tuple[PeerID, tuple[Multiaddr, ...]]]]]:
    async def find() -> list[tuple[PeerID, tuple[Multiaddr, ...]]]:
        return [(p.peer, p.addrs) for p in await dht.providers(RELAY_KEY, count=AUTO_CANDIDATES)]

    return find


#: Relays asked of the DHT in one lookup.
AUTO_CANDIDATES: Final = 8


@asynccontextmanager
async def open_internet(
    host: Host,
    chat: ChatNode,
    options: InternetOptions,
    relaying: Relaying | None = None,
) -> AsyncIterator[Internet]:
    """Run what ``options`` enables, for the duration of the block; with ``relaying`` (its
    client on) reserve on relays while AutoNAT says private, and with its service on provide
    :data:`RELAY_KEY` in the DHT.

    Raises:
        ValueError: an unknown DHT mode.
    """
    if options.dht_mode not in DHT_MODES:
        raise ValueError(f"[dht] mode must be one of {', '.join(DHT_MODES)}")
    async with AsyncExitStack() as stack:
        autonat = None
        if options.autonat:
            autonat = await stack.enter_async_context(open_autonat(host, AutoNATConfig()))
        dht = None
        if options.dht:
            config = KadConfig(mode=_initial_mode(options), bootstrap=options.dht_bootstrap)
            dht = await stack.enter_async_context(open_kad(host, config))
        nursery = await stack.enter_async_context(open_service_nursery())
        if dht is not None:
            chat.use_peer_finder(dht.find_peer)
            stack.callback(chat.use_peer_finder, None)
            nursery.start_soon(run_rendezvous, chat, dht)
            if options.dht_mode == "auto" and autonat is not None:
                nursery.start_soon(follow_reachability, autonat, dht)
            logger.info(
                "DHT on (%s, %d bootstrap peers)", options.dht_mode, len(options.dht_bootstrap)
            )
        auto = None
        if relaying is not None and relaying.client is not None and autonat is not None:
            wanted = relaying.options.auto_relays
            if wanted > 0:
                auto = AutoRelay(
                    relaying.client,
                    autonat,
                    AutoRelayConfig(max_relays=wanted),
                    configured=relaying.options.reserve,
                    find_relays=_relay_finder(dht) if dht is not None else None,
                )
                nursery.start_soon(auto.run)
        if relaying is not None and relaying.service is not None and dht is not None:
            nursery.start_soon(provide_relay, autonat, dht)
        yield Internet(autonat, dht, options, auto)
