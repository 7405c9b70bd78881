"""The wire form of batched ratification (``mratb``, specs/chat.md §21): reading a batch at the
ratifier, writing and reading its answer, and cutting an author's queue into batches.

``mratb {group_id, packets: [packet...]}`` holds 1 to :data:`MAX_BATCH` packets of the querier
(without certificates), in the order they are to be checked; the whole query is one frame
(1 MiB), and an author fills a batch with at most :data:`MAX_BATCH_BYTES` of packets (a larger
packet goes alone). ``mratbR {results: [result...]}`` holds one result per packet, in order:
``{vote}`` or ``{reason}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from ...errors import DecodeError
from ...identity import PeerID
from ..core.certificate import MAX_BATCH
from ..core.packet import MAX_TEXT, Packet, Vote
from ..core.roster_update import ROSTER_MESSAGE_TYPE
from .deliver_batch import read_packets

#: An author puts at most this many bytes of packets in one batch (a frame is 1 MiB).
MAX_BATCH_BYTES: Final = 768 * 1024
#: What a packet adds to a batch beyond its artifact's data, for the byte budget.
PACKET_OVERHEAD: Final = 2048


def read_batch(value: Any, group_id: bytes, querier: PeerID) -> list[Packet]:
    """The packets of an ``mratb`` body.

    Raises:
        Refusal: ``"malformed"`` (not a list of 1..64 packets, or one that does not decode),
            ``"unknown group"`` (a packet of another group), ``"not allowed"`` (a packet the
            querier did not write: only the author asks for votes on its messages).
    """
    return read_packets(value, group_id, querier)


def batch_result(outcome: Vote | str) -> dict[str, Any]:
    """One entry of ``mratbR``'s ``results``."""
    if isinstance(outcome, str):
        return {"reason": outcome}
    return {"vote": outcome.to_cbor()}


def read_results(body: Any, count: int) -> list[Vote | str | None]:
    """The results of an ``mratbR`` body for a batch of ``count`` packets: a vote, a reason,
    or None for an entry that does not decode.

    Raises:
        DecodeError: not a list of ``count`` results.
    """
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list) or len(results) != count:
        raise DecodeError(f"mratbR must hold {count} results")
    out: list[Vote | str | None] = []
    for entry in results:
        if isinstance(entry, dict) and set(entry) == {"vote"}:
            try:
                out.append(Vote.from_cbor(entry["vote"]))
            except DecodeError:
                out.append(None)
        elif (
            isinstance(entry, dict)
            and set(entry) == {"reason"}
            and isinstance(entry["reason"], str)
            and len(entry["reason"].encode()) <= MAX_TEXT
        ):
            out.append(entry["reason"])
        else:
            out.append(None)
    return out


def take_batch(queue: list[Packet]) -> list[Packet]:
    """Take the next batch off the front of ``queue``: a roster message alone (§21: never
    batched), else up to :data:`MAX_BATCH` packets within :data:`MAX_BATCH_BYTES` (at least
    one), stopping before a roster message."""
    first = queue[0]
    if first.message.message_type == ROSTER_MESSAGE_TYPE:
        del queue[0]
        return [first]
    size = 0
    count = 0
    for packet in queue[:MAX_BATCH]:
        if packet.message.message_type == ROSTER_MESSAGE_TYPE:
            break
        size += len(packet.message.artifact.data) + PACKET_OVERHEAD
        if count and size > MAX_BATCH_BYTES:
            break
        count += 1
    batch = queue[:count]
    del queue[:count]
    return batch


def encode_batch(group_id: bytes, packets: Sequence[Packet]) -> dict[str, Any]:
    """The body of ``mratb``."""
    return {"group_id": group_id, "packets": [p.to_cbor() for p in packets]}
