"""Inbound stream scopes of the Host router: per peer while negotiating, per peer and protocol
once agreed (specs/host.md "Stream limits").

Theory of operation
-------------------
An inbound stream costs its owner a task, buffers and a negotiation deadline from the moment it
is accepted, before any handler sees it. So the router charges it twice, over all of a peer's
connections:

* **silent, negotiating**: at most ``max_negotiating`` of a peer's inbound streams that had
  brought no byte when the router took them up are in multistream-select at once. One more is
  reset at once, before any of its bytes is read. (The Host decides what is silent; a stream
  that came with its proposal is answered at once and not counted.)
* **per protocol**: at most ``cap`` of a peer's inbound streams speak one protocol at once
  (the handler's own cap, else the default). Protocols whose cap the peer has reached are left
  out of the protocols offered to it, so its proposal is answered ``na`` during negotiation; the
  slot is then taken when a protocol is agreed, and a stream that finds it taken (several
  negotiated at once) is reset before its handler runs.

Synchronous bookkeeping, no task and no clock; the Host resets and logs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from ..identity import PeerID


class StreamScopes:
    """Counts of a Host's inbound streams, by peer (negotiating) and by (peer, protocol)."""

    def __init__(self, max_negotiating: int, default_cap: int) -> None:
        if max_negotiating < 1 or default_cap < 1:
            raise ValueError("stream limits must be >= 1")
        self.max_negotiating = max_negotiating
        self.default_cap = default_cap
        self._caps: dict[str, int] = {}
        self._negotiating: Counter[PeerID] = Counter()
        self._open: Counter[tuple[PeerID, str]] = Counter()
        #: Streams refused so far, by scope ("negotiating", "protocol").
        self.refused: Counter[str] = Counter()

    def set_cap(self, protocol: str, cap: int | None) -> None:
        """The per-peer cap of ``protocol`` (None: the default).

        Raises:
            ValueError: ``cap`` below 1.
        """
        if cap is None:
            self._caps.pop(protocol, None)
        elif cap < 1:
            raise ValueError("max_inbound_per_peer must be >= 1")
        else:
            self._caps[protocol] = cap

    def cap(self, protocol: str) -> int:
        return self._caps.get(protocol, self.default_cap)

    def start_negotiation(self, peer: PeerID) -> bool:
        """Charge a newly accepted stream of ``peer``; False (refused) when the peer already
        has ``max_negotiating`` streams negotiating."""
        if self._negotiating[peer] >= self.max_negotiating:
            self.refused["negotiating"] += 1
            return False
        self._negotiating[peer] += 1
        return True

    def end_negotiation(self, peer: PeerID) -> None:
        """The negotiation of one of ``peer``'s streams ended, either way."""
        self._negotiating[peer] -= 1
        if self._negotiating[peer] <= 0:
            del self._negotiating[peer]

    def offered(self, peer: PeerID, protocols: Iterable[str]) -> list[str]:
        """Those of ``protocols`` in which ``peer`` has room for one more stream."""
        return [p for p in protocols if self._open[(peer, p)] < self.cap(p)]

    def open(self, peer: PeerID, protocol: str) -> bool:
        """Take a ``protocol`` slot of ``peer`` for an agreed stream; False when full."""
        key = (peer, protocol)
        if self._open[key] >= self.cap(protocol):
            self.refused["protocol"] += 1
            return False
        self._open[key] += 1
        return True

    def close(self, peer: PeerID, protocol: str) -> None:
        """An agreed stream's handler is done."""
        key = (peer, protocol)
        self._open[key] -= 1
        if self._open[key] <= 0:
            del self._open[key]

    def negotiating(self, peer: PeerID) -> int:
        return self._negotiating[peer]

    def open_streams(self, peer: PeerID, protocol: str) -> int:
        return self._open[(peer, protocol)]
