"""AutoNAT v1 (``/libp2p/autonat/1.0.0``) on a Host, and the address manager it feeds.

Theory of operation
-------------------
:func:`open_autonat` opens the service's nursery; everything below ends with its ``async with``:

* **server** (``config.serve``): a ``Dial`` request is answered by dialing the requester back
  on a *new* TCP connection (Noise must authenticate the requester's peer id), only at
  addresses on the IP the requester is observed at (``protocols/autonat.py``
  ``dial_back_targets``), within the rate limits of ``DialBudget``; the dial-back connection
  is closed at once and never joins the Host's connections.
* **client**: :meth:`AutoNAT.probe` asks up to ``probe_peers`` connected peers that serve
  AutoNAT to dial us back at our listen addresses and the addresses peers observed us at;
  their answers feed the :class:`~p2pchat.protocols.autonat.Reachability` verdict
  (``status``: public, private, unknown). A background task probes on demand at first: while
  the verdict is unknown it asks each AutoNAT server as soon as identify shows it serves
  AutoNAT (each once, at most ``probe_peers`` at a time and ``eager_asks`` in all); once the
  verdict is known or those asks are spent it probes every ``probe_interval`` (at most
  ``probe_peers`` requests a round).
* **address manager**: identify's ``observedAddr`` reaches :class:`AutoNAT` through
  :meth:`~p2pchat.net.peerstore.PeerStore.watch_observed`; :meth:`AutoNAT.advertised_addrs`
  is what the node advertises (it is the Host's address provider: identify and our signed
  peer record use it): its listen addresses, plus the observed addresses that two peers
  confirmed once the node is known to be public.

The DHT uses ``status`` to choose server or client mode (``mode = auto``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import attrs
import trio

from ..aio import open_service_nursery
from ..errors import DecodeError, HandshakeError, P2PChatError
from ..identity import PeerID
from ..multiaddr import Multiaddr
from ..protocols import autonat as core
from .muxer import MuxedStream
from .tcp import TransportError, dial_tcp
from .upgrade import upgrade

if TYPE_CHECKING:
    from .host import Host

logger = logging.getLogger(__name__)

PROTOCOL_ID: Final = core.PROTOCOL_ID
READ_SIZE: Final = 4096


class AutoNATError(P2PChatError):
    """A probe could not be made: no connection, refused protocol, bad answer, timeout."""


@attrs.frozen
class AutoNATConfig:
    """How AutoNAT runs (specs/autonat.md)."""

    serve: bool = True
    #: Servers that must agree before the verdict is public or private.
    threshold: int = 3
    probe_peers: int = 5
    probe_interval: float = 15 * 60.0
    #: Requests at most while the first verdict is unknown, each to a server as soon as it is
    #: identified (specs/autonat.md "When to probe"); 0: none, the schedule only.
    eager_asks: int = 8
    #: Time for the whole dial-back (server side) and for one probe (client side).
    dial_timeout: float = 15.0
    request_timeout: float = 30.0
    budget_global: int = core.GLOBAL_DIALS
    budget_peer: int = core.PEER_DIALS


class AutoNAT:
    """Reachability of one host; made by :func:`open_autonat`."""

    def __init__(self, host: Host, config: AutoNATConfig) -> None:
        self.host = host
        self.config = config
        self.reachability = core.Reachability(config.threshold)
        self.observed = core.ObservedAddrs()
        self.budget = core.DialBudget(
            global_dials=config.budget_global, peer_dials=config.budget_peer
        )
        self.dial_backs = 0
        #: Requests made while the first verdict was unknown (``eager_asks`` bounds them).
        self.eager_asked = 0
        self._changed = trio.Event()
        self._wake = trio.Event()  # a server was identified, or the verdict changed

    @property
    def status(self) -> core.ReachabilityStatus:
        """public, private or unknown (no verdict yet)."""
        return self.reachability.status

    def advertised_addrs(self) -> list[Multiaddr]:
        """Listen addresses, then confirmed observed ones when we are public (the Host adds
        its relayed addresses after these: this is its address provider)."""
        out = list(self.host.listen_addrs)
        if self.status is core.ReachabilityStatus.PUBLIC:
            out += [a for a in self.observed.confirmed() if a not in out]
        return out

    def _on_observed(self, observer: PeerID, addr: Multiaddr) -> None:
        self.observed.record(observer, addr)

    def _on_protocols(self, peer: PeerID, protocols: tuple[str, ...]) -> None:
        if PROTOCOL_ID in protocols:
            self._wake.set()

    async def wait_status_changed(self) -> None:
        """Return after the next probe that changed the verdict."""
        await self._changed.wait()

    # -- client ----------------------------------------------------------------------------

    def _dial_me_at(self) -> tuple[Multiaddr, ...]:
        addrs = list(self.host.listen_addrs)
        addrs += [a for a in self.observed.all() if a not in addrs]
        return tuple(addrs[: core.MAX_ADDRS])

    async def ask(self, server: PeerID) -> core.DialResponse:
        """Ask ``server`` to dial us back; its answer (also counted in ``reachability``).

        Raises:
            AutoNATError: the request could not be made or the answer is malformed.
        """
        request = core.DialRequest(self.host.peer_id, self._dial_me_at())
        try:
            with trio.fail_after(self.config.request_timeout):
                stream = await self.host.new_stream(server, [PROTOCOL_ID])
                async with stream:
                    await stream.send_all(core.frame(request))
                    reply = await _read_one(stream)
        except (P2PChatError, trio.TooSlowError, trio.BrokenResourceError) as exc:
            raise AutoNATError(f"autonat probe via {server}: {exc or 'timed out'}") from exc
        if not isinstance(reply, core.DialResponse):
            raise AutoNATError(f"autonat probe via {server}: a DIAL for an answer")
        before = self.status
        self.reachability.record(server, reply)
        if self.status is not before:
            logger.info("reachability is now %s", self.status.value)
            self._changed.set()
            self._changed = trio.Event()
            self._wake.set()
        return reply

    def servers(self) -> list[PeerID]:
        """Connected peers that serve AutoNAT."""
        store = self.host.peer_store
        return [p for p in self.host.connected_peers() if PROTOCOL_ID in store.protocols(p)]

    async def probe(self, servers: Sequence[PeerID] | None = None) -> core.ReachabilityStatus:
        """Ask up to ``probe_peers`` servers (connected AutoNAT peers unless given) at once;
        the verdict after their answers."""
        chosen = list(servers if servers is not None else self.servers())
        chosen = chosen[: self.config.probe_peers]

        async def one(server: PeerID) -> None:
            try:
                reply = await self.ask(server)
            except AutoNATError as exc:
                logger.info("%s", exc)
                return
            logger.debug("autonat via %s: %s %s", server, reply.status.name, reply.text)

        async with trio.open_nursery() as nursery:
            for server in chosen:
                nursery.start_soon(one, server)
        return self.status

    async def _wait_wake(self) -> None:
        await self._wake.wait()
        self._wake = trio.Event()

    async def _run_probes(self) -> None:
        """On demand until the first verdict, then the schedule (specs/autonat.md §3)."""
        await self._probe_eagerly()
        while True:
            await trio.sleep(self.config.probe_interval)
            while not self.servers():
                await self._wait_wake()
            await self.probe()

    async def _probe_eagerly(self) -> None:
        """While the verdict is unknown, ask each server once as soon as it is identified: at
        most ``probe_peers`` requests at a time and ``eager_asks`` in all. Returns once the
        verdict is known, or every request was made and answered, or no new server came for
        ``probe_interval``."""
        asked: set[PeerID] = set()
        limiter = trio.CapacityLimiter(max(1, self.config.probe_peers))

        async def one(server: PeerID) -> None:
            async with limiter:
                try:
                    await self.ask(server)
                except AutoNATError as exc:
                    logger.info("%s", exc)

        async with trio.open_nursery() as nursery:
            while self.status is core.ReachabilityStatus.UNKNOWN:
                if self.eager_asked >= self.config.eager_asks:
                    break  # the asks still running end before the schedule starts
                fresh = [p for p in self.servers() if p not in asked]
                for server in fresh[: self.config.eager_asks - self.eager_asked]:
                    asked.add(server)
                    self.eager_asked += 1
                    nursery.start_soon(one, server)
                with trio.move_on_after(self.config.probe_interval) as idle:
                    await self._wait_wake()
                if idle.cancelled_caught:
                    break

    # -- server ----------------------------------------------------------------------------

    async def _serve(self, stream: MuxedStream) -> None:
        peer = stream.remote_peer
        with trio.fail_after(self.config.request_timeout):
            request = await _read_one(stream)  # DecodeError: the Host resets and logs
            reply = await self._answer(peer, request, stream.connection.remote_addr)
            await stream.send_all(core.frame(reply))
            await stream.send_eof()

    async def _answer(
        self,
        peer: PeerID,
        request: core.DialRequest | core.DialResponse,
        observed: Multiaddr | None,
    ) -> core.DialResponse:
        if not isinstance(request, core.DialRequest) or request.peer != peer:
            logger.info("autonat request from %s refused: not a dial of itself", peer)
            return core.DialResponse(core.ResponseStatus.E_BAD_REQUEST, "dial yourself only")
        targets = core.dial_back_targets(request.addrs, observed) if observed else []
        if not targets:
            return core.DialResponse(core.ResponseStatus.E_DIAL_REFUSED, "no dialable address")
        if not self.budget.allow(peer, trio.current_time()):
            logger.info("autonat dial-back for %s refused: rate limit", peer)
            return core.DialResponse(core.ResponseStatus.E_DIAL_REFUSED, "rate limited")
        self.dial_backs += 1
        with trio.move_on_after(self.config.dial_timeout):
            for addr in targets:
                if await self._dial_back(peer, addr):
                    return core.DialResponse(core.ResponseStatus.OK, "", addr)
        return core.DialResponse(core.ResponseStatus.E_DIAL_ERROR, "dial back failed")

    async def _dial_back(self, peer: PeerID, addr: Multiaddr) -> bool:
        try:
            tcp = await dial_tcp(addr)
            conn = await upgrade(
                tcp,
                self.host.identity,
                outbound=True,
                expected_peer=peer,
                remote_addr=addr,
                handshake_timeout=self.config.dial_timeout,
            )
        except (TransportError, HandshakeError) as exc:
            logger.debug("autonat dial-back to %s at %s failed: %s", peer, addr, exc)
            return False
        await trio.aclose_forcefully(conn.secure)
        return True


async def _read_one(stream: MuxedStream) -> core.DialRequest | core.DialResponse:
    reader = core.MessageReader()
    while True:
        data = await stream.receive_some(READ_SIZE)
        if not data:
            raise DecodeError("stream ended before an autonat message", hint="autonat eof")
        reader.receive_data(data)
        message = reader.next_message()
        if message is not core.NEED_DATA:
            return message


@asynccontextmanager
async def open_autonat(host: Host, config: AutoNATConfig | None = None) -> AsyncIterator[AutoNAT]:
    """Run AutoNAT on ``host`` for the duration of the ``async with`` block."""
    config = config if config is not None else AutoNATConfig()
    autonat = AutoNAT(host, config)
    stop_watching = host.peer_store.watch_observed(autonat._on_observed)
    stop_protocols = host.peer_store.watch_protocols(autonat._on_protocols)
    host.set_address_provider(autonat.advertised_addrs)
    if config.serve:
        host.set_stream_handler(PROTOCOL_ID, autonat._serve)
    try:
        async with open_service_nursery() as nursery:
            nursery.start_soon(autonat._run_probes)
            yield autonat
    finally:
        stop_watching()
        stop_protocols()
        host.set_address_provider(None)
        if config.serve:
            host.remove_stream_handler(PROTOCOL_ID)
