"""multistream-select over a Trio stream: the thin adapter around the sans-IO core.

Negotiation may over-read: bytes the peer pipelined after the agreement (the first
Noise message, say) are returned to the caller, who hands them to the next layer.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Final

import trio

from ..errors import P2PChatError, ProtocolError
from ..protocols import multistream as ms

RECEIVE_SIZE: Final = 4096


class NegotiationError(P2PChatError):
    """No protocol could be agreed: refused, malformed answers or the peer went away."""


async def _exchange(
    stream: trio.abc.Stream, negotiator: ms.Dialer | ms.Listener
) -> ms.ProtocolAgreed:
    while True:
        try:
            event = negotiator.next_event()
        except ProtocolError as exc:
            raise NegotiationError(f"multistream-select: {exc.hint}") from exc
        out = negotiator.data_to_send()  # replies queued while parsing go out first
        if out:
            await stream.send_all(out)
        if isinstance(event, ms.ProtocolAgreed):
            return event
        if isinstance(event, ms.NegotiationFailed):
            raise NegotiationError(f"peer supports none of {', '.join(event.tried)}")
        if event is ms.NEED_DATA:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise NegotiationError("peer closed the stream during protocol negotiation")
            negotiator.receive_data(data)


async def negotiate_outbound(
    stream: trio.abc.Stream, protocols: Sequence[str]
) -> tuple[str, bytes]:
    """Propose ``protocols`` in order; return the agreed one and any bytes read past it.

    Raises:
        NegotiationError: the peer refused them all or broke the protocol.
        trio.BrokenResourceError: the transport failed.
    """
    dialer = ms.Dialer(protocols)
    agreed = await _exchange(stream, dialer)
    return agreed.protocol, dialer.trailing_data()


async def negotiate_inbound(
    stream: trio.abc.Stream, supported: Collection[str]
) -> tuple[str, bytes]:
    """Answer the peer's proposals from ``supported``; return the agreed protocol and any
    bytes read past it.

    Raises:
        NegotiationError: the peer broke the protocol, proposed too many, or closed.
        trio.BrokenResourceError: the transport failed.
    """
    listener = ms.Listener(supported)
    agreed = await _exchange(stream, listener)
    return agreed.protocol, listener.trailing_data()
