"""ping (``/ipfs/ping/1.0.0``). Cited: libp2p/specs ``ping/ping.md``."""

from __future__ import annotations

import os
from typing import Final

import trio

from ...protocols.yamux import Flag, FrameType
from ..context import CaseContext
from ..registry import Level, ViolationError, case

PING: Final = "/ipfs/ping/1.0.0"
PING_MD: Final = "libp2p/specs ping/ping.md"


@case(
    "ping.echo",
    level=Level.MUST,
    spec=f"{PING_MD} §Protocol: the listening peer echoes the same 32-byte payload back",
    title="32 random bytes come back unchanged",
)
async def echo(ctx: CaseContext) -> None:
    client, stream_id = await ctx.stream(PING)
    payload = os.urandom(32)
    await client.write(stream_id, payload)
    got = await client.read_exactly(stream_id, 32)
    if got != payload:
        raise ViolationError(f"sent {payload.hex()}, got {got.hex()}")


@case(
    "ping.several",
    level=Level.SHOULD,
    spec=f"{PING_MD} §Protocol: the listening peer SHOULD loop and echo the next payload",
    title="five pings on one stream are each echoed",
)
async def several(ctx: CaseContext) -> None:
    client, stream_id = await ctx.stream(PING)
    for number in range(5):
        payload = os.urandom(32)
        await client.write(stream_id, payload)
        got = await client.read_exactly(stream_id, 32)
        if got != payload:
            raise ViolationError(f"ping {number + 1}: sent {payload.hex()}, got {got.hex()}")


@case(
    "ping.close",
    level=Level.SHOULD,
    spec=f"{PING_MD} §Protocol: after the dialer closes its write side the listener SHOULD "
    "finish writing the echo, then close the stream",
    title="after our FIN the echo comes, then the target's FIN",
)
async def close(ctx: CaseContext) -> None:
    client, stream_id = await ctx.stream(PING)
    payload = os.urandom(32)
    await client.send_frame(FrameType.DATA, Flag.FIN, stream_id, 32, payload)
    view = client.streams[stream_id]
    with trio.move_on_after(ctx.step * 2):
        await client.wait(lambda: view.fin or view.rst)
    if bytes(view.received[:32]) != payload:
        raise ViolationError(f"the echo was {bytes(view.received).hex() or 'missing'}")
    if view.rst:
        raise ViolationError("the target reset the stream instead of closing it")
    if not view.fin:
        raise ViolationError(
            f"the target had not closed the stream {ctx.step * 2:g} s after our FIN"
        )


@case(
    "ping.short",
    level=Level.MAY,
    spec=f"{PING_MD} §Protocol: payloads are 32 bytes (what a listener does with fewer is "
    "not specified)",
    title="16 bytes then FIN: no partial echo",
)
async def short(ctx: CaseContext) -> None:
    client, stream_id = await ctx.stream(PING)
    await client.send_frame(FrameType.DATA, Flag.FIN, stream_id, 16, os.urandom(16))
    view = client.streams[stream_id]
    with trio.move_on_after(ctx.step):
        await client.wait(lambda: view.fin or view.rst)
    if view.received:
        raise ViolationError(f"the target echoed {len(view.received)} bytes of a 16-byte ping")
