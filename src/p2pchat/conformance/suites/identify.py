"""identify (``/ipfs/id/1.0.0``) and identify/push, read with our codec.

Cited: libp2p/specs ``identify/README.md``, RFC 0003 (routing records) for the signed peer
record, and ``specs/identify.md`` for our limits.
"""

from __future__ import annotations

from typing import Final

import attrs

from ...errors import DecodeError
from ...multiaddr import Multiaddr
from ...protobuf import WT_LEN, decode_message
from ...protocols import identify as core
from ...records import RecordError, open_peer_record
from ...varint import decode_uvarint
from ..context import CaseContext
from ..mux import MuxClient
from ..registry import Level, NotApplicableError, ViolationError, case

IDENTIFY: Final = "libp2p/specs identify/README.md"
#: Every field of the Identify message is length-delimited.
_SCHEMA: Final = {number: WT_LEN for number in (1, 2, 3, 4, 5, 6, 8)}


@attrs.frozen
class _Answer:
    client: MuxClient
    info: core.IdentifyInfo
    #: Each message's raw fields (number -> values), in order.
    raw: tuple[dict[int, list[int | bytes]], ...]


def _split(data: bytes) -> list[bytes]:
    """The length-prefixed messages of an identify stream.

    Raises:
        ViolationError: a malformed prefix or a truncated message.
    """
    bodies, pos = [], 0
    while pos < len(data):
        try:
            length, pos = decode_uvarint(data, pos)
        except DecodeError as exc:
            raise ViolationError(f"identify length prefix: {exc}") from exc
        if pos + length > len(data):
            raise ViolationError(
                f"identify message of {length} bytes cut short at {len(data) - pos}"
            )
        bodies.append(data[pos : pos + length])
        pos += length
    return bodies


async def _identify(ctx: CaseContext) -> _Answer:
    client, stream_id = await ctx.stream(core.PROTOCOL_ID)
    data = await client.read_to_end(stream_id)
    client.transcript.received(f"identify: {len(data)} bytes then FIN")
    bodies = _split(data)
    if not bodies:
        raise ViolationError("the target closed the identify stream without a message")
    reader = core.IdentifyReader()
    reader.receive_data(data)
    reader.receive_eof()
    try:
        info = reader.next_event()
        raw = tuple(decode_message(b, _SCHEMA) for b in bodies)
    except DecodeError as exc:
        raise ViolationError(f"the identify message does not decode: {exc}") from exc
    assert isinstance(info, core.IdentifyInfo)
    return _Answer(client, info, raw)


def _values(answer: _Answer, number: int) -> list[bytes]:
    return [v for fields in answer.raw for v in fields.get(number, []) if isinstance(v, bytes)]


@case(
    "identify.message",
    level=Level.MUST,
    spec=f"{IDENTIFY} §identify: the peer answers with an Identify message and closes the stream",
    title="identify answers with a well-formed message, then FIN",
)
async def message(ctx: CaseContext) -> None:
    await _identify(ctx)


@case(
    "identify.public-key",
    level=Level.MUST,
    spec=f"{IDENTIFY} §publicKey: the public key of the peer (the one Noise authenticated)",
    title="publicKey is present and is the key the target authenticated with",
)
async def public_key(ctx: CaseContext) -> None:
    answer = await _identify(ctx)
    key = answer.info.public_key
    if key is None:
        raise ViolationError("the identify message has no publicKey")
    if key != answer.client.channel.remote_key:
        raise ViolationError(
            f"publicKey is {key.to_protobuf().hex()}, the Noise handshake authenticated "
            f"{answer.client.channel.remote_key.to_protobuf().hex()}"
        )


@case(
    "identify.listen-addrs",
    level=Level.MUST,
    spec=f"{IDENTIFY} §listenAddrs: the addresses the peer listens on, binary multiaddrs",
    title="every listenAddrs entry is a well-formed multiaddr, and there is one at least",
)
async def listen_addrs(ctx: CaseContext) -> None:
    answer = await _identify(ctx)
    raw = _values(answer, core.F_LISTEN_ADDRS)
    for item in raw:
        try:
            Multiaddr.from_bytes(item)
        except DecodeError as exc:
            raise ViolationError(
                f"listenAddrs entry {item.hex()} is not a multiaddr: {exc}"
            ) from exc
    if not raw:
        raise ViolationError("the identify message lists no listen address")


@case(
    "identify.observed-addr",
    level=Level.SHOULD,
    spec=f"{IDENTIFY} §observedAddr: the address the peer sees us at",
    title="observedAddr is our address as the target sees it (our TCP port)",
)
async def observed_addr(ctx: CaseContext) -> None:
    answer = await _identify(ctx)
    observed = answer.info.observed_addr
    if observed is None:
        raise ViolationError("no (well-formed) observedAddr")
    port = answer.client.channel.raw.stream.socket.getsockname()[1]
    if observed.value_for("tcp") != str(port):
        raise ViolationError(f"observedAddr {observed} does not carry our TCP port {port}")


@case(
    "identify.protocols",
    level=Level.MUST,
    spec=f"{IDENTIFY} §protocols: the protocols the peer supports, as protocol ids",
    title="protocols are UTF-8 protocol ids, identify among them",
)
async def protocols(ctx: CaseContext) -> None:
    answer = await _identify(ctx)
    for item in _values(answer, core.F_PROTOCOLS):
        try:
            text = item.decode("utf-8")
        except UnicodeDecodeError:
            raise ViolationError(f"protocol {item[:64].hex()} is not UTF-8") from None
        if not text.startswith("/"):
            raise ViolationError(f"protocol {text[:64]!r} is not a protocol id")
    if core.PROTOCOL_ID not in answer.info.protocols:
        raise ViolationError(f"protocols {list(answer.info.protocols)} lack {core.PROTOCOL_ID}")


@case(
    "identify.signed-record",
    level=Level.MUST,
    spec=f"{IDENTIFY} §signedPeerRecord; libp2p/specs RFC/0003-routing-records.md: an "
    "envelope signed by the peer",
    title="a signed peer record, when sent, verifies and names the target",
)
async def signed_record(ctx: CaseContext) -> None:
    answer = await _identify(ctx)
    envelope = answer.info.signed_peer_record
    if envelope is None:
        raise NotApplicableError("the target sends no signed peer record")
    try:
        record, _ = open_peer_record(envelope)
    except RecordError as exc:
        raise ViolationError(f"the signed peer record does not verify: {exc}") from exc
    if record.peer != answer.client.channel.remote_peer:
        raise ViolationError(f"the signed peer record is {record.peer}'s")


@case(
    "identify.push",
    level=Level.MAY,
    spec=f"{IDENTIFY} §identify/push: the receiver reads the pushed message",
    title="identify/push is accepted: our message read, no reset",
)
async def push(ctx: CaseContext) -> None:
    client, stream_id = await ctx.stream(core.PUSH_PROTOCOL_ID)
    info = core.IdentifyInfo(
        protocol_version="ipfs/0.1.0",
        agent_version="p2pchat-conformance",
        public_key=ctx.identity.public_key,
        protocols=(core.PROTOCOL_ID,),
    )
    await client.write(stream_id, core.encode_identify(info))
    await client.close_write(stream_id)
    await client.ping(21)
    view = client.streams[stream_id]
    if view.rst:
        raise ViolationError("the target reset the push stream")
