"""Packing queued yamux frames into writes.

The core queues frames as a flat list: each frame's header, then, for a data frame, its body
(kept by reference, so a body is never copied on its way out). These functions take from that
list what the driver writes next, either as one ``bytes`` or as whole frames.
"""

from __future__ import annotations

from .frame import _DATA, _body_length

Queue = list[bytes | memoryview]


def take_bytes(out: Queue) -> bytes:
    """Remove everything from ``out`` and return it as one ``bytes`` (possibly empty)."""
    if not out:
        return b""
    if len(out) == 1:
        only = out[0]
        out.clear()
        return only if type(only) is bytes else bytes(only)
    data = b"".join(out)
    out.clear()
    return data


def take_frames(out: Queue, max_bytes: int) -> list[tuple[bytes | memoryview, ...]]:
    """Remove whole frames from the front of ``out``, about ``max_bytes`` of them at most.

    Each item is one frame: its header, then its body for a data frame. A driver whose
    transport has its own message size (Noise: 65519 bytes) packs whole frames into each
    message, so the peer never sees a frame split across two. The first frame is always
    returned, however large; the rest stay queued in order.
    """
    frames: list[tuple[bytes | memoryview, ...]] = []
    total = 0
    i = 0
    n = len(out)
    while i < n:
        header = out[i]
        size = len(header)
        # A data frame's header is followed by its body, which belongs with it.
        if header[1] == _DATA and i + 1 < n and len(out[i + 1]) == _body_length(header) > 0:
            frame: tuple[bytes | memoryview, ...] = (header, out[i + 1])
            size += len(out[i + 1])
            step = 2
        else:
            frame = (header,)
            step = 1
        if frames and total + size > max_bytes:
            break
        frames.append(frame)
        total += size
        i += step
    del out[:i]
    return frames
