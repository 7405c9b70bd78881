"""Inbound stream limits of the Host router (specs/host.md "Stream limits"): streams still
negotiating per peer, and streams of one protocol per peer, refused before negotiation
completes. Loopback only; every wait is for an event under a bound."""

from __future__ import annotations

import pytest
import trio

from p2pchat.identity import KeyPair
from p2pchat.net.host import Host, HostConfig, StreamOpenError, open_host
from p2pchat.net.muxer import MuxedStream
from p2pchat.net.negotiate import negotiate_outbound
from p2pchat.net.resources import ResourceLimits
from p2pchat.net.secure import dial_secure
from p2pchat.net.stream_limits import StreamScopes
from p2pchat.protocols import multistream as ms
from p2pchat.protocols import yamux

pytestmark = pytest.mark.timeout(60)

HOLD = "/p2pchat-test/hold/1.0.0"
ECHO = "/p2pchat-test/echo/1.0.0"


async def echo(stream: MuxedStream) -> None:
    while data := await stream.receive_some():
        await stream.send_all(data)
    await stream.send_eof()


async def hold(stream: MuxedStream) -> None:
    """Keep the stream until the peer ends it."""
    while await stream.receive_some():
        pass


async def is_reset(stream: MuxedStream) -> bool:
    """True once the peer resets ``stream`` (False if it answers or ends it instead)."""
    with trio.fail_after(10):
        try:
            await stream.receive_some()
        except trio.BrokenResourceError:
            return True
    return False


def server_config(**limits: int) -> HostConfig:
    return HostConfig(
        negotiate_timeout=60.0, limits=ResourceLimits(**limits), identify_on_connect=False
    )


async def test_silent_streams_beyond_the_cap_are_reset_and_speaking_ones_are_answered() -> None:
    """Streams that say nothing: at most ``max_negotiating_per_peer`` wait in negotiation, one
    more is reset at once; a stream that comes with its proposal is still answered."""
    async with open_host(KeyPair.generate(), server_config(max_negotiating_per_peer=3)) as server:
        server.set_stream_handler(ECHO, echo)
        secure = await dial_secure(server.addrs[0], KeyPair.generate(), stream_muxers=[])
        async with secure:
            dialer = ms.Dialer(["/yamux/1.0.0"])
            await secure.send_all(dialer.data_to_send())
            while dialer.next_event() is ms.NEED_DATA:
                dialer.receive_data(await secure.receive_some())
            frames = FrameScanner(dialer.trailing_data())
            silent = [1, 3, 5, 7]  # SYN and nothing else
            await secure.send_all(
                b"".join(
                    yamux.encode_header(yamux.FrameType.WINDOW_UPDATE, yamux.Flag.SYN, s, 0)
                    for s in silent
                )
            )
            with trio.fail_after(10):
                while 7 not in frames.reset:
                    frames.feed(await secure.receive_some())
            assert frames.reset == {7}
            opening = ms.Dialer([ECHO]).data_to_send()
            speaking = yamux.encode_header(yamux.FrameType.DATA, yamux.Flag.SYN, 9, len(opening))
            await secure.send_all(speaking + opening)
            with trio.fail_after(10):
                while ms.encode_message(ECHO) not in frames.data.get(9, b""):
                    frames.feed(await secure.receive_some())
            assert frames.reset == {7}


class FrameScanner:
    """Splits what a yamux peer sends into headers; records resets and data per stream."""

    def __init__(self, data: bytes = b"") -> None:
        self._buffer = bytearray()
        self.reset: set[int] = set()
        self.data: dict[int, bytes] = {}
        self.feed(data)

    def feed(self, data: bytes | bytearray) -> None:
        self._buffer += data
        while len(self._buffer) >= yamux.HEADER_SIZE:
            header = yamux.decode_header(self._buffer)
            size = header.length if header.frame_type is yamux.FrameType.DATA else 0
            if len(self._buffer) < yamux.HEADER_SIZE + size:
                return
            body = bytes(self._buffer[yamux.HEADER_SIZE : yamux.HEADER_SIZE + size])
            del self._buffer[: yamux.HEADER_SIZE + size]
            if header.flags & yamux.Flag.RST:
                self.reset.add(header.stream_id)
            if body:
                self.data[header.stream_id] = self.data.get(header.stream_id, b"") + body


async def test_a_protocol_over_its_per_peer_cap_is_refused_while_negotiating() -> None:
    async with (
        open_host(KeyPair.generate(), server_config()) as server,
        open_host(KeyPair.generate()) as client,
        open_host(KeyPair.generate()) as other,
    ):
        server.set_stream_handler(HOLD, hold, max_inbound_per_peer=2)
        server.set_stream_handler(ECHO, echo)
        held = [await client.new_stream(server.addrs[0], [HOLD]) for _ in range(2)]
        with pytest.raises(StreamOpenError, match="supports none"):
            await client.new_stream(server.addrs[0], [HOLD])
        # Other protocols, and other peers, are not affected.
        stream = await client.new_stream(server.addrs[0], [ECHO])
        await stream.send_all(b"x")
        assert await stream.receive_some() == b"x"
        assert (await other.new_stream(server.addrs[0], [HOLD])).protocol == HOLD
        # A place frees when one of the peer's streams ends.
        await held[0].send_eof()
        await _wait_for_room(server, client, HOLD, 1)
        again = await client.new_stream(server.addrs[0], [HOLD])
        assert again.protocol == HOLD


async def _wait_for_room(server: Host, client: Host, protocol: str, count: int) -> None:
    scopes = server._streams  # the figure has no event to wait on
    with trio.fail_after(10):
        while scopes.open_streams(client.peer_id, protocol) > count:  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_a_stream_agreed_over_the_cap_in_a_race_is_reset_before_its_handler() -> None:
    """Two streams negotiated at once when one place is left: one handler runs, the other
    stream is refused (the cap is checked again when a protocol is agreed, so a race ends in a
    reset, never in a second handler)."""
    started = 0

    async def counting(stream: MuxedStream) -> None:
        nonlocal started
        started += 1
        await hold(stream)

    async with (
        open_host(KeyPair.generate(), server_config()) as server,
        open_host(KeyPair.generate()) as client,
    ):
        server.set_stream_handler(HOLD, counting, max_inbound_per_peer=1)
        conn = await client.connect(server.addrs[0])
        first, second = await conn.open_stream(), await conn.open_stream()
        # Both proposals leave before either answer comes back.
        for stream in (first, second):
            await stream.send_all(ms.Dialer([HOLD]).data_to_send())
        with trio.fail_after(10):
            while started < 1:  # noqa: ASYNC110
                await trio.sleep(0.01)
        # The admitted stream's handler holds its place until we end it, so the other one is
        # refused: answered ``na`` if the cap was reached before its proposal was read, reset
        # if both were agreed at once. Watch both until that happens.
        refused: list[MuxedStream] = []

        async def watch(stream: MuxedStream, cancel: trio.CancelScope) -> None:
            seen = b""
            try:
                while data := await stream.receive_some():
                    seen += data
                    if b"na\n" in seen:
                        break
                else:
                    return
            except trio.BrokenResourceError:
                pass
            refused.append(stream)
            cancel.cancel()

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for stream in (first, second):
                    nursery.start_soon(watch, stream, nursery.cancel_scope)
        (reset,) = refused
        admitted = second if reset is first else first
        assert await _outcome(admitted) == "ended"
        assert started == 1


async def _outcome(stream: MuxedStream) -> str:
    """End our side and read to the end: "ended" if the server's handler ran and finished,
    "reset" if the stream was refused."""
    with trio.fail_after(10):
        try:
            await stream.send_eof()
            while await stream.receive_some():
                pass
        except trio.BrokenResourceError:
            return "reset"
    return "ended"


async def test_silent_negotiation_of_many_streams_holds_at_most_the_cap() -> None:
    """The attack of tools/bench_limits.py: 100 chat-like streams that negotiate and then say
    nothing; the server serves the cap, and refuses the rest during negotiation."""
    async with (
        open_host(KeyPair.generate(), server_config()) as server,
        open_host(KeyPair.generate()) as client,
    ):
        server.set_stream_handler(HOLD, hold, max_inbound_per_peer=8)
        conn = await client.connect(server.addrs[0])
        agreed = refused = 0
        for _ in range(100):
            stream = await conn.open_stream()
            try:
                with trio.fail_after(10):
                    await negotiate_outbound(stream, [HOLD])
                agreed += 1
            except Exception:
                refused += 1
                await stream.reset()
        assert (agreed, refused) == (8, 92)
        assert server._streams.open_streams(client.peer_id, HOLD) == 8


def test_scopes_count_and_validate() -> None:
    peer = KeyPair.generate().peer_id
    scopes = StreamScopes(2, 3)
    assert scopes.start_negotiation(peer)
    assert scopes.start_negotiation(peer)
    assert not scopes.start_negotiation(peer)
    scopes.end_negotiation(peer)
    assert scopes.start_negotiation(peer)
    scopes.set_cap("/a", 1)
    assert scopes.offered(peer, ["/a", "/b"]) == ["/a", "/b"]
    assert scopes.open(peer, "/a")
    assert not scopes.open(peer, "/a")
    assert scopes.offered(peer, ["/a", "/b"]) == ["/b"]
    scopes.close(peer, "/a")
    assert scopes.offered(peer, ["/a"]) == ["/a"]
    assert scopes.refused == {"negotiating": 1, "protocol": 1}
    with pytest.raises(ValueError, match=">= 1"):
        scopes.set_cap("/a", 0)
    with pytest.raises(ValueError, match=">= 1"):
        StreamScopes(0, 1)
