"""libp2p mDNS discovery on Trio: one UDP socket on one interface, feeding a host's peer store.

Theory of operation
-------------------
:func:`run_mdns` (or :func:`open_mdns`) opens one IPv4 UDP socket bound to 224.0.0.251:5353,
joins the mDNS group on the configured interface only (``IP_ADD_MEMBERSHIP`` with that
interface, ``IP_MULTICAST_ALL`` off, so groups joined elsewhere on the machine are not heard)
and sends on that interface only (``IP_MULTICAST_IF``, TTL 255 as RFC 6762 section 11 asks).
The default interface is ``lo``: a node multicasts on a real network only when told to.

Three tasks share the socket, all in the caller's nursery and all ended with it:

* **queries**: the "find all peers" query at the times :func:`~.mdns.query_offset` gives
  (20-120 ms after start, then 1, 2, 4, ... s apart, up to ``query_interval``);
* **receiver**: every datagram is parsed by the sans-IO core; a malformed one is counted,
  logged at debug level and dropped. A query schedules our response; a response from another
  peer puts its dialable addresses into the peer store for the TTL it gave (at most
  ``max_addr_ttl``) and reports a peer not seen before (or seen and expired) to
  ``on_discovered``;
* **responder**: sends each scheduled response at its time. A response is due 20-120 ms
  after the query that asked for it (RFC 6762 section 6, so that peers answering one query do
  not collide), and never sooner than ``min_response_interval`` after the previous one (RFC
  6762 section 6: once a second per record), so a burst of queries gets one response.

We answer every query, our own included (discovery/mdns.md "Request": others then learn about
us passively); sending a query schedules our response directly, so this holds whether or not
the socket hears its own multicast. Our own responses, recognised by peer name or peer ID,
are ignored. When the service ends it multicasts a goodbye (TTL 0) so peers forget it at once.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import random
import socket
import struct
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final

import attrs
import trio

from ..aio import open_service_nursery
from ..errors import P2PChatError
from ..identity import PeerID
from ..multiaddr import Multiaddr, tcp_host_port, tcp_multiaddr
from ..net.host import DialError, Host
from ..protocols import mdns as core

logger = logging.getLogger(__name__)

__all__ = [
    "DiscoveredPeer",
    "MdnsConfig",
    "MdnsError",
    "MdnsService",
    "MdnsStatistics",
    "open_mdns",
    "run_mdns",
]

# Linux <linux/in.h>: deliver only the groups this socket joined (Python lacks the name).
_IP_MULTICAST_ALL: Final = getattr(socket, "IP_MULTICAST_ALL", 49)
# Linux <linux/sockios.h>: read an interface's IPv4 address.
_SIOCGIFADDR: Final = 0x8915
# RFC 6762 section 11: mDNS packets go out with IP TTL 255.
_MULTICAST_TTL: Final = 255
# Largest datagram read; anything over core.MAX_PACKET_SIZE is then refused by the core.
_RECV_SIZE: Final = 65536
# How long the goodbye may take when the service ends.
_GOODBYE_TIMEOUT: Final = 0.5


class MdnsError(P2PChatError):
    """The mDNS socket could not be set up on the chosen interface (the message says why)."""


@attrs.frozen
class MdnsConfig:
    """Where and how often mDNS runs. The defaults keep it on the loopback interface.

    Raises:
        ValueError: a setting out of range (the query interval must be at least 1 s, the
            first gap of the back-off).
    """

    #: An interface name (``"lo"``, ``"eth0"``) or the IPv4 address of one.
    interface: str = "lo"
    #: UDP port; 5353 everywhere except in tests that want a private group.
    port: int = core.MDNS_PORT
    #: ``_p2p._udp.local.``, or ``_p2p-<fingerprint>._udp.local.`` on a private network.
    service_name: str = core.SERVICE_NAME
    #: The longest gap between queries (the back-off from 1 s stops there).
    query_interval: float = core.DEFAULT_QUERY_INTERVAL
    #: TTL we announce, in seconds (RFC 6762 section 10: 120 s for host records).
    ttl: int = core.DEFAULT_TTL
    #: Longest a discovered address stays in the peer store without being heard again.
    max_addr_ttl: float = 600.0
    #: Random delay range before a response and before the first query (RFC 6762 sec. 6).
    response_delay: tuple[float, float] = (0.020, 0.120)
    #: At least this long between two multicasts of our response.
    min_response_interval: float = 1.0
    #: Hear our own multicast (needed for peers on the same host, harmless otherwise).
    multicast_loop: bool = True
    #: At most this many live discovered peers are tracked; more are ignored until some expire.
    max_peers: int = 256
    #: Dial each newly discovered peer (errors are logged, not raised).
    dial_discovered: bool = False
    #: Dials in flight at once when ``dial_discovered`` is set.
    max_concurrent_dials: int = 8

    def __attrs_post_init__(self) -> None:
        low, high = self.response_delay
        checks = {
            "port": 0 < self.port < 65536,
            "query_interval": self.query_interval >= core.FIRST_QUERY_GAP,
            "ttl": 0 < self.ttl < 2**31,
            "max_addr_ttl": self.max_addr_ttl > 0,
            "response_delay": 0 <= low <= high,
            "min_response_interval": self.min_response_interval >= 0,
            "max_peers": self.max_peers > 0,
            "max_concurrent_dials": self.max_concurrent_dials > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"MdnsConfig.{name} out of range: {getattr(self, name)!r}")


@attrs.frozen
class DiscoveredPeer:
    """A peer heard on the link: its ID and the dialable addresses it announced."""

    peer_id: PeerID
    addrs: tuple[Multiaddr, ...]
    ttl: float
    peer_name: str


@attrs.frozen
class MdnsStatistics:
    """Counters since the service started."""

    queries_sent: int
    responses_sent: int
    packets_received: int
    malformed_packets: int
    peers_discovered: int
    send_errors: int


@attrs.define
class _Counters:
    queries_sent: int = 0
    responses_sent: int = 0
    packets_received: int = 0
    malformed_packets: int = 0
    peers_discovered: int = 0
    send_errors: int = 0


@attrs.frozen
class _Interface:
    """How the socket names the interface: ``index`` (by name, Linux) or ``address``."""

    label: str
    index: int | None
    address: str | None

    def multicast_if(self) -> bytes:
        if self.index is not None:  # struct ip_mreqn {multiaddr, address, ifindex}
            return struct.pack("=4s4si", bytes(4), bytes(4), self.index)
        assert self.address is not None
        return socket.inet_aton(self.address)

    def membership(self) -> bytes:
        group = socket.inet_aton(core.MDNS_IPV4_GROUP)
        if self.index is not None:
            return struct.pack("=4s4si", group, bytes(4), self.index)
        assert self.address is not None
        return group + socket.inet_aton(self.address)

    @property
    def is_loopback(self) -> bool:
        if self.address is not None and ipaddress.IPv4Address(self.address).is_loopback:
            return True
        return self.label == "lo"


def _interface_ipv4(name: str) -> str | None:
    """The IPv4 address of interface ``name`` (Linux), or None if it has none."""
    if not sys.platform.startswith("linux"):
        return None
    import fcntl  # Linux only

    request = struct.pack("16sH14s", name.encode()[:15], socket.AF_INET, bytes(14))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            reply = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)
        except OSError:
            return None
    return socket.inet_ntoa(reply[20:24])


def _resolve_interface(interface: str) -> _Interface:
    try:
        address = ipaddress.IPv4Address(interface)
    except ValueError:
        pass
    else:
        return _Interface(interface, None, str(address))
    try:
        index = socket.if_nametoindex(interface)
    except OSError as exc:
        raise MdnsError(f"mDNS interface {interface!r}: no such interface") from exc
    return _Interface(interface, index, _interface_ipv4(interface))


async def _open_socket(config: MdnsConfig, interface: _Interface) -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    step = "configure"
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):  # other mDNS stacks on this host share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if sys.platform.startswith("linux"):
            sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, _MULTICAST_TTL)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(config.multicast_loop))
        step = "select the multicast interface of"
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, interface.multicast_if())
        step = "join 224.0.0.251 on"
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, interface.membership())
        step = f"bind 224.0.0.251:{config.port} for"
        # Bound to the group: unicast datagrams to this port are not ours to read.
        await sock.bind((core.MDNS_IPV4_GROUP, config.port))
    except OSError as exc:
        sock.close()
        raise MdnsError(f"cannot {step} mDNS interface {interface.label!r}: {exc}") from exc
    return sock


class MdnsService:
    """A running mDNS responder and querier. Made by :func:`run_mdns`; do not construct."""

    def __init__(
        self,
        host: Host,
        config: MdnsConfig,
        interface: _Interface,
        sock: trio.socket.SocketType,
        on_discovered: Callable[[DiscoveredPeer], object] | None,
    ) -> None:
        self.host = host
        self.config = config
        self.peer_name = core.generate_peer_name()
        #: The interface mDNS runs on, and its IPv4 address if known.
        self.interface = interface.label
        self.interface_address = interface.address
        self._interface = interface
        self._sock = sock
        self._on_discovered = on_discovered
        self._rng = random.SystemRandom()
        self._counters = _Counters()
        #: peer -> (time its record expires, the announcement); live entries only matter.
        self._peers: dict[PeerID, tuple[float, DiscoveredPeer]] = {}
        self._changed = trio.Event()
        #: reply kind ("peers" / "services") -> when it is due.
        self._due: dict[str, float] = {}
        self._last_sent: dict[str, float] = {}
        self._wakeup = trio.Event()
        self._dial_limit = trio.CapacityLimiter(config.max_concurrent_dials)
        self._nursery: trio.Nursery | None = None

    # -- public ----------------------------------------------------------------------------------

    def statistics(self) -> MdnsStatistics:
        """Counters of packets and peers since start."""
        return MdnsStatistics(**attrs.asdict(self._counters))

    def discovered_peers(self) -> list[PeerID]:
        """Peers heard from whose announcement has not expired."""
        now = trio.current_time()
        return [peer for peer, (expiry, _) in self._peers.items() if expiry > now]

    def discovered(self, peer: PeerID) -> DiscoveredPeer | None:
        """The live announcement of ``peer``, if any."""
        entry = self._peers.get(peer)
        if entry is None or entry[0] <= trio.current_time():
            return None
        return entry[1]

    async def wait_discovered(self, peer: PeerID) -> DiscoveredPeer:
        """Wait until ``peer`` is heard (returns at once if it is already known)."""
        while True:
            found = self.discovered(peer)
            if found is not None:
                return found
            await self._changed.wait()

    def announced_addrs(self) -> list[Multiaddr]:
        """The host's addresses as we announce them: dialable TCP only, an unspecified
        address replaced by the interface's, loopback only on a loopback interface, and only
        loopback addresses there."""
        out: list[Multiaddr] = []
        loopback = self._interface.is_loopback
        for addr in self.host.listen_addrs:
            target = tcp_host_port(addr)
            if target is None:
                continue
            try:
                ip = ipaddress.ip_address(target.host.split("%")[0])
            except ValueError:
                ip = None
            unspecified = ip is not None and ip.is_unspecified
            if loopback and ip is not None and not (ip.is_loopback or unspecified):
                continue  # on a loopback interface, only what is reachable on it
            if unspecified:
                if target.family != socket.AF_INET or self.interface_address is None:
                    continue
                addr = tcp_multiaddr(self.interface_address, target.port)
            if core.is_dialable(addr, allow_loopback=loopback) and addr not in out:
                out.append(addr)
        return out

    # -- tasks -----------------------------------------------------------------------------------

    async def _run(
        self, task_status: trio.TaskStatus[MdnsService] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._receive_loop)
                nursery.start_soon(self._respond_loop)
                nursery.start_soon(self._query_loop)
                logger.info(
                    "mDNS on %s (%s) as %s",
                    self.interface,
                    self.interface_address or "no IPv4 address",
                    self.peer_name,
                )
                task_status.started(self)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(_GOODBYE_TIMEOUT):
                await self._send_goodbye()
            self._sock.close()

    async def _query_loop(self) -> None:
        start = trio.current_time()
        first_delay = self._rng.uniform(*self.config.response_delay)
        index = 0
        while True:
            offset = core.query_offset(
                index,
                first_delay=first_delay,
                interval=self.config.query_interval,
                first_gap=core.FIRST_QUERY_GAP,
            )
            await trio.sleep_until(start + offset)
            if await self._send(core.build_query(self.config.service_name), "query"):
                self._counters.queries_sent += 1
            self._schedule("peers")  # we answer our own query too
            index += 1

    async def _receive_loop(self) -> None:
        while True:
            try:
                data, source = await self._sock.recvfrom(_RECV_SIZE)
            except OSError as exc:  # e.g. ICMP errors surfacing on the socket: keep going
                logger.debug("mDNS receive error: %s", exc)
                await trio.sleep(0.1)
                continue
            self._counters.packets_received += 1
            self._handle_packet(data, source)

    def _handle_packet(self, data: bytes, source: object) -> None:
        try:
            packet = core.parse_packet(data, self.config.service_name)
        except core.MdnsDecodeError as exc:
            self._counters.malformed_packets += 1
            logger.debug("ignored mDNS packet from %s: %s", source, exc)
            return
        if isinstance(packet, core.MdnsQuery):
            reply = core.plan_reply(
                packet, self.peer_name, ttl=self.config.ttl, service=self.config.service_name
            )
            if reply.peers:
                self._schedule("peers")
            if reply.services:
                self._schedule("services")
        elif isinstance(packet, core.MdnsResponse):
            for announcement in packet.peers:
                self._learn(announcement)

    def _learn(self, announcement: core.PeerAnnouncement) -> None:
        peer = announcement.peer_id
        if peer == self.host.peer_id or announcement.peer_name == self.peer_name:
            return  # our own response
        now = trio.current_time()
        if announcement.ttl == 0:  # goodbye
            if self._peers.pop(peer, None) is not None:
                logger.info("mDNS: %s said goodbye", peer)
            return
        loopback = self._interface.is_loopback
        addrs = tuple(a for a in announcement.addrs if core.is_dialable(a, allow_loopback=loopback))
        if not addrs:
            return
        ttl = min(float(announcement.ttl), self.config.max_addr_ttl)
        entry = self._peers.get(peer)
        is_new = entry is None or entry[0] <= now
        if is_new and not self._make_room(now):
            logger.debug("mDNS: ignoring %s, %d peers tracked", peer, len(self._peers))
            return
        found = DiscoveredPeer(peer, addrs, ttl, announcement.peer_name)
        self._peers[peer] = (now + ttl, found)
        self.host.peer_store.add_addrs(peer, addrs, ttl, now)
        self._changed.set()
        self._changed = trio.Event()
        if not is_new:
            return
        self._counters.peers_discovered += 1
        logger.info("mDNS: discovered %s at %s", peer, ", ".join(map(str, addrs)))
        if self._on_discovered is not None:
            try:
                self._on_discovered(found)
            except Exception:
                logger.exception("mDNS discovery callback raised for %s", peer)
        if self.config.dial_discovered and self._nursery is not None:
            self._nursery.start_soon(self._dial, peer)

    def _make_room(self, now: float) -> bool:
        if len(self._peers) < self.config.max_peers:
            return True
        self._peers = {p: e for p, e in self._peers.items() if e[0] > now}
        return len(self._peers) < self.config.max_peers

    async def _dial(self, peer: PeerID) -> None:
        async with self._dial_limit:
            if self.host.connection(peer) is not None:
                return
            try:
                await self.host.connect(peer)
            except DialError as exc:
                logger.info("mDNS: could not dial %s: %s", peer, exc)

    def _schedule(self, kind: str) -> None:
        """Make a ``kind`` response due soon, unless one already is."""
        if kind in self._due:
            return
        now = trio.current_time()
        due = now + self._rng.uniform(*self.config.response_delay)
        last = self._last_sent.get(kind)
        if last is not None:
            due = max(due, last + self.config.min_response_interval)
        self._due[kind] = due
        self._wakeup.set()

    async def _respond_loop(self) -> None:
        while True:
            if not self._due:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                continue
            when = min(self._due.values())
            with trio.move_on_at(when):
                await self._wakeup.wait()  # an earlier response may be scheduled meanwhile
            self._wakeup = trio.Event()
            now = trio.current_time()
            for kind in [k for k, due in self._due.items() if due <= now]:
                del self._due[kind]
                packet = self._build(kind, self.config.ttl)
                if packet is None:
                    continue
                self._last_sent[kind] = now
                if await self._send(packet, f"{kind} response"):
                    self._counters.responses_sent += 1

    def _build(self, kind: str, ttl: int) -> bytes | None:
        if kind == "services":
            return core.build_services_response(ttl=ttl, service=self.config.service_name)
        addrs = self.announced_addrs()
        if not addrs:
            logger.debug("mDNS: no address to announce on %s", self.interface)
            return None
        return core.build_response(
            self.peer_name,
            self.host.peer_id,
            addrs,
            ttl=ttl,
            service=self.config.service_name,
        )

    async def _send(self, packet: bytes, what: str) -> bool:
        try:
            await self._sock.sendto(packet, (core.MDNS_IPV4_GROUP, self.config.port))
        except OSError as exc:
            self._counters.send_errors += 1
            level = logging.DEBUG if exc.errno in (errno.ENOBUFS, errno.EAGAIN) else logging.INFO
            logger.log(level, "mDNS %s not sent on %s: %s", what, self.interface, exc)
            return False
        return True

    async def _send_goodbye(self) -> None:
        if "peers" not in self._last_sent:
            return  # never announced: nothing to take back
        packet = self._build("peers", 0)
        if packet is not None:
            await self._send(packet, "goodbye")


async def run_mdns(
    host: Host,
    config: MdnsConfig | None = None,
    *,
    on_discovered: Callable[[DiscoveredPeer], object] | None = None,
    task_status: trio.TaskStatus[MdnsService] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run mDNS discovery for ``host`` until cancelled; ``nursery.start`` returns the
    :class:`MdnsService` once the socket is ready.

    ``on_discovered`` is called (synchronously, from the receiving task) with each peer not
    heard before or heard again after its announcement expired; it should only hand the peer
    on (e.g. ``nursery.start_soon(host.connect, peer.peer_id)``). Whatever it raises is logged.

    Raises:
        MdnsError: the interface does not exist, or the socket cannot join the group on it
            or bind the port.
        ValueError: ``config.service_name`` is not a ``.local.`` service name.
    """
    service = await _prepare(host, config, on_discovered)
    await service._run(task_status)


async def _prepare(
    host: Host,
    config: MdnsConfig | None,
    on_discovered: Callable[[DiscoveredPeer], object] | None,
) -> MdnsService:
    config = config if config is not None else MdnsConfig()
    core.build_query(config.service_name)  # validates the service name before any I/O
    interface = _resolve_interface(config.interface)
    sock = await _open_socket(config, interface)
    return MdnsService(host, config, interface, sock, on_discovered)


@asynccontextmanager
async def open_mdns(
    host: Host,
    config: MdnsConfig | None = None,
    *,
    on_discovered: Callable[[DiscoveredPeer], object] | None = None,
) -> AsyncIterator[MdnsService]:
    """Run mDNS discovery for ``host`` for the duration of the ``async with`` block.

    Raises:
        MdnsError: as :func:`run_mdns`.
        ValueError: as :func:`run_mdns`.
    """
    # Set up outside the nursery so that a bad interface raises MdnsError itself.
    service = await _prepare(host, config, on_discovered)
    async with open_service_nursery() as nursery:
        await nursery.start(service._run)
        yield service
