"""yamux over a Noise channel: stream handshake, flow control, close, session frames, scale.

Streams are opened to ``/ipfs/ping/1.0.0``, which every libp2p node serves and which echoes
what it reads, so the target has data to send back at will. Cited: libp2p/specs
``yamux/README.md`` (a copy of hashicorp/yamux ``spec.md``, and its "ACK backlog" section),
``specs/yamux.md`` for the rules the spec leaves open.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Final

import trio

from ...protocols import multistream as ms
from ...protocols import perf
from ...protocols.yamux import INITIAL_WINDOW, Flag, FrameType
from ..context import CaseContext
from ..mux import MuxClient, StreamView, encode_frame
from ..registry import Level, NotApplicableError, ViolationError, case
from ..transport import PeerClosedError

YAMUX: Final = "libp2p/specs yamux/README.md"
PING: Final = "/ipfs/ping/1.0.0"
#: The streams of the scale cases only negotiate: each proposes a protocol no node has and
#: is answered header + na, so no application protocol's own limits get in the way (ping's
#: listener, for one, SHOULD accept at most two streams per peer).
PROBE: Final = "/p2pchat-conformance/probe/1.0.0"
PROBE_OPEN: Final = ms.Dialer([PROBE]).data_to_send()
PROBE_ANSWER: Final = ms.encode_message(ms.MULTISTREAM_ID) + ms.encode_message(ms.NA)
#: Streams opened and not yet acknowledged, at most (the spec's ACK backlog).
ACK_BACKLOG: Final = 256


async def _ping_stream(ctx: CaseContext) -> tuple[MuxClient, int]:
    client, stream_id = await ctx.stream(PING)
    return client, stream_id


async def _echo(client: MuxClient, stream_id: int) -> None:
    payload = os.urandom(32)
    await client.write(stream_id, payload)
    echoed = await client.read_exactly(stream_id, 32)
    if echoed != payload:
        raise ViolationError(f"ping echo differs: sent {payload.hex()}, got {echoed.hex()}")


@case(
    "yamux.syn-ack",
    level=Level.MUST,
    spec=f"{YAMUX} §Opening a stream: the receiver replies with ACK to accept or RST to reject",
    title="a stream we open is acknowledged (ACK on the target's first frame)",
)
async def syn_ack(ctx: CaseContext) -> None:
    client, stream_id = await _ping_stream(ctx)
    view = client.streams[stream_id]
    if view.first_flags is None or not view.first_flags & (Flag.ACK | Flag.RST):
        raise ViolationError(
            f"the target's first frame on stream {stream_id} had flags "
            f"{view.first_flags:#x}, without ACK"
        )


@case(
    "yamux.ping",
    level=Level.MUST,
    spec=f"{YAMUX} §Flag Field: Ping with SYN is answered with ACK and the same opaque value",
    title="Ping(SYN) is answered with Ping(ACK) echoing the opaque value",
)
async def ping(ctx: CaseContext) -> None:
    client = await ctx.mux()
    for opaque in (0x5EED, 0xFFFFFFFF, 7):
        await client.ping(opaque)


@case(
    "yamux.window-update",
    level=Level.SHOULD,
    spec=f"{YAMUX} §Flow Control: window update frames should be sent regularly",
    title="the target grants window (a WindowUpdate) as it reads our data",
)
async def window_update(ctx: CaseContext) -> None:
    client, stream_id = await _ping_stream(ctx)
    view = client.streams[stream_id]
    view.discard = True
    before = view.window_updates
    # More than the whole window, in pieces: the target must grant credit for the rest.
    total, piece = INITIAL_WINDOW + 64 * 1024, 16 * 1024
    for _ in range(0, total, piece):
        await client.write(stream_id, bytes(piece))
        if view.window_updates > before:
            return
    await client.wait(lambda: view.window_updates > before or view.rst or view.fin)
    if view.window_updates == before:
        raise ViolationError(f"{total} bytes sent and no window update on stream {stream_id}")


def _grew(view: StreamView, seen: int) -> bool:
    return view.data_bytes > seen or view.rst


@case(
    "yamux.respects-window",
    level=Level.MUST,
    spec=f"{YAMUX} §Flow Control: each stream starts with a 256 KiB window; the sender "
    "tracks the bytes of its Data frames against it",
    title="the target never sends beyond our window (we grant nothing past 256 KiB)",
)
async def respects_window(ctx: CaseContext) -> None:
    # The fastest way to make a node send more than our window: perf (1 MiB asked for), when it
    # is offered; else ping, which echoes what we send (288 KiB, 32 KiB over the window).
    try:
        client, stream_id = await ctx.stream(perf.PROTOCOL_ID)
    except NotApplicableError:
        client, stream_id = await _ping_stream(ctx)
        client.auto_window = False
        view = client.streams[stream_id]
        view.discard = True
        with trio.move_on_after(ctx.timeout * 0.3):
            await client.write(stream_id, bytes(INITIAL_WINDOW + 32 * 1024))
    else:
        client.auto_window = False
        view = client.streams[stream_id]
        view.discard = True
        await client.write(stream_id, perf.encode_request(4 * INITIAL_WINDOW))
        await client.close_write(stream_id)
    # Read until the target has sent beyond the window, or has stopped sending.
    with trio.move_on_after(ctx.timeout * 0.6):
        while view.data_bytes <= INITIAL_WINDOW and not view.rst:
            seen = view.data_bytes
            with trio.move_on_after(ctx.step):
                await client.wait(partial(_grew, view, seen))
            if view.data_bytes == seen:
                break
    if view.data_bytes > INITIAL_WINDOW:
        raise ViolationError(
            f"the target sent {view.data_bytes} bytes on stream {stream_id} against a "
            f"window of {INITIAL_WINDOW}"
        )
    if view.data_bytes < INITIAL_WINDOW:
        raise NotApplicableError(
            f"the target sent only {view.data_bytes} bytes in time: it never had more than our "
            "window to send"
        )


@case(
    "yamux.window-overrun",
    level=Level.SHOULD,
    spec="specs/yamux.md §Errors ('data beyond receive window', as go-yamux and rust-yamux); "
    f"{YAMUX} §Session termination: GoAway(1) protocol error",
    title="a data frame beyond the target's window draws a protocol error",
)
async def window_overrun(ctx: CaseContext) -> None:
    client = await ctx.mux()
    stream_id = client.new_stream_id()
    size = INITIAL_WINDOW + 1
    client.transcript.sent(f"Data SYN id={stream_id} len={size}")
    try:
        await client.send_frame(FrameType.DATA, Flag.SYN, stream_id, size, bytes(size))
        with trio.move_on_after(ctx.step):
            await client.wait(lambda: client.go_away is not None)
        if client.go_away is None:
            await client.ping(15)  # still there: show it
    except PeerClosedError:
        return
    if client.go_away == 1:
        return
    if client.go_away is not None:
        raise ViolationError(
            f"the target answered GoAway({client.go_away}), not protocol error (1)"
        )
    raise ViolationError(
        f"{size} bytes on a new stream (window {INITIAL_WINDOW}) drew neither GoAway nor "
        "close: the target still answers pings"
    )


@case(
    "yamux.rst",
    level=Level.MUST,
    spec=f"{YAMUX} §Closing a stream: RST hard-closes a stream immediately",
    title="after our RST the target sends nothing more on the stream; the session carries on",
)
async def rst(ctx: CaseContext) -> None:
    client, stream_id = await _ping_stream(ctx)
    await _echo(client, stream_id)
    view = client.streams[stream_id]
    await client.write(stream_id, os.urandom(32))
    client.transcript.sent(f"RST id={stream_id}")
    await client.reset(stream_id)
    before = view.total_received
    await client.ping(11)
    later, agreed = await client.select(PING)
    if agreed is None:
        raise ViolationError("a new ping stream after the RST was refused")
    await _echo(client, later)
    # At most the echo already in flight when we reset.
    if view.total_received - before > 32:
        raise ViolationError(f"{view.total_received - before} bytes arrived on the reset stream")


@case(
    "yamux.half-close-local",
    level=Level.MUST,
    spec=f"{YAMUX} §Closing a stream: FIN half-closes; the other direction stays open",
    title="after our FIN the target still delivers its data on the stream",
)
async def half_close_local(ctx: CaseContext) -> None:
    client, stream_id = await _ping_stream(ctx)
    payload = os.urandom(32)
    client.transcript.sent(f"32 bytes + FIN on id={stream_id}")
    await client.send_frame(FrameType.DATA, Flag.FIN, stream_id, 32, payload)
    echoed = await client.read_exactly(stream_id, 32)
    if echoed != payload:
        raise ViolationError(f"after our FIN the echo differs: {echoed.hex()}")


@case(
    "yamux.half-close-remote",
    level=Level.MUST,
    spec=f"{YAMUX} §Closing a stream: FIN half-closes; the other direction stays open",
    title="after the target's FIN our data is still accepted (no RST) until we FIN",
)
async def half_close_remote(ctx: CaseContext) -> None:
    client, stream_id = await _ping_stream(ctx)
    payload = os.urandom(32)
    await client.send_frame(FrameType.DATA, Flag.FIN, stream_id, 32, payload)
    view = client.streams[stream_id]
    await client.wait(lambda: view.fin or view.rst)
    if view.rst:
        raise NotApplicableError("the target reset the ping stream instead of closing it")
    # The target half-closed; the ping protocol gives it no reason to write again. Now the
    # other way round on identify: the target writes, FINs, and must still take our bytes.
    other, agreed = await client.select("/ipfs/id/1.0.0")
    if agreed is None:
        raise NotApplicableError("the target does not offer identify, the stream it closes first")
    theirs = client.streams[other]
    await client.wait(lambda: theirs.fin or theirs.rst)
    if theirs.rst:
        raise NotApplicableError("the target reset its identify stream instead of closing it")
    client.transcript.sent(f"64 bytes on id={other} after the target's FIN")
    await client.write(other, bytes(64))
    await client.close_write(other)
    await client.ping(12)
    if theirs.rst:
        raise ViolationError("the target reset the stream when we wrote after its FIN")


@case(
    "yamux.goaway",
    level=Level.SHOULD,
    spec=f"{YAMUX} §Session termination: GoAway ends the session for new streams; streams "
    "already open finish",
    title="after our GoAway(0) an open stream still works and the target stays calm",
)
async def goaway(ctx: CaseContext) -> None:
    client, stream_id = await _ping_stream(ctx)
    client.transcript.sent("GoAway(0)")
    await client.send_frame(FrameType.GO_AWAY, 0, 0, 0)
    try:
        await _echo(client, stream_id)
    except PeerClosedError as exc:
        how = "reset" if exc.reset else "closed"
        raise ViolationError(
            f"the target {how} the connection on our GoAway(0): its open stream did not finish"
        ) from exc
    if client.go_away not in (None, 0):
        raise ViolationError(f"the target answered our GoAway(0) with GoAway({client.go_away})")


async def _open_many(
    client: MuxClient, opened: list[int], count: int, payload: bytes, flags: int = 0
) -> None:
    """Open ``count`` streams (their ids appended to ``opened`` as they go), each with SYN on one
    data frame carrying ``payload``; never more than :data:`ACK_BACKLOG` unacknowledged."""
    first = len(opened)
    while len(opened) - first < count:
        pending = sum(
            1 for s in opened[first:] if not (client.streams[s].acked or client.streams[s].rst)
        )
        room = min(ACK_BACKLOG - pending, count - (len(opened) - first), 64)
        if room <= 0:
            await client.next_frame()
            continue
        batch = bytearray()
        ids = [client.new_stream_id() for _ in range(room)]
        for stream_id in ids:
            batch += encode_frame(FrameType.DATA, Flag.SYN | flags, stream_id, len(payload))
            batch += payload
        await client.channel.send(batch)
        opened += ids


def _answered(client: MuxClient, stream_id: int) -> bool:
    view = client.streams[stream_id]
    return len(view.received) >= len(PROBE_ANSWER) or view.fin or view.rst


@case(
    "yamux.concurrent-streams",
    level=Level.SHOULD,
    spec=f"{YAMUX} §ACK backlog & backpressure (at most 256 unacknowledged); go-libp2p's "
    "muxer test suite opens 1,000 streams at once",
    title="1,000 streams open at once are each answered (header + na)",
)
async def concurrent_streams(ctx: CaseContext) -> None:
    client = await ctx.mux()
    count = 1000
    streams: list[int] = []
    with trio.move_on_after(ctx.timeout * 0.9) as scope:
        await _open_many(client, streams, count, PROBE_OPEN)
        await client.wait(lambda: all(_answered(client, s) for s in streams))
    if scope.cancelled_caught:
        answered = sum(_answered(client, s) for s in streams)
        raise ViolationError(
            f"{len(streams)} of {count} streams opened and {answered} answered in "
            f"{ctx.timeout * 0.9:g} s"
        )
    reset = [s for s in streams if client.streams[s].rst]
    want = len(PROBE_ANSWER)
    wrong = [s for s in streams if client.streams[s].received[:want] != PROBE_ANSWER]
    if reset or wrong:
        raise ViolationError(
            f"of {count} streams open at once, {len(reset)} were reset and {len(wrong)} not "
            "answered header + na"
        )
    batch = b"".join(encode_frame(FrameType.WINDOW_UPDATE, Flag.RST, s, 0) for s in streams)
    await client.channel.send(batch)
    await client.ping(13)


def _all_answered(client: MuxClient, streams: list[int]) -> bool:
    return all(_answered(client, s) for s in streams)


@case(
    "yamux.streams-over-time",
    level=Level.SHOULD,
    spec=f"{YAMUX} §Opening a stream, §Closing a stream; go-libp2p's muxer test suite "
    "(10,000 streams over one connection)",
    title="10,000 streams one after another (250 at a time) each open, negotiate and close",
    budget=1.5,
)
async def streams_over_time(ctx: CaseContext) -> None:
    client = await ctx.mux()
    total, done, in_flight = 10_000, 0, 250
    # Leave a tenth of the case's time to report what was done.
    with trio.move_on_after(ctx.timeout * 0.9) as scope:
        while done < total:
            batch: list[int] = []
            await _open_many(client, batch, min(in_flight, total - done), PROBE_OPEN, Flag.FIN)
            await client.wait(partial(_all_answered, client, batch))
            for stream_id in batch:
                view = client.streams.pop(stream_id)
                if bytes(view.received) != PROBE_ANSWER:
                    raise ViolationError(
                        f"stream {stream_id} (number {done + 1}) was answered "
                        f"{bytes(view.received)[:80].hex() or 'nothing'}"
                        + (" and reset" if view.rst else "")
                    )
                done += 1
            # Done with them: free them on the target whatever it does after its answer.
            await client.channel.send(
                b"".join(encode_frame(FrameType.WINDOW_UPDATE, Flag.RST, s, 0) for s in batch)
            )
    if scope.cancelled_caught:
        raise ViolationError(f"{done} of {total} streams in {ctx.timeout * 0.9:g} s")


@case(
    "yamux.stream-limit",
    level=Level.SHOULD,
    spec=f"{YAMUX} §Opening a stream (RST rejects a stream); specs/yamux.md §Limits",
    title="streams beyond the target's limit are refused with RST, the session survives",
)
async def stream_limit(ctx: CaseContext) -> None:
    client = await ctx.mux()
    count = 1100
    streams: list[int] = []

    def settled(stream_id: int) -> bool:
        return client.streams[stream_id].acked or client.streams[stream_id].rst

    with trio.move_on_after(ctx.timeout * 0.9) as scope:
        await _open_many(client, streams, count, PROBE_OPEN)
        await client.wait(lambda: all(settled(s) for s in streams))
    if client.go_away is not None:
        raise ViolationError(
            f"the target sent GoAway({client.go_away}) instead of refusing streams"
        )
    if scope.cancelled_caught:
        raise NotApplicableError(
            f"{len(streams)} of {count} streams opened and {sum(map(settled, streams))} "
            f"acknowledged or refused in {ctx.timeout * 0.9:g} s: too slow to reach a limit"
        )
    await client.ping(14)
    refused = sum(client.streams[s].rst for s in streams)
    if refused == 0:
        raise NotApplicableError(f"the target accepted all {count} streams (its limit is higher)")
