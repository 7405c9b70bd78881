"""ping (``/ipfs/ping/1.0.0``) served and used by a Host."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import trio

from ..identity import PeerID
from ..multiaddr import Multiaddr
from ..protocols import ping as core
from .muxer import MuxedStream

if TYPE_CHECKING:
    from .host import Host

PROTOCOL_ID: Final = core.PROTOCOL_ID
#: An idle ping stream is closed after this long.
IDLE_TIMEOUT: Final = 60.0
READ_SIZE: Final = 4096


async def serve_ping(stream: MuxedStream) -> None:
    """Echo 32-byte pings until the peer closes the stream or stays idle too long."""
    responder = core.PingResponder()
    while True:
        with trio.move_on_after(IDLE_TIMEOUT) as idle:
            data = await stream.receive_some(READ_SIZE)
        if idle.cancelled_caught or not data:
            break
        responder.receive_data(data)
        out = responder.data_to_send()
        if out:
            await stream.send_all(out)
    await stream.send_eof()


def install_ping(host: Host) -> None:
    """Serve ping on ``host``."""
    host.set_stream_handler(PROTOCOL_ID, serve_ping)


class Pinger:
    """Pings over one stream; made by :func:`open_ping`."""

    def __init__(self, stream: MuxedStream, echo_timeout: float) -> None:
        self.stream = stream
        self._dialer = core.PingDialer()
        self._echo_timeout = echo_timeout

    async def ping(self) -> float:
        """One ping; its round-trip time in seconds.

        Raises:
            trio.TooSlowError: no echo within the echo timeout.
            RemoteProtocolError: the echo did not match, or the stream ended early.
            trio.BrokenResourceError: the stream broke.
        """
        dialer = self._dialer
        start = trio.current_time()
        await self.stream.send_all(dialer.send_ping())
        with trio.fail_after(self._echo_timeout):
            while dialer.next_event() is core.NEED_DATA:
                data = await self.stream.receive_some(READ_SIZE)
                if data:
                    dialer.receive_data(data)
                else:
                    dialer.receive_eof()
        return trio.current_time() - start


@asynccontextmanager
async def open_ping(
    host: Host, target: PeerID | Multiaddr, *, echo_timeout: float = 10.0
) -> AsyncIterator[Pinger]:
    """A ping stream to ``target``, closed on exit.

    Raises:
        DialError: no connection could be made.
        StreamOpenError: the peer does not speak ping.
    """
    stream = await host.new_stream(target, [PROTOCOL_ID])
    async with stream:
        yield Pinger(stream, echo_timeout)
        await stream.send_eof()
