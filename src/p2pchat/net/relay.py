"""Circuit relay v2 on a Host: the relay service (``hop``) and the client (reservations, the
``stop`` side, dialing ``/p2p-circuit`` addresses).

Normative text: ``specs/relay.md``; the decisions are the core's (``protocols/relay``).

Theory of operation
-------------------
* :func:`open_relay_service` serves ``hop``. ``RESERVE`` asks :class:`~p2pchat.protocols.relay.
  RelayState`; a grant is answered with our addresses, a voucher and the circuit limit.
  ``CONNECT`` opens a ``stop`` stream to the target over the connection it keeps to us, and once
  the target says OK splices the two streams in the hop handler's task (which lives in the
  connection's nursery): two copy loops that charge each chunk to the circuit's byte budget,
  under a deadline of the circuit's duration. Whatever ends first ends the circuit and resets
  both streams.
* :func:`open_relay_client` serves ``stop`` and registers a stream transport with the Host for
  ``/p2p-circuit`` addresses: the Host dials them through :meth:`RelayClient.dial` and upgrades
  the ``hop`` stream like a TCP socket (we are the Noise initiator); an accepted ``stop`` stream
  is handed to :meth:`Host.serve_inbound`, which upgrades it as the responder and runs the
  connection until it ends. :meth:`RelayClient.reserve` reserves a slot; the client's task keeps
  the reservations on the relays it was given and refreshes each before it expires, and the
  Host advertises the resulting ``/p2p-circuit`` addresses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Final, TypeVar

import attrs
import trio

from ..aio import open_service_nursery
from ..errors import DecodeError, P2PChatError
from ..identity import PeerID
from ..multiaddr import Multiaddr, MultiaddrError, tcp_host_port
from ..protocols import relay as core
from ..protocols._need_data import NEED_DATA
from ..protocols.relay.state import HeldReservation, reservation_addrs
from ..records import RecordError
from .host import DialError, Host, StreamOpenError
from .muxer import MuxedStream
from .tcp import TransportError

logger = logging.getLogger(__name__)

READ_SIZE: Final = 4096
#: specs/relay.md "Relay policy": the relay forwards at most this many bytes per read (one
#: chunk in flight per direction of each circuit: 64 circuits hold at most 8 MiB).
BUFFER_SIZE: Final = 65536
#: Seconds for one request/answer exchange on hop or stop.
EXCHANGE_TIMEOUT: Final = 10.0
#: Seconds between two attempts to reserve on a relay that refused or could not be reached.
RETRY_INTERVAL: Final = 60.0

M = TypeVar("M")


class RelayError(P2PChatError):
    """A relay refused (``status`` says how) or could not be reached (``status`` is None)."""

    def __init__(self, msg: str, status: core.Status | None = None) -> None:
        super().__init__(msg)
        self.status = status


def is_relayed(addr: Multiaddr | None) -> bool:
    """True for a connection's remote address that goes through a relay."""
    return addr is not None and core.is_circuit(addr)


async def _read_message(stream: MuxedStream, reader: core.MessageReader[M]) -> M:
    """One framed message; bytes after it stay in ``reader``.

    Raises:
        DecodeError: malformed, or the stream ended first.
    """
    while True:
        message = reader.next_message()
        if message is not NEED_DATA:
            return message
        data = await stream.receive_some(READ_SIZE)
        if not data:
            raise DecodeError("relay stream ended before a message", hint="relay eof")
        reader.receive_data(data)


# -- the relay ---------------------------------------------------------------------------------


@attrs.frozen
class RelayServiceConfig:
    limits: core.RelayLimits = attrs.Factory(core.RelayLimits)


class RelayService:
    """The hop side; made by :func:`open_relay_service`."""

    def __init__(self, host: Host, config: RelayServiceConfig) -> None:
        self.host = host
        self.state = core.RelayState(config.limits)
        self.circuits_cut = 0

    async def _serve_hop(self, stream: MuxedStream) -> None:
        reader = core.MessageReader(core.decode_hop)
        try:
            with trio.fail_after(EXCHANGE_TIMEOUT):
                request = await _read_message(stream, reader)
        except DecodeError as exc:
            logger.info("hop from %s: %s", stream.remote_peer, exc)
            await self._status(stream, core.Status.MALFORMED_MESSAGE)
            return
        relayed = is_relayed(stream.connection.remote_addr)
        if request.type is core.HopType.RESERVE:
            await self._reserve(stream, relayed=relayed)
        elif request.type is core.HopType.CONNECT and request.peer is not None:
            await self._connect(stream, request.peer.id, reader, relayed=relayed)
        elif request.type is core.HopType.CONNECT:
            await self._status(stream, core.Status.MALFORMED_MESSAGE)
        else:
            await self._status(stream, core.Status.UNEXPECTED_MESSAGE)

    async def _status(self, stream: MuxedStream, status: core.Status) -> None:
        message = core.HopMessage(core.HopType.STATUS, status=status)
        with trio.move_on_after(EXCHANGE_TIMEOUT):
            await stream.send_all(core.frame(message))

    async def _reserve(self, stream: MuxedStream, *, relayed: bool) -> None:
        peer = stream.remote_peer
        now = time.time()
        granted = self.state.reserve(peer, _ip(stream.connection.remote_addr), now, relayed=relayed)
        if isinstance(granted, core.Status):
            logger.info("refused a reservation to %s: %s", peer, granted.name)
            await self._status(stream, granted)
            return
        voucher = core.ReservationVoucher(self.host.peer_id, peer, granted.expire)
        reply = core.HopMessage(
            core.HopType.STATUS,
            reservation=core.Reservation(
                granted.expire,
                tuple(
                    a.with_peer_id(self.host.peer_id)
                    for a in reservation_addrs(self.host.listen_addrs)
                ),
                voucher.seal(self.host.identity).encode(),
            ),
            limit=self.state.limits.limit,
            status=core.Status.OK,
        )
        logger.info("reservation for %s until %d", peer, granted.expire)
        with trio.move_on_after(EXCHANGE_TIMEOUT):
            await stream.send_all(core.frame(reply))

    async def _connect(
        self,
        src_stream: MuxedStream,
        dst: PeerID,
        reader: core.MessageReader[core.HopMessage],
        *,
        relayed: bool,
    ) -> None:
        src = src_stream.remote_peer
        circuit = self.state.open_circuit(src, dst, time.time(), relayed=relayed)
        if isinstance(circuit, core.Status):
            logger.info("refused a circuit %s -> %s: %s", src, dst, circuit.name)
            await self._status(src_stream, circuit)
            return
        try:
            dst_stream = await self._open_stop(src, dst)
            if dst_stream is None:
                await self._status(src_stream, core.Status.CONNECTION_FAILED)
                return
            try:
                ok = core.HopMessage(
                    core.HopType.STATUS, limit=self.state.limits.limit, status=core.Status.OK
                )
                await src_stream.send_all(core.frame(ok))
                early = reader.trailing()
                if early:
                    await dst_stream.send_all(early)
                await self._splice(circuit, src_stream, dst_stream)
            finally:
                with trio.CancelScope(shield=True):
                    await dst_stream.reset()
        finally:
            self.state.close_circuit(circuit)

    async def _open_stop(self, src: PeerID, dst: PeerID) -> MuxedStream | None:
        """A ``stop`` stream to ``dst`` that accepted ``src``, or None."""
        if self.host.connection(dst) is None:
            logger.info("circuit %s -> %s: the target is not connected", src, dst)
            return None
        try:
            with trio.fail_after(EXCHANGE_TIMEOUT):
                stream = await self.host.new_stream(dst, [core.STOP_PROTOCOL])
                try:
                    request = core.StopMessage(
                        core.StopType.CONNECT, peer=core.Peer(src), limit=self.state.limits.limit
                    )
                    await stream.send_all(core.frame(request))
                    reader = core.MessageReader(core.decode_stop)
                    answer = await _read_message(stream, reader)
                except BaseException:
                    with trio.CancelScope(shield=True):
                        await stream.reset()
                    raise
        except (DialError, StreamOpenError, DecodeError, trio.TooSlowError) as exc:
            logger.info("circuit %s -> %s: stop failed: %s", src, dst, exc or "timeout")
            return None
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.info("circuit %s -> %s: stop stream lost: %s", src, dst, exc)
            return None
        if answer.type is not core.StopType.STATUS or answer.status is not core.Status.OK:
            logger.info("circuit %s -> %s: the target answered %s", src, dst, answer.status)
            await stream.reset()
            return None
        # The target may speak on the relayed connection right behind its STATUS (a
        # multistream-select listener that writes its header first): the splice forwards it.
        stream.unreceive(reader.trailing())
        return stream

    async def _splice(self, circuit: core.Circuit, a: MuxedStream, b: MuxedStream) -> None:
        """Copy both ways until both ends are done, the budget is spent or time is up."""
        reason = "closed"

        async def pump(src: MuxedStream, dst: MuxedStream, direction: int) -> None:
            nonlocal reason
            while True:
                data = await src.receive_some(BUFFER_SIZE)
                if not data:
                    await dst.send_eof()
                    return
                allowed = circuit.take(direction, len(data))
                if allowed:
                    await dst.send_all(data[:allowed])
                if allowed < len(data):
                    reason = "data limit"
                    nursery.cancel_scope.cancel()
                    return

        with trio.move_on_after(self.state.limits.circuit_duration) as deadline:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(pump, a, b, 0)
                    nursery.start_soon(pump, b, a, 1)
            except* (trio.BrokenResourceError, trio.ClosedResourceError):
                reason = "stream lost"
        if deadline.cancelled_caught:
            reason = "duration limit"
        if reason in ("data limit", "duration limit"):
            self.circuits_cut += 1
        logger.info("circuit %s -> %s ended: %s", circuit.src, circuit.dst, reason)
        with trio.CancelScope(shield=True):
            await a.reset()


@asynccontextmanager
async def open_relay_service(
    host: Host, config: RelayServiceConfig | None = None
) -> AsyncIterator[RelayService]:
    """Serve ``hop`` on ``host`` for the duration of the block."""
    service = RelayService(host, config if config is not None else RelayServiceConfig())
    host.set_stream_handler(core.HOP_PROTOCOL, service._serve_hop)
    try:
        yield service
    finally:
        host.remove_stream_handler(core.HOP_PROTOCOL)


def _ip(addr: Multiaddr | None) -> str:
    target = tcp_host_port(addr) if addr is not None and not core.is_circuit(addr) else None
    return target.host if target is not None else "?"


# -- the client --------------------------------------------------------------------------------


class RelayClient:
    """Reservations, the stop side, and dialing through relays; made by
    :func:`open_relay_client`."""

    def __init__(self, host: Host, max_relays: int = 8) -> None:
        self.host = host
        self.book = core.ReservationBook(max_relays)
        self._changed: list[Callable[[], None]] = []

    # -- reservations --------------------------------------------------------------------------

    async def reserve(self, relay: Multiaddr | PeerID) -> HeldReservation:
        """Reserve (or refresh) a slot on ``relay`` and advertise the circuit addresses.

        Raises:
            RelayError: refused (with the relay's status), or the relay could not be reached.
        """
        try:
            with trio.fail_after(EXCHANGE_TIMEOUT):
                stream = await self.host.new_stream(relay, [core.HOP_PROTOCOL])
                try:
                    await stream.send_all(core.frame(core.HopMessage(core.HopType.RESERVE)))
                    answer = await _read_message(stream, core.MessageReader(core.decode_hop))
                finally:
                    with trio.CancelScope(shield=True):
                        await stream.aclose()
        except (DialError, StreamOpenError, DecodeError) as exc:
            raise RelayError(f"reservation on {relay}: {exc}") from exc
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise RelayError(f"reservation on {relay}: stream lost") from exc
        except trio.TooSlowError:
            raise RelayError(f"reservation on {relay}: timed out") from None
        relay_id = stream.remote_peer
        if answer.status is not core.Status.OK or answer.reservation is None:
            status = answer.status
            name = status.name if status is not None else "no status"
            raise RelayError(f"reservation on {relay_id} refused: {name}", status)
        rsvp = answer.reservation
        voucher = rsvp.voucher
        if voucher is not None:
            try:
                core.open_voucher(voucher, relay=relay_id, peer=self.host.peer_id)
            except RecordError as exc:
                logger.info("relay %s sent a bad voucher: %s", relay_id, exc)
                voucher = None
        conn = stream.connection
        addrs = tuple(a.without_peer_id() for a in rsvp.addrs if not core.is_circuit(a))
        if not addrs and conn.remote_addr is not None and not is_relayed(conn.remote_addr):
            addrs = (conn.remote_addr.without_peer_id(),)
        held = HeldReservation(relay_id, rsvp.expire, addrs, voucher)
        if not self.book.record(held):
            raise RelayError(f"reservation on {relay_id}: we hold {self.book.max_relays} already")
        self.host.protect(relay_id)
        self._advertise()
        logger.info("reserved on relay %s until %d", relay_id, rsvp.expire)
        return held

    def _advertise(self) -> None:
        self.host.set_extra_addrs(self.book.circuit_addrs(time.time()))

    def reservations(self) -> list[HeldReservation]:
        return self.book.live(time.time())

    async def keep_reservations(self, relays: Sequence[Multiaddr]) -> None:
        """Hold a reservation on each of ``relays``: reserve, refresh before expiry, retry
        after a failure every :data:`RETRY_INTERVAL` seconds, and reserve again when the
        connection to a relay was lost (the relay reaches us only over it). Runs until
        cancelled."""
        next_try: dict[Multiaddr, float] = dict.fromkeys(relays, 0.0)
        held_by: dict[Multiaddr, PeerID] = {}
        while True:
            now = time.time()
            due = set(self.book.due(now))
            for addr, when in next_try.items():
                relay = held_by.get(addr)
                connected = relay is not None and self.host.connection(relay) is not None
                if relay is not None and relay not in due and self._holds(relay, now) and connected:
                    continue
                if when > now:
                    continue
                try:
                    held = await self.reserve(addr)
                except RelayError as exc:
                    logger.warning("%s", exc)
                    next_try[addr] = now + RETRY_INTERVAL
                    continue
                held_by[addr] = held.relay
            self._advertise()
            await trio.sleep(min(RETRY_INTERVAL, core.state.REFRESH_MARGIN / 2))

    def _holds(self, relay: PeerID, now: float) -> bool:
        return any(h.relay == relay for h in self.book.live(now))

    # -- the stop side -------------------------------------------------------------------------

    async def _serve_stop(self, stream: MuxedStream) -> None:
        reader = core.MessageReader(core.decode_stop)
        relay = stream.remote_peer
        try:
            with trio.fail_after(EXCHANGE_TIMEOUT):
                request = await _read_message(stream, reader)
        except DecodeError as exc:
            logger.info("stop from %s: %s", relay, exc)
            await self._stop_status(stream, core.Status.MALFORMED_MESSAGE)
            return
        if request.type is not core.StopType.CONNECT or request.peer is None:
            await self._stop_status(stream, core.Status.UNEXPECTED_MESSAGE)
            return
        if not self._holds(relay, time.time()):
            logger.info("refused a relayed connection through %s: no reservation there", relay)
            await self._stop_status(stream, core.Status.PERMISSION_DENIED)
            return
        src = request.peer.id
        await self._stop_status(stream, core.Status.OK)
        stream.unreceive(reader.trailing())
        base = stream.connection.remote_addr
        if base is None or is_relayed(base):
            where = Multiaddr.from_string(f"/p2p/{relay}/p2p-circuit")
        else:
            where = core.circuit_addr(base, relay)
        logger.info("relayed connection from %s through %s", src, relay)
        await self.host.serve_inbound(stream, where.with_peer_id(src), expected_peer=src)

    async def _stop_status(self, stream: MuxedStream, status: core.Status) -> None:
        with trio.move_on_after(EXCHANGE_TIMEOUT):
            await stream.send_all(core.frame(core.StopMessage(core.StopType.STATUS, status=status)))

    # -- dialing -------------------------------------------------------------------------------

    async def dial(self, peer: PeerID, addr: Multiaddr) -> trio.abc.Stream:
        """A ``hop`` stream connected to ``peer`` through the relay that ``addr`` names.

        Raises:
            TransportError: a bad address, the relay refused (its status in the message), or
                could not be reached.
        """
        try:
            target = core.parse_circuit(addr)
        except MultiaddrError as exc:
            raise TransportError(str(exc)) from exc
        if target.dst is not None and target.dst != peer:
            raise TransportError(f"{addr} is not an address of {peer}")
        relay: Multiaddr | PeerID | None = (
            target.relay_addr if len(target.relay_addr) > 1 else target.relay
        )
        if relay is None:
            raise TransportError(f"{addr} does not name its relay")
        try:
            stream = await self.host.new_stream(relay, [core.HOP_PROTOCOL])
        except (DialError, StreamOpenError) as exc:
            raise TransportError(f"relay of {addr}: {exc}") from exc
        try:
            request = core.HopMessage(core.HopType.CONNECT, peer=core.Peer(peer))
            await stream.send_all(core.frame(request))
            reader = core.MessageReader(core.decode_hop)
            answer = await _read_message(stream, reader)
        except (DecodeError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            await stream.reset()
            raise TransportError(f"relay of {addr}: {exc}") from exc
        except BaseException:
            with trio.CancelScope(shield=True):
                await stream.reset()
            raise
        if answer.status is not core.Status.OK:
            await stream.aclose()
            name = answer.status.name if answer.status is not None else "no status"
            raise TransportError(f"{addr}: the relay refused: {name}")
        stream.unreceive(reader.trailing())
        return stream


@asynccontextmanager
async def open_relay_client(
    host: Host, relays: Sequence[Multiaddr] = (), *, max_relays: int = 8
) -> AsyncIterator[RelayClient]:
    """Accept relayed connections, dial ``/p2p-circuit`` addresses, and hold reservations on
    ``relays`` for the duration of the block."""
    client = RelayClient(host, max_relays)
    host.set_stream_handler(core.STOP_PROTOCOL, client._serve_stop)
    host.add_stream_transport(core.is_circuit, client.dial)
    try:
        async with open_service_nursery() as nursery:
            if relays:
                nursery.start_soon(client.keep_reservations, list(relays))
            yield client
    finally:
        host.remove_stream_handler(core.STOP_PROTOCOL)
        host.set_extra_addrs([])
