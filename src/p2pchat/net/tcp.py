"""TCP transport: multiaddrs in, Trio socket streams and listeners out."""

from __future__ import annotations

import socket

import trio

from ..errors import P2PChatError
from ..multiaddr import Multiaddr, tcp_host_port, tcp_multiaddr


class TransportError(P2PChatError):
    """An address this transport cannot dial or listen on, or a failed dial."""


def _target(addr: Multiaddr) -> tuple[str, int]:
    target = tcp_host_port(addr)
    if target is None:
        raise TransportError(f"not a TCP address: {addr}")
    return target.host, target.port


async def dial_tcp(addr: Multiaddr) -> trio.SocketStream:
    """Open a TCP connection to ``/ip4|ip6|dns*/<host>/tcp/<port>[/p2p/<id>]``.

    Nagle is off (trio's default), so small protocol messages go out at once.

    Raises:
        TransportError: not a TCP address, or the connection failed.
    """
    host, port = _target(addr)
    try:
        return await trio.open_tcp_stream(host, port)
    except OSError as exc:
        raise TransportError(f"cannot connect to {addr}: {_reason(exc)}") from exc


def _reason(exc: OSError) -> str:
    """The most specific reason: trio puts each attempt's error in ``__cause__``."""
    cause: BaseException | None = exc.__cause__
    while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        cause = cause.exceptions[0]
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return exc.strerror.lower() if exc.strerror else str(exc)


async def listen_tcp(addr: Multiaddr) -> list[trio.SocketListener]:
    """Bind TCP listeners for ``/ip4|ip6/<host>/tcp/<port>`` (port 0: any free port).

    Raises:
        TransportError: not a TCP address, or the address cannot be bound.
    """
    host, port = _target(addr)
    try:
        return await trio.open_tcp_listeners(port, host=host)
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


def remote_multiaddr(stream: trio.SocketStream) -> Multiaddr | None:
    """The peer's address of a TCP stream, or None if the socket no longer knows it."""
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return None
    return tcp_multiaddr(peer[0], peer[1])
