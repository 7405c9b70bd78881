"""AutoNAT v1 (``/libp2p/autonat/1.0.0``), sans-IO: messages, the server's dial policy and
rate limits, the client's reachability verdict, and observed-address confirmation.

Normative text: ``specs/autonat.md`` (our reading of libp2p/specs ``autonat/autonat-v1.md``).

Theory of operation
-------------------
A node that wants to know whether it is reachable opens a stream to a peer and writes one
``Dial`` (its peer id and the addresses it thinks it has), ``uvarint(length)``-framed; the peer
dials back and answers one ``DialResponse``: ``OK`` (with the address that worked),
``E_DIAL_ERROR`` (every dial failed), ``E_DIAL_REFUSED`` (rate limit, nothing it may dial) or
``E_BAD_REQUEST``.

* :func:`dial_back_targets` is the server's rule: only TCP addresses whose IP is the IP the
  requester is **observed** at (never another host: RFC 3489 12.1.1), plus the observed
  address itself, at most :data:`MAX_DIAL_BACK` of them.
* :class:`DialBudget` is the server's rate limit: :data:`GLOBAL_DIALS` dial-backs per
  :data:`GLOBAL_WINDOW` seconds in all and :data:`PEER_DIALS` per :data:`PEER_WINDOW` per peer.
* :class:`Reachability` is the client's verdict from the answers of distinct servers: public
  once ``threshold`` (3) say OK and more say OK than error, private once ``threshold`` say error
  and more say error than OK, unknown otherwise. Only the newest answer of each server counts,
  of at most :data:`MAX_SERVERS` servers.
* :class:`ObservedAddrs` collects the addresses identify says peers see us at; an address is
  *confirmed* once :data:`CONFIRMATIONS` distinct peers reported it.

No clock: callers pass ``now``.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

from ..errors import DecodeError, LocalProtocolError
from ..identity import PeerID
from ..multiaddr import Multiaddr, MultiaddrError, tcp_host_port
from ..protobuf import WT_LEN, WT_VARINT, decode_message, encode_bytes_field, encode_varint_field
from ..varint import encode_uvarint, try_decode_uvarint
from ._need_data import NEED_DATA, NeedData

__all__ = [
    "NEED_DATA",
    "PROTOCOL_ID",
    "DialBudget",
    "DialRequest",
    "DialResponse",
    "MessageReader",
    "ObservedAddrs",
    "Reachability",
    "ReachabilityStatus",
    "ResponseStatus",
    "dial_back_targets",
    "frame",
]

# autonat-v1.md "AutoNAT Protocol".
PROTOCOL_ID: Final = "/libp2p/autonat/1.0.0"
#: specs/autonat.md "Limits".
MAX_MESSAGE_SIZE: Final = 4096
MAX_ADDRS: Final = 32
MAX_DIAL_BACK: Final = 8
MAX_STATUS_TEXT: Final = 256
GLOBAL_DIALS: Final = 30
GLOBAL_WINDOW: Final = 60.0
PEER_DIALS: Final = 3
PEER_WINDOW: Final = 90.0
MAX_SERVERS: Final = 16
CONFIRMATIONS: Final = 2
MAX_OBSERVED: Final = 16
MAX_OBSERVERS: Final = 8


class MessageType(enum.IntEnum):
    DIAL = 0
    DIAL_RESPONSE = 1


class ResponseStatus(enum.IntEnum):
    """autonat-v1.md "RPC messages": ``ResponseStatus``."""

    OK = 0
    E_DIAL_ERROR = 100
    E_DIAL_REFUSED = 101
    E_BAD_REQUEST = 200
    E_INTERNAL_ERROR = 300


@attrs.frozen
class DialRequest:
    """``Dial``: dial ``peer`` back at ``addrs``."""

    peer: PeerID
    addrs: tuple[Multiaddr, ...]


@attrs.frozen
class DialResponse:
    """``DialResponse``: how the dial-back went."""

    status: ResponseStatus
    text: str = ""
    addr: Multiaddr | None = None


_MESSAGE: Final = {1: WT_VARINT, 2: WT_LEN, 3: WT_LEN}
_DIAL: Final = {1: WT_LEN}
_PEER_INFO: Final = {1: WT_LEN, 2: WT_LEN}
_RESPONSE: Final = {1: WT_VARINT, 2: WT_LEN, 3: WT_LEN}


def encode(message: DialRequest | DialResponse) -> bytes:
    """The protobuf bytes of ``message`` (proto2: the type and status are always written)."""
    if isinstance(message, DialRequest):
        info = encode_bytes_field(1, message.peer.to_bytes())
        info += b"".join(encode_bytes_field(2, a.to_bytes()) for a in message.addrs[:MAX_ADDRS])
        return encode_varint_field(1, MessageType.DIAL) + encode_bytes_field(
            2, encode_bytes_field(1, info)
        )
    body = encode_varint_field(1, int(message.status))
    if message.text:
        body += encode_bytes_field(2, message.text.encode()[:MAX_STATUS_TEXT])
    if message.addr is not None:
        body += encode_bytes_field(3, message.addr.to_bytes())
    return encode_varint_field(1, MessageType.DIAL_RESPONSE) + encode_bytes_field(3, body)


def frame(message: DialRequest | DialResponse) -> bytes:
    """``uvarint(length) || message``.

    Raises:
        LocalProtocolError: the message is over :data:`MAX_MESSAGE_SIZE`.
    """
    data = encode(message)
    if len(data) > MAX_MESSAGE_SIZE:
        raise LocalProtocolError("autonat message too large")
    return encode_uvarint(len(data)) + data


def _last(fields: dict[int, list[int | bytes]], number: int) -> int | bytes | None:
    values = fields.get(number)
    return values[-1] if values else None


def decode(data: bytes) -> DialRequest | DialResponse:
    """Parse one message (without its length prefix).

    Raises:
        DecodeError: malformed, an unknown type or status, or a ``Dial`` without a peer id.
    """
    fields = decode_message(data, _MESSAGE)
    kind = _last(fields, 1)
    if kind is None:
        kind = MessageType.DIAL
    if kind == MessageType.DIAL:
        dial = _last(fields, 2)
        if not isinstance(dial, bytes):
            raise DecodeError("autonat DIAL without a dial", hint="bad autonat dial")
        info = _last(decode_message(dial, _DIAL), 1)
        if not isinstance(info, bytes):
            raise DecodeError("autonat DIAL without a peer", hint="bad autonat dial")
        peer_fields = decode_message(info, _PEER_INFO)
        raw_id = _last(peer_fields, 1)
        if not isinstance(raw_id, bytes):
            raise DecodeError("autonat DIAL without a peer id", hint="bad autonat dial")
        raw_addrs = peer_fields.get(2, [])
        if len(raw_addrs) > MAX_ADDRS:
            raise DecodeError("autonat DIAL with too many addresses", hint="bad autonat dial")
        addrs = []
        for raw in raw_addrs:
            try:
                addrs.append(Multiaddr.from_bytes(bytes(raw) if isinstance(raw, bytes) else b""))
            except MultiaddrError:
                continue
        return DialRequest(PeerID.from_bytes(raw_id), tuple(addrs))
    if kind == MessageType.DIAL_RESPONSE:
        body = _last(fields, 3)
        if not isinstance(body, bytes):
            raise DecodeError("autonat response without a body", hint="bad autonat response")
        response = decode_message(body, _RESPONSE)
        status = _last(response, 1)
        if not isinstance(status, int) or status not in ResponseStatus._value2member_map_:
            raise DecodeError(f"autonat status {status!r}", hint="bad autonat status")
        text = _last(response, 2)
        raw_addr = _last(response, 3)
        addr = None
        if isinstance(raw_addr, bytes):
            try:
                addr = Multiaddr.from_bytes(raw_addr)
            except MultiaddrError:
                addr = None
        return DialResponse(
            ResponseStatus(status),
            text.decode(errors="replace")[:MAX_STATUS_TEXT] if isinstance(text, bytes) else "",
            addr,
        )
    raise DecodeError(f"unknown autonat message type {kind!r}", hint="bad autonat type")


class MessageReader:
    """Cuts a byte stream into framed AutoNAT messages (at most :data:`MAX_MESSAGE_SIZE`)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data

    def next_message(self) -> DialRequest | DialResponse | NeedData:
        """The next message or :data:`NEED_DATA`.

        Raises:
            DecodeError: an oversized or malformed message.
        """
        decoded = try_decode_uvarint(self._buffer)
        if decoded is None:
            return NEED_DATA
        length, pos = decoded
        if length > MAX_MESSAGE_SIZE:
            raise DecodeError("autonat message too large", hint="autonat too large")
        if len(self._buffer) - pos < length:
            return NEED_DATA
        body = bytes(self._buffer[pos : pos + length])
        del self._buffer[: pos + length]
        return decode(body)


# -- server ------------------------------------------------------------------------------------


def _ip_of(addr: Multiaddr) -> str | None:
    target = tcp_host_port(addr)
    if target is None:
        return None
    try:
        return str(ipaddress.ip_address(target.host))
    except ValueError:
        return None  # a DNS name: never dialed back


def dial_back_targets(requested: Iterable[Multiaddr], observed: Multiaddr) -> list[Multiaddr]:
    """The addresses the server may dial: requested TCP addresses on the requester's observed
    IP, then the observed address itself; at most :data:`MAX_DIAL_BACK`, no duplicates.
    Nothing at all for an observed address that is not a plain IP and TCP one (relayed)."""
    observed_ip = _ip_of(observed)
    if observed_ip is None or "p2p-circuit" in str(observed):
        return []
    out: list[Multiaddr] = []
    for addr in [*requested, observed]:
        bare = addr.without_peer_id()
        if "p2p-circuit" in str(bare) or _ip_of(bare) != observed_ip or bare in out:
            continue
        out.append(bare)
        if len(out) == MAX_DIAL_BACK:
            break
    return out


class DialBudget:
    """The server's dial-back rate limits (sliding windows; no clock, callers pass ``now``)."""

    def __init__(
        self,
        *,
        global_dials: int = GLOBAL_DIALS,
        global_window: float = GLOBAL_WINDOW,
        peer_dials: int = PEER_DIALS,
        peer_window: float = PEER_WINDOW,
    ) -> None:
        self.global_dials = global_dials
        self.global_window = global_window
        self.peer_dials = peer_dials
        self.peer_window = peer_window
        self._all: deque[float] = deque()
        self._by_peer: dict[PeerID, deque[float]] = {}

    def allow(self, peer: PeerID, now: float) -> bool:
        """True (and the dial-back charged) if ``peer`` may have one now."""
        while self._all and now - self._all[0] >= self.global_window:
            self._all.popleft()
        for key in [p for p, q in self._by_peer.items() if now - q[-1] >= self.peer_window]:
            del self._by_peer[key]  # bounded: at most global_dials peers within a window
        mine = self._by_peer.get(peer, deque())
        while mine and now - mine[0] >= self.peer_window:
            mine.popleft()
        if len(self._all) >= self.global_dials or len(mine) >= self.peer_dials:
            return False
        self._all.append(now)
        mine.append(now)
        self._by_peer[peer] = mine
        return True


# -- client ------------------------------------------------------------------------------------


class ReachabilityStatus(enum.Enum):
    UNKNOWN = "unknown"
    PUBLIC = "public"
    PRIVATE = "private"


class Reachability:
    """The client's verdict from the newest answer of each server."""

    def __init__(self, threshold: int = 3) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.threshold = threshold
        self._answers: dict[PeerID, bool] = {}
        self.reachable_addr: Multiaddr | None = None

    def record(self, server: PeerID, response: DialResponse) -> None:
        """Count ``server``'s answer: OK and E_DIAL_ERROR count; refusals do not."""
        if response.status is ResponseStatus.OK:
            ok = True
            if response.addr is not None:
                self.reachable_addr = response.addr
        elif response.status is ResponseStatus.E_DIAL_ERROR:
            ok = False
        else:
            return
        self._answers.pop(server, None)
        self._answers[server] = ok
        while len(self._answers) > MAX_SERVERS:
            del self._answers[next(iter(self._answers))]

    @property
    def counts(self) -> tuple[int, int]:
        """(servers that reached us, servers that could not)."""
        ok = sum(self._answers.values())
        return ok, len(self._answers) - ok

    @property
    def status(self) -> ReachabilityStatus:
        ok, failed = self.counts
        if ok >= self.threshold and ok > failed:
            return ReachabilityStatus.PUBLIC
        if failed >= self.threshold and failed > ok:
            return ReachabilityStatus.PRIVATE
        return ReachabilityStatus.UNKNOWN


class ObservedAddrs:
    """Addresses peers (identify's ``observedAddr``) say they see us at."""

    def __init__(self, confirmations: int = CONFIRMATIONS) -> None:
        self.confirmations = confirmations
        self._by_addr: dict[Multiaddr, set[PeerID]] = {}

    def record(self, observer: PeerID, addr: Multiaddr) -> None:
        """``observer`` sees us at ``addr`` (kept for at most 16 addresses, 8 observers each)."""
        bare = addr.without_peer_id()
        observers = self._by_addr.get(bare)
        if observers is None:
            if len(self._by_addr) >= MAX_OBSERVED:
                weakest = min(self._by_addr, key=lambda a: len(self._by_addr[a]))
                del self._by_addr[weakest]
            observers = self._by_addr[bare] = set()
        if len(observers) < MAX_OBSERVERS:
            observers.add(observer)

    def confirmed(self) -> list[Multiaddr]:
        """Addresses reported by at least ``confirmations`` distinct peers, most reported
        first."""
        ranked = sorted(self._by_addr.items(), key=lambda item: -len(item[1]))
        return [a for a, peers in ranked if len(peers) >= self.confirmations]

    def all(self) -> Sequence[Multiaddr]:
        return list(self._by_addr)
