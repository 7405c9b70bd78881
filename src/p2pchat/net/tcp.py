"""TCP transport: multiaddrs in, Trio socket streams and listeners out."""

from __future__ import annotations

import fcntl
import socket
import struct
from collections.abc import Iterable
from typing import Final

import trio

from ..errors import P2PChatError
from ..multiaddr import Multiaddr, tcp_host_port, tcp_multiaddr

_SIOCGIFADDR: Final = 0x8915  # linux/sockios.h


class TransportError(P2PChatError):
    """An address this transport cannot dial or listen on, or a failed dial."""


def _target(addr: Multiaddr) -> tuple[str, int]:
    target = tcp_host_port(addr)
    if target is None:
        raise TransportError(f"not a TCP address: {addr}")
    return target.host, target.port


async def dial_tcp(addr: Multiaddr, *, local_port: int | None = None) -> trio.SocketStream:
    """Open a TCP connection to ``/ip4|ip6|dns*/<host>/tcp/<port>[/p2p/<id>]``.

    Nagle is off (trio's default), so small protocol messages go out at once. With
    ``local_port`` the connection leaves from that port (``SO_REUSEADDR`` and ``SO_REUSEPORT``,
    beside a listener bound with ``reuse_port``), so that NATs map it as they map the listen port
    and two such dials can cross in a simultaneous open (hole punching, specs/dcutr.md); the
    host must then be an IP address.

    Raises:
        TransportError: not a TCP address, or the connection failed.
    """
    host, port = _target(addr)
    try:
        if local_port is None:
            return await trio.open_tcp_stream(host, port)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        try:
            _reuse(sock)
            await sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", local_port))
            await sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return trio.SocketStream(sock)
    except OSError as exc:
        raise TransportError(f"cannot connect to {addr}: {_reason(exc)}") from exc


def _reuse(sock: trio.socket.SocketType) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


def _reason(exc: OSError) -> str:
    """The most specific reason: trio puts each attempt's error in ``__cause__``."""
    cause: BaseException | None = exc.__cause__
    while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        cause = cause.exceptions[0]
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return exc.strerror.lower() if exc.strerror else str(exc)


async def listen_tcp(addr: Multiaddr, *, reuse_port: bool = False) -> list[trio.SocketListener]:
    """Bind TCP listeners for ``/ip4|ip6/<host>/tcp/<port>`` (port 0: any free port). With
    ``reuse_port``, one listener whose port outbound dials may share (see :func:`dial_tcp`);
    the host must then be an IP address.

    Raises:
        TransportError: not a TCP address, or the address cannot be bound.
    """
    host, port = _target(addr)
    try:
        if not reuse_port:
            return await trio.open_tcp_listeners(port, host=host)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        try:
            _reuse(sock)
            await sock.bind((host, port))
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
        return [trio.SocketListener(sock)]
    except OSError as exc:
        raise TransportError(f"cannot listen on {addr}: {_reason(exc)}") from exc


def listener_multiaddr(listener: trio.SocketListener) -> Multiaddr:
    """The multiaddr a bound listener actually listens on (the real port for port 0)."""
    sockname = listener.socket.getsockname()
    host, port = sockname[0], sockname[1]
    scoped = listener.socket.family == socket.AF_INET6 and len(sockname) >= 4 and sockname[3]
    if scoped and "%" not in host:
        host = f"{host}%{sockname[3]}"
    return tcp_multiaddr(host, port)


def interface_addresses() -> list[str]:
    """This machine's interface addresses (IPv4, then IPv6 without link-local ones), loopback
    included; read from the kernel (Linux: ``SIOCGIFADDR``, ``/proc/net/if_inet6``). Where they
    cannot be read, the loopback addresses."""
    found: list[str] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            for _index, name in socket.if_nameindex():
                request = struct.pack("256s", name.encode()[:15])
                try:
                    reply = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)
                except OSError:
                    continue  # no IPv4 address on this interface
                found.append(socket.inet_ntoa(reply[20:24]))
    except OSError:
        pass
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as table:
            for line in table:
                fields = line.split()
                if len(fields) >= 4 and fields[3] != "20":  # scope 0x20: link-local
                    raw = bytes.fromhex(fields[0])
                    found.append(socket.inet_ntop(socket.AF_INET6, raw))
    except (OSError, ValueError):
        pass
    return list(dict.fromkeys(found)) or ["127.0.0.1", "::1"]


def expand_wildcard(addr: Multiaddr, interfaces: Iterable[str]) -> list[Multiaddr]:
    """A bound ``/ip4/0.0.0.0/tcp/<port>`` (or ``/ip6/::/...``) as the addresses others can
    dial: one per interface address of that family; any other address as it is."""
    target = tcp_host_port(addr)
    if target is None or target.host not in ("0.0.0.0", "::"):
        return [addr]
    family = socket.AF_INET if target.host == "0.0.0.0" else socket.AF_INET6
    out = []
    for ip in interfaces:
        is_v4 = ":" not in ip
        if (family == socket.AF_INET) == is_v4:
            out.append(tcp_multiaddr(ip, target.port))
    return out or [addr]


def remote_multiaddr(stream: trio.SocketStream) -> Multiaddr | None:
    """The peer's address of a TCP stream, or None if the socket no longer knows it."""
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return None
    return tcp_multiaddr(peer[0], peer[1])
