"""Noise XX with the libp2p handshake payload, the target as responder.

Cited: libp2p/specs ``noise/README.md`` and the Noise Protocol Framework (revision 34).
"""

from __future__ import annotations

from typing import Final

from ...protocols.noise import MAX_MESSAGE_LEN, TAGLEN
from ..context import CaseContext
from ..mux import MUXER, open_mux
from ..registry import Level, NotApplicableError, ViolationError, case
from ..secure import NoiseFault, expect_rejected
from ..transport import PeerClosedError

NOISE_README: Final = "libp2p/specs noise/README.md"


@case(
    "noise.handshake",
    level=Level.MUST,
    spec=f"{NOISE_README} §Handshake Pattern (XX MUST be supported), §Static Key "
    "Authentication: the responder's signature verifies",
    title="XX completes; the target's identity signature covers its static key",
)
async def handshake(ctx: CaseContext) -> None:
    channel = await ctx.secure()
    expected = ctx.expected_peer
    if expected is not None and channel.remote_peer != expected:
        raise ViolationError(f"the target authenticated as {channel.remote_peer}, not {expected}")
    # The channel works: the target answers multistream-select inside it.
    await open_mux(channel)


async def _refused(ctx: CaseContext, fault: NoiseFault) -> None:
    try:
        channel = await ctx.secure(fault=fault)
    except PeerClosedError:
        return  # closed before we could even send message 3's successor
    await expect_rejected(channel, ctx.step * 2)


@case(
    "noise.bad-signature",
    level=Level.MUST,
    spec=f"{NOISE_README} §Static Key Authentication: if the signature is invalid, the "
    "connection MUST be terminated immediately",
    title="an identity signature that does not verify is refused",
)
async def bad_signature(ctx: CaseContext) -> None:
    await _refused(ctx, NoiseFault.BAD_SIGNATURE)


@case(
    "noise.other-static-key",
    level=Level.MUST,
    spec=f"{NOISE_README} §The libp2p Handshake Payload: identity_sig signs "
    '"noise-libp2p-static-key:" + the static key used in the handshake',
    title="an identity key that signs another static key is refused",
)
async def other_static_key(ctx: CaseContext) -> None:
    await _refused(ctx, NoiseFault.OTHER_STATIC_KEY)


@case(
    "noise.out-of-order",
    level=Level.MUST,
    spec="Noise Protocol Framework §5.3 ReadMessage (a message that does not decrypt is an "
    f"error), {NOISE_README} §Handshake Pattern",
    title="message 1 sent again in place of message 3 ends the handshake",
)
async def out_of_order(ctx: CaseContext) -> None:
    await _refused(ctx, NoiseFault.OUT_OF_ORDER)


@case(
    "noise.tampered",
    level=Level.MUST,
    spec="Noise Protocol Framework §5.1 DecryptWithAd (authentication failure is an error); "
    f"{NOISE_README} §Encryption and I/O",
    title="a transport message whose tag does not verify closes the connection",
)
async def tampered(ctx: CaseContext) -> None:
    channel = await ctx.secure()
    mux = await open_mux(channel)
    await mux.ping(1)
    channel.transcript.sent("a transport message with one flipped bit")
    await channel.send_message(64, tamper=True)
    closed = await channel.raw.wait_closed(ctx.step * 2)
    if closed is None:
        raise ViolationError(
            f"the connection was still open {ctx.step * 2:g} s after a message that fails "
            "authentication"
        )


@case(
    "noise.max-message",
    level=Level.MUST,
    spec=f"{NOISE_README} §Wire Format: noise_message up to 65535 bytes (the Noise "
    "maximum, Noise Protocol Framework §3)",
    title="a transport message of exactly 65,535 bytes is accepted",
)
async def max_message(ctx: CaseContext) -> None:
    channel = await ctx.secure()
    mux = await open_mux(channel)
    # One 65,535-byte message (65,519 bytes of plaintext): one yamux data frame opening a
    # stream, its body a multistream header and junk the target refuses on that stream only.
    body = b"\x13/multistream/1.0.0\n" + b"\x00" * (MAX_MESSAGE_LEN - TAGLEN - 12 - 20)
    stream_id = mux.new_stream_id()
    channel.transcript.sent("one 65535-byte Noise message (a yamux frame of 65519 bytes)")
    await mux.send_frame(0, 1, stream_id, len(body), body)
    await mux.ping(2)


@case(
    "noise.inlined-muxer",
    level=Level.MAY,
    spec="libp2p/specs connections/inlined-muxer-negotiation.md §Multiplexer Negotiation "
    "over Noise: stream_muxers in the extensions",
    title="muxers listed in the handshake extensions; /yamux/1.0.0 chosen there works",
)
async def inlined_muxer(ctx: CaseContext) -> None:
    channel = await ctx.secure(muxers=(MUXER,))
    if not channel.remote_muxers:
        raise NotApplicableError("the target lists no stream muxers in its Noise extensions")
    if MUXER not in channel.remote_muxers:
        raise NotApplicableError(f"the target lists {list(channel.remote_muxers)}, not {MUXER}")
    mux = await open_mux(channel, inlined=True)
    await mux.ping(3)
