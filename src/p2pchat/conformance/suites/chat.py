"""``/p2pchat/1.0.0`` framing, envelopes and refusals, when the target speaks it.

Cited: ``specs/chat.md`` §1 (framing), §2 (envelopes, request ids, the dispatcher) and §8 (the
negative reasons of the message codes). Only what needs no group membership is checked: a
target has no reason to let an unknown peer further.
"""

from __future__ import annotations

import os
from typing import Any, Final

import trio

from ...chat.core.wire import PROTOCOL_ID, FrameReader, encode_frame
from ...errors import DecodeError
from ..context import CaseContext
from ..mux import MuxClient
from ..registry import Level, ViolationError, case

CHAT_MD: Final = "specs/chat.md"


async def _responses(client: MuxClient, stream_id: int, count: int) -> list[dict[str, Any]]:
    """The next ``count`` frames the target sends on the stream, decoded.

    Raises:
        ViolationError: a frame that does not decode, or the stream ended first.
    """
    reader = FrameReader()
    view = client.streams[stream_id]
    out: list[dict[str, Any]] = []
    while len(out) < count:
        try:
            event = reader.next_event()
        except DecodeError as exc:
            raise ViolationError(f"a frame from the target does not decode: {exc}") from exc
        if isinstance(event, dict):
            client.transcript.received(f"chat {event}")
            out.append(event)
            continue
        await client.wait(lambda: bool(view.received) or view.fin or view.rst)
        if not view.received:
            raise ViolationError(
                f"the target {'reset' if view.rst else 'closed'} the stream after "
                f"{len(out)} of {count} responses"
            )
        reader.receive_data(bytes(view.received))
        view.received.clear()
    return out


def _check_refusal(answer: dict[str, Any], code: str, rid: int, reason: str) -> None:
    expected = {"code": code + "R", "rid": rid, "ok": False, "reason": reason}
    got = {k: answer.get(k) for k in expected}
    if got != expected:
        raise ViolationError(f"expected {expected}, got {answer}")


@case(
    "chat.unknown-code",
    level=Level.MUST,
    spec=f"{CHAT_MD} §2: an unknown code gets ok false, reason 'unknown code', code + 'R'",
    title="a query with an unknown code is refused, same rid",
)
async def unknown_code(ctx: CaseContext) -> None:
    client, stream_id = await ctx.stream(PROTOCOL_ID)
    await client.write(stream_id, encode_frame({"code": "zzconf", "rid": 9, "body": {}}))
    (answer,) = await _responses(client, stream_id, 1)
    _check_refusal(answer, "zzconf", 9, "unknown code")


@case(
    "chat.unknown-group",
    level=Level.MUST,
    spec=f"{CHAT_MD} §8: i for a group the target does not hold is refused 'unknown group'",
    title="i for an unknown group is refused with 'unknown group'",
)
async def unknown_group(ctx: CaseContext) -> None:
    client, stream_id = await ctx.stream(PROTOCOL_ID)
    query = {"code": "i", "rid": 1, "body": {"group_id": os.urandom(32)}}
    await client.write(stream_id, encode_frame(query))
    (answer,) = await _responses(client, stream_id, 1)
    _check_refusal(answer, "i", 1, "unknown group")


@case(
    "chat.rids",
    level=Level.MUST,
    spec=f"{CHAT_MD} §2: several queries in flight on one stream; each response carries its "
    "query's rid",
    title="two pipelined queries are both answered, each with its rid",
)
async def rids(ctx: CaseContext) -> None:
    client, stream_id = await ctx.stream(PROTOCOL_ID)
    frames = encode_frame({"code": "zzconf", "rid": 5, "body": {}}) + encode_frame(
        {"code": "pkt", "rid": 4_000_000_000, "body": {"group_id": os.urandom(32)}}
    )
    await client.write(stream_id, frames)
    answers = await _responses(client, stream_id, 2)
    got = sorted((a.get("rid"), a.get("code")) for a in answers)
    if got != [(5, "zzconfR"), (4_000_000_000, "pktR")]:
        raise ViolationError(f"expected rids 5 (zzconfR) and 4000000000 (pktR), got {got}")


async def _expect_reset(ctx: CaseContext, frame: bytes, what: str) -> None:
    client, stream_id = await ctx.stream(PROTOCOL_ID)
    client.transcript.sent(what)
    await client.write(stream_id, frame)
    view = client.streams[stream_id]
    with trio.move_on_after(ctx.step * 2):
        await client.wait(lambda: view.rst or view.fin)
    if not view.rst:
        state = "closed it" if view.fin else "kept it open"
        raise ViolationError(f"after {what} the target {state} instead of resetting the stream")
    # The connection carries on (§1: the connection and the node carry on).
    await client.ping(31)


@case(
    "chat.oversized-frame",
    level=Level.MUST,
    spec=f"{CHAT_MD} §1: a length prefix over 1 MiB resets the stream as soon as it is read",
    title="a 1,048,577-byte length prefix resets the stream; the connection lives",
)
async def oversized(ctx: CaseContext) -> None:
    await _expect_reset(ctx, bytes.fromhex("818040"), "prefix 818040 (1,048,577)")


@case(
    "chat.not-a-map",
    level=Level.MUST,
    spec=f"{CHAT_MD} §1: bytes that are not one CBOR map reset the stream",
    title="a frame that is not a CBOR map resets the stream",
)
async def not_a_map(ctx: CaseContext) -> None:
    await _expect_reset(ctx, bytes.fromhex("0100"), "frame 0100 (an integer)")


@case(
    "chat.bad-envelope",
    level=Level.MUST,
    spec=f"{CHAT_MD} §2 Envelope decisions: an envelope holds exactly its keys; any other "
    "breaks §2",
    title="a query with an extra key resets the stream",
)
async def bad_envelope(ctx: CaseContext) -> None:
    frame = encode_frame({"code": "i", "rid": 1, "body": {}, "extra": 1})
    await _expect_reset(ctx, frame, "query with key 'extra'")


@case(
    "chat.response-to-acceptor",
    level=Level.MUST,
    spec=f"{CHAT_MD} §1 Framing decisions: a response at the accepting side breaks §2",
    title="a response sent on our own stream resets it",
)
async def response_to_acceptor(ctx: CaseContext) -> None:
    frame = encode_frame({"code": "iR", "rid": 1, "ok": True, "body": {}})
    await _expect_reset(ctx, frame, "a response envelope on our stream")


@case(
    "chat.non-canonical",
    level=Level.MUST,
    spec=f"{CHAT_MD} Conventions and §1: non-deterministic CBOR (here an integer not in its "
    "shortest form) is refused",
    title="a non-canonical CBOR frame resets the stream",
)
async def non_canonical(ctx: CaseContext) -> None:
    await _expect_reset(ctx, bytes.fromhex("05a161611800"), "frame 05a161611800")
