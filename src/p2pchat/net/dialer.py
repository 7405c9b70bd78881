"""Dialing for a :class:`~p2pchat.net.host.Host`: outbound connections, and the direct dials
of a hole punch.

Theory of operation
-------------------
The Host owns one :class:`Dialer` and forwards :meth:`Host.connect`,
:meth:`Host.connect_direct` and :meth:`Host.add_stream_transport` to it. A dial tries the
addresses one after the other (direct ones first, relayed ones as the fallback, specs/host.md
"Connections"), each within ``dial_timeout``; concurrent dials to the same peer share one
attempt. A hole punch's direct dial (specs/dcutr.md) dials all its addresses at once. Every
connection made is charged to the Host's resources and then run by the Host in its nursery,
like an inbound one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from ..errors import P2PChatError
from ..identity import PeerID
from ..multiaddr import Multiaddr, tcp_host_port
from .muxer import MuxedConnection
from .peerstore import CONNECTED_ADDR_TTL, TEMP_ADDR_TTL
from .resources import ResourceLimitError
from .secure import HandshakeError
from .simopen import choose_role
from .tcp import TransportError, dial_tcp
from .upgrade import upgrade

if TYPE_CHECKING:
    from .host import Host

logger = logging.getLogger("p2pchat.net.host")  # its messages are the Host's

#: Opens a byte stream to a peer at an address TCP does not handle (``/p2p-circuit``); raises
#: :class:`~p2pchat.net.tcp.TransportError` on failure. See :meth:`Host.add_stream_transport`.
StreamDialer = Callable[[PeerID, Multiaddr], Awaitable[trio.abc.Stream]]


class DialError(P2PChatError):
    """No connection to the peer could be made; the message says why for each address."""


def is_relayed(addr: Multiaddr) -> bool:
    return any(c.protocol.name == "p2p-circuit" for c in addr)


@attrs.define
class _DialAttempt:
    done: trio.Event = attrs.Factory(trio.Event)
    result: MuxedConnection | None = None
    error: DialError | None = None


class Dialer:
    """The Host's outbound side; made by the Host."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._attempts: dict[PeerID, _DialAttempt] = {}
        self._transports: list[tuple[Callable[[Multiaddr], bool], StreamDialer]] = []
        #: Addresses of peers whose hole punch we answer: (peer, role wait), see
        #: :meth:`expect_punch`.
        self._punching: dict[Multiaddr, tuple[PeerID, float]] = {}

    @contextmanager
    def expect_punch(
        self, peer: PeerID, addrs: Sequence[Multiaddr], role_wait: float
    ) -> Iterator[None]:
        """While the block runs, the role on an inbound connection from one of ``addrs`` (a
        hole punch of ``peer`` we answer, whose dial may reach our listener) is chosen as on
        :meth:`connect_direct` with ``role_wait``; where we are the dialer it must be ``peer``."""
        added = [a for a in addrs if a not in self._punching]
        for addr in added:
            self._punching[addr] = (peer, role_wait)
        try:
            yield
        finally:
            for addr in added:
                self._punching.pop(addr, None)

    async def resolve_inbound(
        self, transport: trio.abc.Stream, where: Multiaddr | None
    ) -> tuple[trio.abc.Stream, PeerID | None]:
        """For an inbound connection from an address of a hole punch we answer, the role is
        chosen (:func:`~p2pchat.net.simopen.choose_role`): the stream to upgrade, and the peer
        when we are the dialer. Any other connection is returned as it is, with None."""
        expected = self._punching.get(where) if where is not None else None
        if expected is None:
            return transport, None
        peer, wait = expected
        stream, dialer = await choose_role(transport, wait)
        return stream, peer if dialer else None

    def add_stream_transport(
        self, handles: Callable[[Multiaddr], bool], dial: StreamDialer
    ) -> None:
        """See :meth:`Host.add_stream_transport`."""
        self._transports.append((handles, dial))

    async def _open_transport(self, peer: PeerID, addr: Multiaddr) -> trio.abc.Stream:
        for handles, dial in self._transports:
            if handles(addr):
                return await dial(peer, addr)
        return await dial_tcp(addr, local_port=self._local_port(addr))

    def _local_port(self, addr: Multiaddr) -> int | None:
        """With ``reuse_port``: the listen port of ``addr``'s family to dial from."""
        if not self._host.config.reuse_port:
            return None
        target = tcp_host_port(addr)
        if target is None:
            return None
        for listen in self._host.listen_addrs:
            bound = tcp_host_port(listen)
            if bound is not None and (":" in bound.host) == (":" in target.host):
                return bound.port
        return None

    async def _adopt(self, conn: MuxedConnection, where: str) -> None:
        """Charge ``conn`` to the Host's resources and run it in the Host's nursery.

        Raises:
            DialError: a resource limit refused it (it is closed).
        """
        try:
            self._host._admit(conn, None)
        except ResourceLimitError as exc:
            logger.warning("dropped our connection to %s: %s", conn.remote_peer, exc)
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await conn.aclose()
            raise DialError(f"{where}: {exc}") from exc
        try:
            await self._host._nursery.start(self._host._run_connection, conn)
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await conn.aclose()
            raise

    async def connect(self, target: PeerID | Multiaddr) -> MuxedConnection:
        """See :meth:`Host.connect`."""
        host = self._host
        if isinstance(target, Multiaddr):
            peer = target.peer_id
            if peer is None:
                raise ValueError(f"address needs a /p2p/<peer id> suffix: {target}")
            host.peer_store.add_addrs(peer, [target], TEMP_ADDR_TTL, trio.current_time())
            candidates = [target.without_peer_id()]
        else:
            peer = target
            candidates = []
        if peer == host.peer_id:
            raise DialError("cannot dial ourselves")
        live = host.connection(peer)
        if live is not None:
            return live
        attempt = self._attempts.get(peer)
        if attempt is None:
            attempt = self._attempts[peer] = _DialAttempt()
            try:
                addrs = candidates + [
                    a
                    for a in host.peer_store.addrs(peer, trio.current_time())
                    if a not in candidates
                ]
                # Direct addresses first: a relayed connection is the fallback.
                addrs.sort(key=is_relayed)
                attempt.result = await self._dial(peer, addrs)
            except DialError as exc:
                attempt.error = exc
                raise
            finally:
                del self._attempts[peer]
                attempt.done.set()
            return attempt.result
        await attempt.done.wait()
        if attempt.result is None:
            raise DialError(str(attempt.error))
        return attempt.result

    async def _dial(self, peer: PeerID, addrs: Sequence[Multiaddr]) -> MuxedConnection:
        if not addrs:
            raise DialError(f"no known address for {peer}")
        config = self._host.config
        failures: list[str] = []
        # A peer with relayed addresses may sit behind a NAT that drops our SYNs: its direct
        # addresses get relay_fallback_after seconds in all, then the relay is tried.
        direct_until = math.inf
        if any(is_relayed(a) for a in addrs):
            direct_until = trio.current_time() + config.relay_fallback_after
        for addr in addrs:
            timeout = config.dial_timeout
            if not is_relayed(addr):
                timeout = min(timeout, direct_until - trio.current_time())
                if timeout <= 0:
                    failures.append(f"{addr}: not tried, the relay's turn")
                    continue
            try:
                with trio.fail_after(timeout):
                    tcp = await self._open_transport(peer, addr)
                    conn = await upgrade(
                        tcp,
                        self._host.identity,
                        outbound=True,
                        expected_peer=peer,
                        remote_addr=addr,
                        handshake_timeout=config.handshake_timeout,
                        config=config.muxer,
                    )
            except trio.TooSlowError:
                failures.append(f"{addr}: timed out")
                continue
            except TransportError as exc:
                failures.append(str(exc))  # names the address already
                continue
            except HandshakeError as exc:
                failures.append(f"{addr}: {exc}")
                continue
            self._host.peer_store.add_addrs(peer, [addr], CONNECTED_ADDR_TTL, trio.current_time())
            await self._adopt(conn, str(addr))
            return conn
        raise DialError("; ".join(failures))

    async def connect_direct(
        self,
        peer: PeerID,
        addrs: Sequence[Multiaddr],
        *,
        initiator: bool,
        role_wait: float | None = None,
    ) -> MuxedConnection:
        """See :meth:`Host.connect_direct`."""
        config = self._host.config
        failures: list[str] = []
        won: list[MuxedConnection] = []

        async def attempt(addr: Multiaddr) -> None:
            try:
                tcp: trio.abc.Stream = await dial_tcp(addr, local_port=self._local_port(addr))
                outbound = initiator
                if not initiator and role_wait is not None:
                    tcp, outbound = await choose_role(tcp, role_wait)
                conn = await upgrade(
                    tcp,
                    self._host.identity,
                    outbound=outbound,
                    expected_peer=peer if outbound else None,
                    remote_addr=addr,
                    handshake_timeout=config.handshake_timeout,
                    config=config.muxer,
                )
            except (TransportError, HandshakeError) as exc:
                failures.append(f"{addr}: {exc}")
                return
            if conn.remote_peer != peer or won:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await conn.aclose()
                return
            won.append(conn)
            nursery.cancel_scope.cancel()

        with trio.move_on_after(config.dial_timeout):
            async with trio.open_nursery() as nursery:
                for addr in addrs:
                    nursery.start_soon(attempt, addr)
        if not won:
            raise DialError("; ".join(failures) or "hole punch timed out")
        conn = won[0]
        await self._adopt(conn, str(conn.remote_addr))
        return conn
