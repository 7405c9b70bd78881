"""DCUtR on a Host: upgrade relayed connections to direct ones by a synchronised simultaneous
TCP open (specs/dcutr.md; the core is ``protocols/dcutr.py``).

Theory of operation
-------------------
:func:`open_dcutr` serves ``/libp2p/dcutr`` and subscribes to the Host's connection events in a
nursery it owns. For each new **inbound relayed** connection (we are ``B``) a task opens a
``/libp2p/dcutr`` stream on that very connection and runs up to three rounds of ``CONNECT``
(our addresses), ``CONNECT`` (theirs), ``SYNC``, then after half the measured round trip dials
their addresses with :meth:`Host.connect_direct` as the Noise initiator. The handler (we are
``A``) answers each ``CONNECT`` with our addresses and dials at once on ``SYNC``, as the Noise
responder. A peer gets one hole punch at a time and at most 8 run at once, each side:
a peer cannot make us dial more than 3 rounds of 8 addresses at a time.
The direct connection joins the Host like any other and the Host prefers it; the
relayed one is closed after :attr:`DCUtRConfig.grace` seconds. Our addresses are those peers
observed us at (identify's ``observedAddr``, the newest :data:`MAX_OBSERVED`), then our listen
addresses. Hole punching needs ``HostConfig.reuse_port`` so that dials leave from the listen port.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import attrs
import trio

from ..aio import open_service_nursery
from ..errors import DecodeError, P2PChatError
from ..identity import PeerID
from ..multiaddr import Multiaddr
from ..protocols import dcutr as core
from ..protocols._need_data import NEED_DATA
from .events import ConnectionOpened
from .host import DialError, Host
from .identify import identify_peer
from .muxer import MuxedConnection, MuxedStream, MuxerError
from .negotiate import NegotiationError, negotiate_outbound
from .relay import is_relayed

logger = logging.getLogger(__name__)

MAX_OBSERVED: Final = 8
#: Relayed connections being upgraded at once; more wait for no one and stay relayed.
MAX_UPGRADES: Final = 8
EXCHANGE_TIMEOUT: Final = 10.0


class DCUtRError(P2PChatError):
    """A hole punch exchange ended without an answer in time."""


@attrs.frozen
class DCUtRConfig:
    #: Seconds the relayed connection stays open once a direct one is up.
    grace: float = 2.0
    attempts: int = core.MAX_ATTEMPTS
    #: Seconds one round's dials may take (and the direct dial before the rounds).
    dial_timeout: float = 5.0
    #: Also dial private and loopback addresses in the direct step (a LAN; tests).
    direct_private: bool = False
    #: Answering a hole punch: seconds a connection of the round may go without the peer
    #: proposing a protocol before we take the dialer's (Noise initiator's) role on it
    #: (specs/dcutr.md §1 step 4; ``net/simopen.py``). None: always the responder.
    role_wait: float | None = 1.0


@attrs.define
class DCUtRStats:
    upgraded: int = 0
    failed: int = 0
    #: Of ``upgraded``: by a plain dial to the peer's advertised addresses, no hole punch.
    direct_dials: int = 0
    #: Rounds answered as the handler (``A``): a CONNECT answered and its SYNC received.
    answered: int = 0


class DCUtR:
    """Made by :func:`open_dcutr`."""

    def __init__(self, host: Host, config: DCUtRConfig, nursery: trio.Nursery) -> None:
        self.host = host
        self.config = config
        self.stats = DCUtRStats()
        self._nursery = nursery
        self._observed: list[Multiaddr] = []
        self._upgrading: set[PeerID] = set()
        self._serving: set[PeerID] = set()
        self.done = trio.Event()  # set after each upgrade attempt ends (for tests and tools)

    def _on_observed(self, observer: PeerID, addr: Multiaddr) -> None:
        bare = addr.without_peer_id()
        if is_relayed(bare):
            return
        if bare in self._observed:
            self._observed.remove(bare)
        self._observed.insert(0, bare)
        del self._observed[MAX_OBSERVED:]

    def our_addrs(self) -> list[Multiaddr]:
        return core.punch_targets([*self._observed, *self.host.listen_addrs])

    # -- B: the inbound side of the relayed connection ---------------------------------------

    async def _watch(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with self.host.connection_events() as events:
            task_status.started()
            async for event in events:
                if not isinstance(event, ConnectionOpened):
                    continue
                conn = event.conn
                if conn.is_client or not is_relayed(conn.remote_addr):
                    continue
                if event.peer in self._upgrading or len(self._upgrading) >= MAX_UPGRADES:
                    continue
                self._upgrading.add(event.peer)
                self._nursery.start_soon(self._upgrade, event.peer, conn)

    async def _direct_first(self, peer: PeerID, relayed: MuxedConnection) -> MuxedConnection | None:
        """Step 0 (DCUtR.md): dial the peer's advertised public addresses, if it has any."""
        info = None
        with trio.move_on_after(EXCHANGE_TIMEOUT):
            try:
                info = await identify_peer(self.host, relayed)
            except (P2PChatError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                logger.info("direct dial to %s: identify failed: %s", peer, exc)
                return None
        if info is None:
            return None
        targets = core.public_targets(info.listen_addrs, private=self.config.direct_private)
        if not targets:
            return None
        direct = await self._dial(peer, targets, initiator=True)
        if direct is not None:
            self.stats.direct_dials += 1
        return direct

    async def _upgrade(self, peer: PeerID, relayed: MuxedConnection) -> None:
        try:
            direct = await self._direct_first(peer, relayed)
            if direct is None:
                direct = await self._punch(peer, relayed)
        except (DecodeError, NegotiationError, MuxerError) as exc:
            logger.info("hole punch with %s failed: %s", peer, exc)
            direct = None
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError) as exc:
            logger.info("hole punch with %s failed: %s", peer, exc or "timeout")
            direct = None
        finally:
            self._upgrading.discard(peer)
        await self._finish(peer, relayed, direct)

    async def _finish(
        self, peer: PeerID, relayed: MuxedConnection, direct: MuxedConnection | None
    ) -> None:
        if direct is None:
            self.stats.failed += 1
            logger.info("staying relayed with %s", peer)
        else:
            self.stats.upgraded += 1
            logger.info("direct connection with %s (%s)", peer, direct.remote_addr)
        self.done.set()
        self.done = trio.Event()
        if direct is not None:
            await trio.sleep(self.config.grace)
            await relayed.aclose()

    async def _punch(self, peer: PeerID, relayed: MuxedConnection) -> MuxedConnection | None:
        stream = await relayed.open_stream()
        try:
            with trio.fail_after(EXCHANGE_TIMEOUT):
                _, trailing = await negotiate_outbound(stream, [core.PROTOCOL_ID])
            reader = core.MessageReader()
            reader.receive_data(trailing)
            attempts = core.Attempts(self.config.attempts)
            while not attempts.exhausted:
                connect = core.HolePunch(core.HolePunchType.CONNECT, tuple(self.our_addrs()))
                attempts.connect_sent(trio.current_time())
                await stream.send_all(core.frame(connect))
                with trio.fail_after(EXCHANGE_TIMEOUT):
                    answer = await _read(stream, reader)
                delay = attempts.sync_delay(trio.current_time())
                if answer.type is not core.HolePunchType.CONNECT:
                    raise DecodeError("dcutr: expected CONNECT", hint="bad dcutr message")
                targets = core.punch_targets(answer.addrs)
                await stream.send_all(core.frame(core.HolePunch(core.HolePunchType.SYNC)))
                if not targets:
                    logger.info("hole punch with %s: no address to dial", peer)
                    return None
                await trio.sleep(delay)
                direct = await self._dial(peer, targets, initiator=True)
                if direct is not None:
                    return direct
            return None
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _dial(
        self,
        peer: PeerID,
        targets: list[Multiaddr],
        *,
        initiator: bool,
        role_wait: float | None = None,
    ) -> MuxedConnection | None:
        with trio.move_on_after(self.config.dial_timeout):
            try:
                return await self.host.connect_direct(
                    peer, targets, initiator=initiator, role_wait=role_wait
                )
            except DialError as exc:
                logger.info("hole punch dial to %s failed: %s", peer, exc)
            # Where the peer's dial reached our listener (no NAT in between), the direct
            # connection arrives as an inbound one, and our own dial may fail at once (the
            # address pair is taken): wait for it for the rest of the round.
            async with self.host.connection_events(include_existing=True) as events:
                async for event in events:
                    if (
                        isinstance(event, ConnectionOpened)
                        and event.peer == peer
                        and not is_relayed(event.conn.remote_addr)
                    ):
                        return event.conn
        return self._direct_connection(peer)

    def _direct_connection(self, peer: PeerID) -> MuxedConnection | None:
        live = self.host.connection(peer)
        return live if live is not None and not is_relayed(live.remote_addr) else None

    # -- A: the handler ----------------------------------------------------------------------

    async def _serve(self, stream: MuxedStream) -> None:
        peer = stream.remote_peer
        if not is_relayed(stream.connection.remote_addr):
            await stream.reset()  # a hole punch is for relayed connections only
            return
        if peer in self._serving or len(self._serving) >= MAX_UPGRADES:
            await stream.reset()  # one hole punch per peer at a time: no dial amplification
            return
        self._serving.add(peer)
        try:
            await self._answer(stream, peer)
        finally:
            self._serving.discard(peer)

    async def _answer(self, stream: MuxedStream, peer: PeerID) -> None:
        reader = core.MessageReader()
        direct: MuxedConnection | None = None
        rounds = 0
        try:
            while rounds < self.config.attempts:
                # After a round the peer may end the exchange: it gave up, or it has a direct
                # connection some other way. Before the first round, an end is an error.
                connect = await _read_within(stream, reader, "CONNECT", eof_ok=rounds > 0)
                if connect is None:
                    return
                if connect.type is not core.HolePunchType.CONNECT:
                    raise DecodeError("dcutr: expected CONNECT", hint="bad dcutr message")
                logger.debug("hole punch from %s: its addresses %s", peer, connect.addrs)
                targets = core.punch_targets(connect.addrs)
                # Until the round's dials end, the peer's dial may reach our listener from one
                # of these addresses, and its upgrade may wait for us to speak (§1 step 4).
                role_wait = self.config.role_wait
                expected = targets if role_wait is not None else []
                with self.host.dialer.expect_punch(peer, expected, role_wait or 0.0):
                    answer = core.HolePunch(core.HolePunchType.CONNECT, tuple(self.our_addrs()))
                    await stream.send_all(core.frame(answer))
                    sync = await _read_within(stream, reader, "SYNC", eof_ok=False)
                    if sync is None or sync.type is not core.HolePunchType.SYNC:
                        raise DecodeError("dcutr: expected SYNC", hint="bad dcutr message")
                    rounds += 1
                    self.stats.answered += 1
                    if not targets:
                        return
                    direct = await self._dial(peer, targets, initiator=False, role_wait=role_wait)
                if direct is not None:
                    self.stats.upgraded += 1
                    logger.info("direct connection with %s (%s)", peer, direct.remote_addr)
                    return
        finally:
            if rounds:
                if direct is None:
                    self.stats.failed += 1
                    logger.info("staying relayed with %s after %d answered round(s)", peer, rounds)
                self.done.set()
                self.done = trio.Event()


async def _read_within(
    stream: MuxedStream, reader: core.MessageReader, expected: str, *, eof_ok: bool
) -> core.HolePunch | None:
    """The next message within :data:`EXCHANGE_TIMEOUT`; None at the end of the stream when
    ``eof_ok``.

    Raises:
        DCUtRError: nothing came in time.
        DecodeError: malformed, or the stream ended when a message was due.
    """
    with trio.move_on_after(EXCHANGE_TIMEOUT):
        try:
            return await _read(stream, reader)
        except _EndOfStreamError:
            if eof_ok:
                return None
            raise DecodeError("dcutr stream ended", hint="dcutr eof") from None
    raise DCUtRError(f"dcutr: no {expected} within {EXCHANGE_TIMEOUT:g} s")


class _EndOfStreamError(DecodeError):
    def __init__(self) -> None:
        super().__init__("dcutr stream ended", hint="dcutr eof")


async def _read(stream: MuxedStream, reader: core.MessageReader) -> core.HolePunch:
    while True:
        message = reader.next_message()
        if message is not NEED_DATA:
            return message
        data = await stream.receive_some(4096)
        if not data:
            raise _EndOfStreamError()
        reader.receive_data(data)


@asynccontextmanager
async def open_dcutr(host: Host, config: DCUtRConfig | None = None) -> AsyncIterator[DCUtR]:
    """Run DCUtR on ``host`` for the duration of the block."""
    async with open_service_nursery() as nursery:
        dcutr = DCUtR(host, config if config is not None else DCUtRConfig(), nursery)
        stop_watching = host.peer_store.watch_observed(dcutr._on_observed)
        host.set_stream_handler(core.PROTOCOL_ID, dcutr._serve)
        try:
            await nursery.start(dcutr._watch)
            yield dcutr
        finally:
            stop_watching()
            host.remove_stream_handler(core.PROTOCOL_ID)
