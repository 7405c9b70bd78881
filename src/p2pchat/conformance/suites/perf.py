"""perf (``/perf/1.0.0``), when the target offers it. Cited: libp2p/specs ``perf/perf.md``."""

from __future__ import annotations

from typing import Final

from ...protocols import perf as core
from ..context import CaseContext
from ..registry import Level, ViolationError, case

PERF_MD: Final = "libp2p/specs perf/perf.md"
AMOUNT: Final = 1024 * 1024


@case(
    "perf.download",
    level=Level.MUST,
    spec=f"{PERF_MD} §Protocol: the server sends the number of bytes the 8-byte header asks "
    "for, after the client closed its write side, then closes",
    title="1 MiB asked for: exactly 1 MiB back, then FIN",
)
async def download(ctx: CaseContext) -> None:
    client, stream_id = await ctx.stream(core.PROTOCOL_ID)
    view = client.streams[stream_id]
    view.discard = True
    await client.write(stream_id, core.encode_request(AMOUNT))
    await client.close_write(stream_id)
    await client.read_to_end(stream_id)
    if view.total_received != AMOUNT:
        raise ViolationError(f"asked for {AMOUNT} bytes, received {view.total_received}")


@case(
    "perf.upload",
    level=Level.MUST,
    spec=f"{PERF_MD} §Protocol: the server reads the upload until the client closes, then "
    "sends what the header asked for (here nothing)",
    title="1 MiB uploaded asking nothing back: the stream ends with no byte",
)
async def upload(ctx: CaseContext) -> None:
    client, stream_id = await ctx.stream(core.PROTOCOL_ID)
    view = client.streams[stream_id]
    await client.write(stream_id, core.encode_request(0) + bytes(AMOUNT))
    await client.close_write(stream_id)
    await client.read_to_end(stream_id)
    if view.total_received:
        raise ViolationError(f"asked for 0 bytes, received {view.total_received}")
