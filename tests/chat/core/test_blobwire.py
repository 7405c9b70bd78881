"""``/p2pchat/blob/1.0.0`` frames and the fetch plan (specs/artifacts.md §5), without I/O."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from p2pchat.chat.core import cbor
from p2pchat.chat.core.artifact import MAX_BLOB, ArtifactError
from p2pchat.chat.core.blobplan import FetchPlan
from p2pchat.chat.core.blobwire import MAX_FRAME_SIZE, BlobRequest, BlobResponse
from p2pchat.chat.core.wire import FrameError, FrameReader


def _decode(frame: bytes) -> Any:
    reader = FrameReader(max_frame_size=MAX_FRAME_SIZE)
    reader.receive_data(frame)
    return reader.next_event()


def test_request_and_response_round_trip() -> None:
    request = BlobRequest(7, bytes(32), bytes([1]) * 32)
    assert BlobRequest.from_map(_decode(request.encode())) == request
    for response in (BlobResponse(7, data=bytes(MAX_BLOB)), BlobResponse(7, refused="not held")):
        assert BlobResponse.from_map(_decode(response.encode())) == response


@pytest.mark.parametrize(
    "value",
    [
        {"id": 1, "group_id": bytes(31), "blob": bytes(32)},
        {"id": -1, "group_id": bytes(32), "blob": bytes(32)},
        {"id": 2**32, "group_id": bytes(32), "blob": bytes(32)},
        {"id": 1, "group_id": bytes(32)},
        {"id": 1, "group_id": bytes(32), "blob": bytes(32), "x": 1},
        [],
    ],
)
def test_malformed_requests_are_refused(value: Any) -> None:
    with pytest.raises(FrameError):
        BlobRequest.from_map(value)


@pytest.mark.parametrize(
    "value",
    [
        {"id": 1},
        {"id": 1, "data": b"x", "refused": "no"},
        {"id": 1, "data": bytes(MAX_BLOB + 1)},
        {"id": 1, "refused": 3},
    ],
)
def test_malformed_responses_are_refused(value: Any) -> None:
    with pytest.raises(FrameError):
        BlobResponse.from_map(value)


def test_a_frame_larger_than_a_blob_is_refused_before_it_is_buffered() -> None:
    reader = FrameReader(max_frame_size=MAX_FRAME_SIZE)
    header = cbor.dumps({"id": 1, "data": bytes(MAX_FRAME_SIZE)})[:8]
    reader.receive_data(b"\xff\xff\xff\x01" + header)
    with pytest.raises(FrameError):
        reader.next_event()


def _blob(n: int) -> tuple[bytes, bytes]:
    data = bytes([n]) * 10
    return hashlib.sha256(data).digest(), data


def test_plan_spreads_blobs_over_holders_and_routes_refusals() -> None:
    blobs = [_blob(n) for n in range(4)]
    plan = FetchPlan([(i, len(d)) for i, d in blobs])
    plan.add_holder("a")
    plan.add_holder("b")
    first, second = plan.next_for("a"), plan.next_for("b")
    assert {first, second} == {blobs[0][0], blobs[1][0]}
    assert first is not None
    plan.refused("a", first)
    assert plan.next_for("a") == blobs[2][0]  # a is not asked for what it refused
    assert plan.next_for("b") == first  # b is
    with pytest.raises(ArtifactError):
        plan.check(first, b"garbage")


def test_plan_requeues_a_dropped_holders_blobs_and_ends_when_none_can_serve() -> None:
    blobs = [_blob(n) for n in range(2)]
    plan = FetchPlan([(i, len(d)) for i, d in blobs])
    plan.add_holder("a")
    plan.add_holder("b")
    taken = plan.next_for("a")
    assert taken is not None
    plan.drop("a")
    assert plan.next_for("b") == taken
    plan.refused("b", taken)
    assert taken in plan.unobtainable
    other = plan.next_for("b")
    assert other is not None
    plan.check(other, dict(blobs)[other])
    plan.got("b", other)
    assert plan.finished
    assert not plan.complete
