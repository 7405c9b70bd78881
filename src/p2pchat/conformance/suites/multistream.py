"""multistream-select 1.0 on a fresh TCP connection, before any security.

Cited: multiformats/multistream-select README ("Protocol", "Listing"), libp2p/specs
``connections/README.md`` ("Protocol Negotiation"), and ``specs/multistream.md`` for our limits.
"""

from __future__ import annotations

from typing import Final

import trio

from ...errors import DecodeError
from ...protocols import multistream as ms
from ...varint import decode_uvarint, encode_uvarint
from ..context import CaseContext
from ..registry import Level, ViolationError, case
from ..secure import negotiate
from ..transport import PeerClosedError, RawConnection, hexpreview

UNKNOWN: Final = "/p2pchat-conformance/unknown/1.0.0"
HEADER: Final = ms.encode_message(ms.MULTISTREAM_ID)
NOISE: Final = ms.encode_message("/noise")
MS_README: Final = "multistream-select README"
_MAX_PREFIX: Final = 3  # a uvarint over 3 bytes is beyond any message size we accept


async def _frame(conn: RawConnection) -> bytes:
    """The next length-prefixed message, prefix included (at most MAX_MESSAGE_SIZE long).

    Raises:
        ViolationError: a malformed or oversized length prefix.
        PeerClosedError: the target closed.
    """
    prefix = bytearray(await conn.receive_exactly(1))
    while prefix[-1] & 0x80:
        if len(prefix) == _MAX_PREFIX:
            raise ViolationError(f"the target sent a length prefix {hexpreview(prefix)}")
        prefix += await conn.receive_exactly(1)
    try:
        length, _ = decode_uvarint(bytes(prefix))
    except DecodeError as exc:
        raise ViolationError(f"the target sent a malformed length prefix: {exc}") from exc
    if length > ms.MAX_MESSAGE_SIZE:
        raise ViolationError(f"the target sent a message of {length} bytes")
    return bytes(prefix) + await conn.receive_exactly(length)


async def _message(conn: RawConnection) -> str:
    """The next multistream message's text.

    Raises:
        ViolationError: the bytes are not one well-formed message.
        PeerClosedError: the target closed.
    """
    data = await _frame(conn)
    try:
        text = ms.decode_message(data)
    except DecodeError as exc:
        raise ViolationError(f"malformed multistream message {hexpreview(data)}: {exc}") from exc
    conn.transcript.received(f"multistream {text[:64]!r}")
    return text


async def _answer_or_close(conn: RawConnection, seconds: float) -> str | None:
    """The next message, or ``None`` if none came within ``seconds``.

    Raises:
        PeerClosedError: the target closed.
    """
    with trio.move_on_after(seconds):
        return await _message(conn)
    return None


async def _closes(conn: RawConnection, seconds: float) -> str | None:
    closed = await conn.wait_closed(seconds)
    if closed is None:
        return None
    return "reset" if closed.reset else "closed"


@case(
    "multistream.header",
    level=Level.MUST,
    spec=f"{MS_README} §Protocol: both sides start with /multistream/1.0.0",
    title="the listener sends the multistream header",
)
async def header(ctx: CaseContext) -> None:
    conn = await ctx.raw()
    conn.transcript.sent("multistream header")
    await conn.send(HEADER)
    text = await _message(conn)
    if text != ms.MULTISTREAM_ID:
        raise ViolationError(f"expected {ms.MULTISTREAM_ID!r} first, got {text!r}")


@case(
    "multistream.noise",
    level=Level.MUST,
    spec="libp2p/specs connections/README.md §Protocol Negotiation: /noise echoed to accept",
    title="a supported proposal (/noise) is echoed",
)
async def noise_echoed(ctx: CaseContext) -> None:
    conn = await ctx.raw()
    if await negotiate(conn, ["/noise"]) is None:
        raise ViolationError("the target answered na to /noise")


@case(
    "multistream.na",
    level=Level.MUST,
    spec=f"{MS_README} §Protocol: an unsupported protocol is answered with na",
    title="an unknown protocol draws na, and negotiation goes on",
)
async def na_for_unknown(ctx: CaseContext) -> None:
    conn = await ctx.raw()
    conn.transcript.sent(f"header, {UNKNOWN}")
    await conn.send(HEADER + ms.encode_message(UNKNOWN))
    if (text := await _message(conn)) != ms.MULTISTREAM_ID:
        raise ViolationError(f"expected the header, got {text!r}")
    answer = await _message(conn)
    if answer != ms.NA:
        raise ViolationError(
            f"proposed {UNKNOWN!r}, the target answered {answer!r} instead of 'na'"
        )
    conn.transcript.sent("/noise")
    await conn.send(NOISE)
    if (answer := await _message(conn)) != "/noise":
        raise ViolationError(f"after na, /noise was answered {answer!r}")


@case(
    "multistream.pipelined",
    level=Level.MUST,
    spec="libp2p/specs connections/README.md §Protocol Negotiation; specs/multistream.md "
    "§Roles: header and first proposal in one write (as go and rust dialers send them)",
    title="header and proposal sent together are both answered",
)
async def pipelined(ctx: CaseContext) -> None:
    conn = await ctx.raw()
    conn.transcript.sent("header + /noise in one write")
    await conn.send(HEADER + NOISE)
    first, second = await _message(conn), await _message(conn)
    if (first, second) != (ms.MULTISTREAM_ID, "/noise"):
        raise ViolationError(f"expected header then '/noise', got {first!r}, {second!r}")


@case(
    "multistream.pipelined-proposals",
    level=Level.SHOULD,
    spec=f"{MS_README} §Protocol: each proposal is answered in order",
    title="several proposals in one write are answered in order",
)
async def pipelined_proposals(ctx: CaseContext) -> None:
    conn = await ctx.raw()
    other = "/p2pchat-conformance/other/1.0.0"
    conn.transcript.sent(f"header, {UNKNOWN}, {other}, /noise in one write")
    await conn.send(HEADER + ms.encode_message(UNKNOWN) + ms.encode_message(other) + NOISE)
    answers = [await _message(conn) for _ in range(4)]
    if answers != [ms.MULTISTREAM_ID, ms.NA, ms.NA, "/noise"]:
        raise ViolationError(f"expected header, na, na, /noise; got {answers}")


@case(
    "multistream.ls",
    level=Level.MAY,
    spec=f"{MS_README} §Listing: ls is answered with the supported protocols",
    title="ls lists /noise (or is refused with na)",
)
async def ls(ctx: CaseContext) -> None:
    conn = await ctx.raw()
    conn.transcript.sent("header, ls")
    await conn.send(HEADER + ms.encode_message(ms.LS))
    if (text := await _message(conn)) != ms.MULTISTREAM_ID:
        raise ViolationError(f"expected the header, got {text!r}")
    raw = await _frame(conn)
    if raw == ms.encode_message(ms.NA):
        conn.transcript.received("na")
        return
    try:
        listed = ms.decode_ls_response(raw)
    except DecodeError as exc:
        raise ViolationError(f"the ls answer {hexpreview(raw)} is malformed: {exc}") from exc
    if "/noise" not in listed:
        raise ViolationError(f"ls lists {listed}, without /noise")


@case(
    "multistream.too-long",
    level=Level.SHOULD,
    spec="specs/multistream.md §Errors (go-multistream's 1024-byte limit): an oversized "
    "message is refused, not answered",
    title="a 2,000-byte proposal is refused (na or close), never echoed",
)
async def too_long(ctx: CaseContext) -> None:
    conn = await ctx.raw()
    await conn.send(HEADER)
    await _message(conn)
    text = "/" + "x" * 1998
    body = text.encode() + b"\n"
    conn.transcript.sent(f"proposal of {len(body)} bytes")
    await conn.send(encode_uvarint(len(body)) + body)
    try:
        with_answer = await _answer_or_close(conn, ctx.step)
    except PeerClosedError:
        return
    if with_answer is None:
        raise ViolationError(
            f"no answer and no close within {ctx.step:g} s of a 2,000-byte message"
        )
    if with_answer != ms.NA:
        raise ViolationError(f"a 2,000-byte proposal was answered {with_answer[:64]!r}")


@case(
    "multistream.bad-varint",
    level=Level.SHOULD,
    spec="multiformats/unsigned-varint README §Practical maximum: at most 9 bytes; "
    "specs/multistream.md §Errors: malformed length closes",
    title="a malformed length prefix closes the connection",
)
async def bad_varint(ctx: CaseContext) -> None:
    conn = await ctx.raw()
    await conn.send(HEADER)
    await _message(conn)
    conn.transcript.sent("ff x 10 (a varint that never ends)")
    await conn.send(b"\xff" * 10)
    how = await _closes(conn, ctx.step)
    if how is None:
        raise ViolationError(f"the connection was open {ctx.step:g} s after a malformed varint")


@case(
    "multistream.no-newline",
    level=Level.SHOULD,
    spec=f"{MS_README} §Protocol: every message ends with a newline; specs/multistream.md §Errors",
    title="a message without its newline closes the connection",
)
async def no_newline(ctx: CaseContext) -> None:
    conn = await ctx.raw()
    await conn.send(HEADER)
    await _message(conn)
    conn.transcript.sent("07 '/noise!' (no newline)")
    await conn.send(b"\x07/noise!")
    try:
        answer = await _answer_or_close(conn, ctx.step)
    except (PeerClosedError, ViolationError):
        return  # closed, or answered with bytes that end the negotiation
    if answer is None:
        if await _closes(conn, ctx.step) is None:
            raise ViolationError("a message without a newline was neither refused nor closed")
    elif answer != ms.NA:
        raise ViolationError(f"a message without its newline was answered {answer[:64]!r}")
