"""The roster chain in pages (specs/chat.md §16), sans-IO.

A group's proof chain (its signed genesis and every certified roster message since) grows with
every roster change, so it is never sent in one frame: ``pkt {group_id, from}`` answers the
roster messages authored in epochs ``from, from + 1, ...``, as many as fit in
:data:`PKT_PAGE_BYTES` (at least one), the genesis on the page of ``from = 0``, and ``next``,
the ``from`` of the following page (null at the end).

* :func:`roster_page` builds an answer from the chain the responder holds.
* :func:`read_roster_page` checks an answer's shape against the ``from`` asked: genesis present
  exactly on the first page, roster messages of consecutive epochs starting at ``from``,
  ``next`` just after the last of them; anything else (a reordered, gapped or stuck page) is a
  :class:`RosterPageError` with its reason.
* :class:`ChainFetch` is a joiner's session: it verifies each page link by link (genesis
  signature and group id, then each roster message against the roster before it, as
  :meth:`GroupState.apply_roster_packet` does), counts pages and bytes, and says which page to
  ask for next.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from ...errors import ProtocolError, RemoteProtocolError
from . import cbor
from .genesis import SignedGenesis
from .group_state import GroupState
from .packet import Packet

__all__ = [
    "MAX_CHAIN_BYTES",
    "MAX_CHAIN_PAGES",
    "PKT_PAGE_BYTES",
    "ChainFetch",
    "RosterPage",
    "RosterPageError",
    "read_roster_page",
    "roster_page",
]

#: A ``pktR`` page holds roster messages (with certificates, CBOR) of at most this many bytes,
#: genesis included, but always at least one roster message when any is left.
PKT_PAGE_BYTES: Final = 768 * 1024
#: A joiner's budget for one chain: pages and bytes (its time is the service's, 60 s).
MAX_CHAIN_PAGES: Final = 4096
MAX_CHAIN_BYTES: Final = 64 * 1024 * 1024


class RosterPageError(RemoteProtocolError):
    """A ``pktR`` page that does not continue the chain; ``hint`` is the reason."""


def roster_page(
    signed: SignedGenesis, packets: Sequence[Packet], first: int, *, max_bytes: int | None = None
) -> dict[str, Any]:
    """The ``pktR`` body for ``from = first`` over the chain ``packets`` (roster messages of
    epochs 0, 1, ...: those the querier may see), of at most ``max_bytes`` (default
    :data:`PKT_PAGE_BYTES`, read at each call).

    Raises:
        RosterPageError: ``first`` is beyond the chain (hint ``"future epoch"``).
    """
    if not 0 <= first <= len(packets):
        raise RosterPageError(f"no roster message of epoch {first}", hint="future epoch")
    if max_bytes is None:
        max_bytes = PKT_PAGE_BYTES
    body: dict[str, Any] = {}
    size = 0
    if first == 0:
        genesis = signed.to_cbor()
        body["genesis"] = genesis
        size += len(cbor.dumps(genesis))
    page: list[Any] = []
    epoch = first
    while epoch < len(packets):
        item = packets[epoch].to_cbor()
        item_size = len(cbor.dumps(item))
        if page and size + item_size > max_bytes:
            break
        page.append(item)
        size += item_size
        epoch += 1
    body["rosters"] = page
    body["next"] = epoch if epoch < len(packets) else None
    return body


@attrs.frozen
class RosterPage:
    """A ``pktR`` page read against the ``from`` asked."""

    genesis: SignedGenesis | None
    packets: tuple[Packet, ...]
    next: int | None
    size: int


def read_roster_page(body: Mapping[str, Any], first: int) -> RosterPage:
    """Decode a ``pktR`` body that answers ``from = first`` and check its shape.

    A body without ``next`` (a responder of the single-frame chain: genesis and every roster
    message) is read as the last page, keeping its roster messages from ``first`` on.

    Raises:
        RosterPageError: hint ``"malformed"`` (undecodable, genesis missing on the first page or
            present on another) or ``"bad page"`` (not the epochs ``first, first + 1, ...``, a
            ``next`` that is not just after them, or an empty page that is not the last).
    """
    legacy = "next" not in body  # a responder of the single-frame chain: the whole chain
    raw_genesis = body.get("genesis")
    if (raw_genesis is None) != (first > 0) and not (legacy and first > 0):
        raise RosterPageError("the genesis comes on the first page only", hint="malformed")
    raw = body.get("rosters")
    if not isinstance(raw, list):
        raise RosterPageError("the roster chain is not a list", hint="malformed")
    try:
        genesis = None if raw_genesis is None else SignedGenesis.from_cbor(raw_genesis)
        size = sum(len(cbor.dumps(item)) for item in raw)
        packets = tuple(Packet.from_cbor(item) for item in raw)
    except (TypeError, ValueError, ProtocolError) as exc:
        raise RosterPageError(f"undecodable roster page: {exc}", hint="malformed") from exc
    if legacy and first > 0:
        genesis = None
        packets = tuple(p for p in packets if p.message.epoch >= first)
    for offset, packet in enumerate(packets):
        if packet.message.epoch != first + offset:
            raise RosterPageError(
                f"page from epoch {first} holds the roster message of epoch "
                f"{packet.message.epoch} in place {offset}",
                hint="bad page",
            )
    following = body.get("next")
    if following is not None:
        end = first + len(packets)
        if not packets or following != end or isinstance(following, bool):
            raise RosterPageError(
                f"page from epoch {first} with {len(packets)} roster messages says next "
                f"{following!r}",
                hint="bad page",
            )
    return RosterPage(genesis, packets, following, size)


@attrs.define
class ChainFetch:
    """A joiner's verification of a group's chain, page by page.

    Ask ``pkt {group_id, from: next_from}`` and give each answer to :meth:`take` until it
    returns False; then :attr:`state` is the verified chain.
    """

    group_id: bytes
    max_pages: int = MAX_CHAIN_PAGES
    max_bytes: int = MAX_CHAIN_BYTES
    state: GroupState | None = None
    pages: int = 0
    size: int = 0
    _next: int | None = 0

    @property
    def next_from(self) -> int | None:
        """The ``from`` of the page to ask for, or None when the chain is complete."""
        return self._next

    def take(self, body: Mapping[str, Any]) -> bool:
        """Verify one answer; True if another page is to be asked for.

        Raises:
            RosterPageError: a page out of shape (see :func:`read_roster_page`), a genesis of
                another group (``"unknown group"``), over budget (``"over quota"``), or a
                roster message that does not extend the chain (its reason: ``"bad
                certificate"``, ``"bad signature"``, ...).
        """
        first = self._next
        if first is None:
            raise RosterPageError("the chain is already complete", hint="bad page")
        page = read_roster_page(body, first)
        self.pages += 1
        self.size += page.size
        if page.genesis is not None:
            if page.genesis.group_id != self.group_id:
                raise RosterPageError("the genesis is of another group", hint="unknown group")
            try:
                self.state = GroupState.from_genesis(page.genesis)
            except ProtocolError as exc:
                raise RosterPageError(str(exc), hint=exc.hint) from exc
        assert self.state is not None  # the first page brings the genesis
        for packet in page.packets:
            try:
                self.state.apply_roster_packet(packet)
            except ProtocolError as exc:
                raise RosterPageError(
                    f"roster message of epoch {packet.message.epoch}: {exc}",
                    hint=exc.hint,
                ) from exc
        self._next = page.next
        if page.next is None:
            return False
        if self.pages >= self.max_pages or self.size >= self.max_bytes:
            raise RosterPageError(
                f"the chain exceeds {self.pages} pages or {self.size} bytes", hint="over quota"
            )
        return True
