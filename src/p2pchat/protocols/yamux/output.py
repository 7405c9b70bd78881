"""Packing queued yamux frames into writes.

The core queues frames in one FIFO: each frame's header, then, for a data frame, its body (kept
by reference, so a body is never copied on its way out). An :class:`OutputQueue` also counts the
header-only frames it holds (window updates, RSTs, pings, pongs, GoAway): the core bounds that
count (``YamuxConfig.max_control_backlog``, specs/yamux.md "Bounded output"). Taking frames from
the front costs O(1) per frame whatever the queue's length: a batch never re-slices the rest.
"""

from __future__ import annotations

from collections import deque

from .frame import _DATA

Item = bytes | memoryview


class OutputQueue:
    """The frames the core has queued for the peer, oldest first."""

    __slots__ = ("_items", "control_frames", "queued_bytes")

    def __init__(self) -> None:
        self._items: deque[Item] = deque()
        #: Header-only frames queued and not yet taken.
        self.control_frames = 0
        #: Bytes queued and not yet taken (bodies included).
        self.queued_bytes = 0

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def append_control(self, header: bytes) -> None:
        """Queue a frame that is a header alone."""
        self._items.append(header)
        self.control_frames += 1
        self.queued_bytes += len(header)

    def append_data(self, header: bytes, body: Item) -> None:
        """Queue a data frame: its header, then its (non-empty) body."""
        self._items.append(header)
        self._items.append(body)
        self.queued_bytes += len(header) + len(body)

    def take_bytes(self) -> bytes:
        """Remove everything and return it as one ``bytes`` (possibly empty)."""
        items = self._items
        self.control_frames = 0
        self.queued_bytes = 0
        if not items:
            return b""
        if len(items) == 1:
            only = items.popleft()
            return only if type(only) is bytes else bytes(only)
        data = b"".join(items)
        items.clear()
        return data

    def take_frames(self, max_bytes: int) -> list[tuple[Item, ...]]:
        """Remove whole frames from the front, about ``max_bytes`` of them at most.

        Each item is one frame: its header, then its body for a data frame, kept together so that
        a driver may hand the batch on without copying (ours packs it back to back into Noise
        messages). The first frame is always returned, however large; the rest stay queued in
        order.
        """
        items = self._items
        frames: list[tuple[Item, ...]] = []
        total = 0
        while items:
            header = items[0]
            size = len(header)
            # A data frame's header is always followed by its body, which belongs with it.
            if header[1] == _DATA:
                size += len(items[1])
                if frames and total + size > max_bytes:
                    break
                items.popleft()
                frames.append((header, items.popleft()))
            else:
                if frames and total + size > max_bytes:
                    break
                items.popleft()
                frames.append((header,))
                self.control_frames -= 1
            total += size
        self.queued_bytes -= total
        return frames
