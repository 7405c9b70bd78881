"""The wire form of batched delivery (``smsgb``, specs/chat.md §21): certified packets that
go to the same member with the same ``relay`` list travel together, in order.

``smsgb {group_id, packets: [packet...], ? relay}`` holds 1 to :data:`MAX_BATCH` certified
packets (the whole query one frame; a sender fills a batch with at most
:data:`MAX_BATCH_BYTES`); ``smsgbR {results: [result...]}`` one result per packet, in order:
``{}`` (stored), ``{duplicate: true}`` (already held) or ``{reason}``.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from ...errors import DecodeError
from ...identity import PeerID
from ..core.certificate import MAX_BATCH
from ..core.packet import MAX_TEXT, Packet
from ..core.roster_update import ROSTER_MESSAGE_TYPE
from .dispatch import Refusal

#: A sender puts at most this many bytes of packets in one batch (a frame is 1 MiB).
MAX_BATCH_BYTES: Final = 768 * 1024
#: What a certified packet adds to a batch beyond its artifact's data, for the byte budget.
PACKET_OVERHEAD: Final = 4096


@attrs.frozen
class Outgoing:
    """A certified packet on its way to one member, with the members that one relays it to."""

    packet: Packet
    relay: tuple[PeerID, ...]

    @property
    def size(self) -> int:
        return len(self.packet.message.artifact.data) + PACKET_OVERHEAD

    @property
    def is_roster(self) -> bool:
        return self.packet.message.message_type == ROSTER_MESSAGE_TYPE


def take_delivery(queue: list[Outgoing]) -> list[Outgoing]:
    """Take the next batch off the front of ``queue``: a roster message alone (its epoch must
    be applied before what follows it is checked), else up to :data:`MAX_BATCH` packets with
    the first one's ``relay`` within :data:`MAX_BATCH_BYTES` (at least one)."""
    first = queue[0]
    count, size = 1, first.size
    if not first.is_roster:
        for item in queue[1:MAX_BATCH]:
            size += item.size
            if item.is_roster or item.relay != first.relay or size > MAX_BATCH_BYTES:
                break
            count += 1
    batch = queue[:count]
    del queue[:count]
    return batch


def read_packets(value: Any, group_id: bytes, author: PeerID | None = None) -> list[Packet]:
    """The packets of an ``smsgb`` body (and, with ``author``, of an ``mratb`` body: only the
    author asks for votes on its messages).

    Raises:
        Refusal: ``"malformed"`` (not a list of 1..64 packets, or one that does not decode),
            ``"unknown group"`` (a packet of another group), ``"not allowed"`` (with
            ``author``: a packet another peer wrote).
    """
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_BATCH:
        raise Refusal("malformed")
    packets: list[Packet] = []
    for raw in value:
        try:
            packet = Packet.from_cbor(raw)
        except DecodeError:
            raise Refusal("malformed") from None
        if packet.message.group_id != group_id:
            raise Refusal("unknown group")
        if author is not None and packet.message.author != author:
            raise Refusal("not allowed")
        packets.append(packet)
    return packets


def delivery_result(reason: str | None, duplicate: bool) -> dict[str, Any]:
    """One entry of ``smsgbR``'s ``results``."""
    if reason is not None:
        return {"reason": reason}
    return {"duplicate": True} if duplicate else {}


def read_delivery_results(body: Any, count: int) -> list[str | None]:
    """Per packet of a batch of ``count``: None (the member holds it) or its refusal's reason
    (``"malformed"`` for an entry that does not decode).

    Raises:
        DecodeError: not a list of ``count`` results.
    """
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list) or len(results) != count:
        raise DecodeError(f"smsgbR must hold {count} results")
    out: list[str | None] = []
    for entry in results:
        if entry == {} or entry == {"duplicate": True}:
            out.append(None)
        elif (
            isinstance(entry, dict)
            and set(entry) == {"reason"}
            and isinstance(entry["reason"], str)
            and len(entry["reason"].encode()) <= MAX_TEXT
        ):
            out.append(entry["reason"])
        else:
            out.append("malformed")
    return out
