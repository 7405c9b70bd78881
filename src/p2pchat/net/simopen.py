"""Who is the dialer on the direct connection of a hole punch we answer (specs/dcutr.md §1
step 4, §7).

The answering side ``A`` runs the upgrade as the responder, as go-libp2p does; py-libp2p
0.8.1's initiating side ``B`` does too, and then nobody proposes ``/noise``. :func:`choose_role`
settles it at the multistream-select level, where both roles begin alike: it writes our
``/multistream/1.0.0`` header at once, then reads. A dialer proposes a protocol after its header
(go-libp2p's and ours at once; py-libp2p's once it has our header): we are the responder. A
listener writes its header, if anything, and waits for a proposal: when nothing past a header
comes within ``wait`` seconds, we are the dialer (and the Noise initiator). The stream it
returns puts back what was read and drops the header our own negotiation writes later, which
the peer already has.
"""

from __future__ import annotations

from typing import Final

import trio

from ..protocols.multistream import MULTISTREAM_ID, encode_message

HEADER: Final = encode_message(MULTISTREAM_ID)
READ_SIZE: Final = 4096


class ResolvedStream(trio.abc.Stream):
    """``inner`` with ``received`` put back in front of what it receives, and the first
    ``HEADER`` we send dropped (it went out already)."""

    def __init__(self, inner: trio.abc.Stream, received: bytes) -> None:
        self._inner = inner
        self._received = received
        self._to_drop = HEADER

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._received:
            size = len(self._received) if max_bytes is None else max_bytes
            data, self._received = self._received[:size], self._received[size:]
            await trio.lowlevel.checkpoint()
            return data
        return bytes(await self._inner.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        data = bytes(data)
        if self._to_drop:
            common = min(len(data), len(self._to_drop))
            if data[:common] == self._to_drop[:common]:
                data, self._to_drop = data[common:], self._to_drop[common:]
            else:
                self._to_drop = b""  # not our negotiation's header: send as it is
        if data:
            await self._inner.send_all(data)
        else:
            await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._inner.aclose()


async def choose_role(stream: trio.abc.Stream, wait: float) -> tuple[trio.abc.Stream, bool]:
    """Write our header, read the peer's first bytes for at most ``wait`` seconds; return the
    stream to upgrade and whether we are the dialer (the Noise initiator). A broken or ended
    stream makes us the responder, whose handshake then fails at once. Cancelled, it closes
    ``stream``.
    """
    received = b""
    try:
        try:
            await stream.send_all(HEADER)
            with trio.move_on_after(wait):
                # More than a header (or anything but a header) is a dialer speaking.
                while len(received) <= len(HEADER) and HEADER.startswith(received):
                    data = await stream.receive_some(READ_SIZE)
                    if not data:
                        return ResolvedStream(stream, received), False
                    received += data
                return ResolvedStream(stream, received), False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return ResolvedStream(stream, received), False
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return ResolvedStream(stream, received), True
