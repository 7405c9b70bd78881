"""Which holder is asked for which blob (specs/artifacts.md §5 "Holders"), without I/O.

A :class:`FetchPlan` holds the blobs still wanted (in order), what each holder has in flight,
and who said "not held" for what. The transfer service asks :meth:`~FetchPlan.next_for` a
holder with a free slot, reports each answer, and drops a holder that stalls or serves
garbage: its blobs go back to the front of the queue for the others. A blob every live holder
refused is *unobtainable* for this fetch; the fetch ends when nothing is queued or in flight.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable

from .artifact import ArtifactError, sha256


class FetchPlan:
    """The blobs ``wanted`` (``(id, exact length)``) from the holders added."""

    def __init__(self, wanted: Iterable[tuple[bytes, int]]) -> None:
        self._length: dict[bytes, int] = {}
        for blob_id, length in wanted:
            self._length.setdefault(blob_id, length)
        self._queue: deque[bytes] = deque(self._length)
        self._in_flight: dict[Hashable, set[bytes]] = {}
        self._refused: dict[bytes, set[Hashable]] = {}
        self.unobtainable: set[bytes] = set()
        self.received = 0

    @property
    def holders(self) -> list[Hashable]:
        return list(self._in_flight)

    @property
    def finished(self) -> bool:
        """Nothing queued and nothing in flight (some blobs may be unobtainable)."""
        return not self._queue and not any(self._in_flight.values())

    @property
    def complete(self) -> bool:
        """Every wanted blob was received."""
        return self.finished and not self.unobtainable

    def in_flight(self, holder: Hashable) -> int:
        return len(self._in_flight.get(holder, ()))

    def add_holder(self, holder: Hashable) -> None:
        self._in_flight.setdefault(holder, set())

    def next_for(self, holder: Hashable) -> bytes | None:
        """The next blob to ask ``holder`` for, or None if none is left for it."""
        for index, blob_id in enumerate(self._queue):
            if holder not in self._refused.get(blob_id, ()):
                del self._queue[index]
                self._in_flight[holder].add(blob_id)
                return blob_id
        return None

    def check(self, blob_id: bytes, data: bytes) -> None:
        """Verify a blob as it arrives: its hash and its exact length.

        Raises:
            ArtifactError: it is not the blob asked for.
        """
        if len(data) != self._length.get(blob_id) or sha256(data) != blob_id:
            raise ArtifactError(f"blob {blob_id.hex()[:16]} does not match", hint="bad hash")

    def got(self, holder: Hashable, blob_id: bytes) -> None:
        """``holder``'s blob was verified and stored."""
        self._in_flight.get(holder, set()).discard(blob_id)
        self._refused.pop(blob_id, None)
        self.received += 1

    def refused(self, holder: Hashable, blob_id: bytes) -> None:
        """``holder`` does not hold ``blob_id``: another is asked, if any live one may."""
        self._in_flight.get(holder, set()).discard(blob_id)
        who = self._refused.setdefault(blob_id, set())
        who.add(holder)
        if set(self._in_flight) <= who:
            self.unobtainable.add(blob_id)
        else:
            self._queue.appendleft(blob_id)

    def drop(self, holder: Hashable) -> None:
        """Stop asking ``holder`` (stalled, garbage, gone); its blobs go back to the queue."""
        for blob_id in sorted(self._in_flight.pop(holder, set())):
            self._queue.appendleft(blob_id)
        for who in self._refused.values():
            who.discard(holder)
        self._settle()

    def _settle(self) -> None:
        """Move every queued blob that no live holder may still have to ``unobtainable``."""
        live = set(self._in_flight)
        keep: deque[bytes] = deque()
        for blob_id in self._queue:
            if live and not live <= self._refused.get(blob_id, set()):
                keep.append(blob_id)
            else:
                self.unobtainable.add(blob_id)
        self._queue = keep
