"""multistream-select 1.0 protocol negotiation, as a sans-IO core.

Normative text: ``specs/multistream.md`` (our reading of multiformats/multistream-select and
libp2p/specs ``connections/README.md``).

Theory of operation
-------------------

Every multistream message is ``uvarint(n) || text || "\\n"`` where ``n`` counts the text *and* the
newline. The dialer (initiator) and the listener (responder) each start with the header
``/multistream/1.0.0``; then the dialer proposes protocol ids one at a time and the listener answers
each with ``na`` or by echoing it. The echo ends negotiation: every later byte belongs to the agreed
protocol.

:class:`Dialer` and :class:`Listener` do no I/O, in the manner of h11. The caller feeds received
bytes with ``receive_data()``, asks for ``next_event()`` until it returns :data:`NEED_DATA`, and
writes whatever ``data_to_send()`` returns. ``receive_data()`` only buffers; parsing happens in
``next_event()``, so a caller may feed several chunks before draining events, and a chunk may split
or join messages anywhere.

- The dialer queues the header and its first proposal at construction, so they leave in one write
  (as go-libp2p and rust-libp2p do). With ``request_list=True`` an ``ls`` goes between the two.
  Each ``na`` queues the next proposal; the echo of the pending proposal yields
  :class:`ProtocolAgreed`, and ``na`` to the last one yields :class:`NegotiationFailed`.
- The listener sends its header once it has read the dialer's, so that its header and first answer
  share a write (the README's "Implementation Recommendations"). It answers ``ls``, and at most
  ``max_proposals`` requests in all.
- A terminal event (agreement or failure) ends the object's life. After agreement the unparsed rest
  of the receive buffer is :meth:`~Dialer.trailing_data` (for example a Noise message the peer
  pipelined after its proposal); the caller hands it to the agreed protocol.
- Bad bytes or a message out of place raise :class:`~p2pchat.errors.RemoteProtocolError` from
  ``next_event()`` (its subclass :class:`~p2pchat.errors.DecodeError` when the bytes are not a
  well-formed message), and the object stays in :attr:`State.ERROR`. Misuse of the API raises
  :class:`~p2pchat.errors.LocalProtocolError` and changes nothing.
"""

from __future__ import annotations

import abc
import enum
from collections import deque
from collections.abc import Collection, Iterable, Sequence
from typing import Final

import attrs

from ..errors import DecodeError, LocalProtocolError, RemoteProtocolError
from ..varint import decode_uvarint, encode_uvarint, try_decode_uvarint
from ._need_data import NEED_DATA, NeedData

__all__ = [
    "LS",
    "MAX_MESSAGE_SIZE",
    "MAX_PROPOSALS",
    "MULTISTREAM_ID",
    "NA",
    "NEED_DATA",
    "Dialer",
    "DialerEvent",
    "Listener",
    "NeedData",
    "NegotiationFailed",
    "ProtocolAgreed",
    "ProtocolsListed",
    "State",
    "decode_ls_response",
    "decode_message",
    "encode_ls_response",
    "encode_message",
]

# multistream-select README "Protocol"; libp2p/specs connections/README.md "multistream-select".
MULTISTREAM_ID: Final = "/multistream/1.0.0"
# multistream-select README "Protocol": the answer to a proposal the listener does not support.
NA: Final = "na"
# multistream-select README "Listing" (optional there): the request for the listener's protocols.
LS: Final = "ls"
# go-multistream's limit (lpReadBuf): the uvarint value, which counts the newline, is at most 1024.
MAX_MESSAGE_SIZE: Final = 1024
# Our bound on the requests (proposals and ``ls``) a listener answers on one stream; see the spec.
MAX_PROPOSALS: Final = 32

_NEWLINE: Final = 0x0A
# A uvarint of 3 or more bytes is at least 2**14, above MAX_MESSAGE_SIZE: reject it without waiting.
_MAX_PREFIX_BYTES: Final = len(encode_uvarint(MAX_MESSAGE_SIZE))

_Buffer = bytes | bytearray | memoryview


class State(enum.Enum):
    """Where a :class:`Dialer` or :class:`Listener` is in its life."""

    NEGOTIATING = "NEGOTIATING"
    #: A protocol was agreed; the stream now belongs to it.
    AGREED = "AGREED"
    #: The dialer ran out of proposals (every one got ``na``). A clean end, not a protocol error.
    FAILED = "FAILED"
    #: The peer broke the protocol; ``next_event()`` raised a RemoteProtocolError.
    ERROR = "ERROR"


_str_tuple = attrs.validators.deep_iterable(
    member_validator=attrs.validators.instance_of(str),
    iterable_validator=attrs.validators.instance_of(tuple),
)


@attrs.frozen
class ProtocolAgreed:
    """Both sides agreed on ``protocol``; the next bytes on the stream belong to it."""

    protocol: str = attrs.field(validator=attrs.validators.instance_of(str))


@attrs.frozen
class NegotiationFailed:
    """The listener answered ``na`` to every protocol the dialer proposed (``tried``, in order)."""

    tried: tuple[str, ...] = attrs.field(validator=_str_tuple)


@attrs.frozen
class ProtocolsListed:
    """The listener's answer to ``ls``.

    ``protocols`` is ``None`` when the listener answered ``na``: it does not implement ``ls``, which
    the spec makes optional (go-multistream dropped it).
    """

    protocols: tuple[str, ...] | None = attrs.field(validator=attrs.validators.optional(_str_tuple))


DialerEvent = ProtocolAgreed | NegotiationFailed | ProtocolsListed


# --------------------------------------------------------------------------------------------------
# Message codec


def _check_protocol_id(protocol: object) -> str:
    """Validate a protocol id that we are about to send or accept.

    Raises:
        LocalProtocolError: not a str, no leading ``/``, the multistream header, a newline
            inside, not encodable as UTF-8, or too long for one message.
    """
    if not isinstance(protocol, str):
        raise LocalProtocolError(
            f"protocol ids are str, not {type(protocol).__name__}", hint="invalid protocol id"
        )
    if not protocol.startswith("/"):
        raise LocalProtocolError(
            f"protocol id {protocol!r} must start with '/'", hint="invalid protocol id"
        )
    if protocol == MULTISTREAM_ID:
        raise LocalProtocolError(
            f"{MULTISTREAM_ID} is the negotiation header, not a protocol to negotiate",
            hint="invalid protocol id",
        )
    encode_message(protocol)  # newline, UTF-8 and size checks
    return protocol


def encode_message(text: str) -> bytes:
    """Encode one multistream message: ``uvarint(len(utf8) + 1) || utf8 || "\\n"``.

    Raises:
        LocalProtocolError: ``text`` contains a newline, is not encodable as UTF-8 (lone
            surrogates), or the message would exceed :data:`MAX_MESSAGE_SIZE`.
    """
    if "\n" in text:
        raise LocalProtocolError(f"message {text!r} contains a newline", hint="newline in message")
    try:
        body = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(
            f"message {text!r} is not encodable as UTF-8", hint="invalid utf-8"
        ) from exc
    if len(body) + 1 > MAX_MESSAGE_SIZE:
        raise LocalProtocolError(
            f"message of {len(body) + 1} bytes exceeds {MAX_MESSAGE_SIZE}", hint="message too long"
        )
    return encode_uvarint(len(body) + 1) + body + b"\n"


def _read_frame(data: _Buffer, offset: int = 0) -> tuple[bytes, int] | None:
    """Read one message's raw body (without its newline) from ``data`` at ``offset``.

    Returns ``(body, new_offset)``, or ``None`` if ``data`` ends before the message does.

    Raises:
        DecodeError: malformed length prefix, a length above :data:`MAX_MESSAGE_SIZE`, or no
            newline at the end.
    """
    prefix = try_decode_uvarint(data, offset)
    if prefix is None:
        if len(data) - offset >= _MAX_PREFIX_BYTES:
            raise DecodeError(
                f"message length prefix exceeds {MAX_MESSAGE_SIZE}", hint="message too long"
            )
        return None
    length, start = prefix
    if length > MAX_MESSAGE_SIZE:
        raise DecodeError(
            f"message of {length} bytes exceeds {MAX_MESSAGE_SIZE}", hint="message too long"
        )
    end = start + length
    if len(data) < end:
        return None
    if length == 0 or data[end - 1] != _NEWLINE:
        raise DecodeError("message does not end with a newline", hint="missing newline")
    return bytes(data[start : end - 1]), end


def _decode_text(body: bytes) -> str:
    """Decode a message body as text.

    Raises:
        DecodeError: invalid UTF-8, or a newline inside the body.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(
            f"message is not valid UTF-8: {body[:64]!r}", hint="invalid utf-8"
        ) from exc
    if "\n" in text:
        raise DecodeError(f"newline inside message {text[:64]!r}", hint="newline in message")
    return text


def decode_message(data: bytes | bytearray | memoryview) -> str:
    """Decode exactly one multistream message; return its text without the newline.

    Raises:
        DecodeError: truncated, oversized, no trailing newline, invalid UTF-8, a newline inside
            the text, or bytes left over after the message.
    """
    frame = _read_frame(data)
    if frame is None:
        raise DecodeError("truncated multistream message", hint="truncated message")
    body, end = frame
    if end != len(data):
        raise DecodeError(
            f"{len(data) - end} bytes after the multistream message", hint="trailing bytes"
        )
    return _decode_text(body)


def encode_ls_response(protocols: Iterable[str]) -> bytes:
    """Encode the answer to ``ls``: one message whose body is ``encode_message(p)`` per protocol.

    The outer message's own newline follows the last entry, so the answer ends with ``0a 0a``; an
    empty list encodes as ``01 0a``.

    Raises:
        LocalProtocolError: an entry is not a valid protocol id, or the answer would exceed
            :data:`MAX_MESSAGE_SIZE`.
    """
    body = b"".join(encode_message(_check_protocol_id(p)) for p in protocols)
    if len(body) + 1 > MAX_MESSAGE_SIZE:
        raise LocalProtocolError(
            f"ls answer of {len(body) + 1} bytes exceeds {MAX_MESSAGE_SIZE}",
            hint="message too long",
        )
    return encode_uvarint(len(body) + 1) + body + b"\n"


def _decode_ls_body(body: bytes) -> tuple[str, ...]:
    """Split the body of an ``ls`` answer (outer newline already removed) into protocol ids.

    Raises:
        DecodeError: an entry is truncated, has no newline, is not text, or lacks the leading
            ``/``.
    """
    protocols: list[str] = []
    pos = 0
    while pos < len(body):
        try:
            length, start = decode_uvarint(body, pos)
        except DecodeError as exc:
            raise DecodeError(
                f"bad length in ls answer: {exc}", hint="malformed ls answer"
            ) from exc
        end = start + length
        if length == 0 or end > len(body) or body[end - 1] != _NEWLINE:
            raise DecodeError("malformed entry in ls answer", hint="malformed ls answer")
        protocol = _decode_text(body[start : end - 1])
        if not protocol.startswith("/"):
            raise DecodeError(
                f"ls answer lists {protocol[:64]!r}, not a protocol id", hint="malformed ls answer"
            )
        protocols.append(protocol)
        pos = end
    return tuple(protocols)


def decode_ls_response(data: bytes | bytearray | memoryview) -> tuple[str, ...]:
    """Decode exactly one ``ls`` answer (the inverse of :func:`encode_ls_response`).

    Raises:
        DecodeError: the outer message or an entry is malformed, or bytes are left over.
    """
    frame = _read_frame(data)
    if frame is None:
        raise DecodeError("truncated ls answer", hint="truncated message")
    body, end = frame
    if end != len(data):
        raise DecodeError(f"{len(data) - end} bytes after the ls answer", hint="trailing bytes")
    return _decode_ls_body(body)


# --------------------------------------------------------------------------------------------------
# The two roles


class _Negotiator(abc.ABC):
    """Buffers and the life cycle shared by both roles; subclasses handle one message at a time."""

    def __init__(self) -> None:
        self._state = State.NEGOTIATING
        self._inbound = bytearray()
        self._outbound = bytearray()
        self._header_received = False
        self._agreed: str | None = None
        self._error: RemoteProtocolError | None = None

    @property
    def state(self) -> State:
        """Current :class:`State`."""
        return self._state

    @property
    def agreed_protocol(self) -> str | None:
        """The agreed protocol once :class:`ProtocolAgreed` was returned, else ``None``."""
        return self._agreed

    def data_to_send(self) -> bytes:
        """Return, and forget, the bytes to write to the peer (possibly empty)."""
        out = bytes(self._outbound)
        self._outbound.clear()
        return out

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes received from the peer; ``next_event()`` parses them.

        Empty ``data`` is a no-op: end of stream is for the caller to handle.

        Raises:
            LocalProtocolError: negotiation is over (the bytes belong to the agreed protocol, or
                there is nothing left to negotiate).
        """
        self._check_negotiating("receive_data")
        self._inbound += data

    def trailing_data(self) -> bytes:
        """Bytes received after the agreed protocol's echo or proposal, for the agreed protocol.

        Raises:
            LocalProtocolError: no protocol has been agreed.
        """
        if self._state is not State.AGREED:
            raise LocalProtocolError(
                f"no trailing data in state {self._state.name}", hint="not agreed"
            )
        return bytes(self._inbound)

    def _check_negotiating(self, what: str) -> None:
        if self._state is State.NEGOTIATING:
            return
        detail = f": {self._error}" if self._error is not None else ""
        raise LocalProtocolError(
            f"{what}() called in state {self._state.name}{detail}", hint="negotiation over"
        )

    def _next_event(self) -> ProtocolAgreed | NegotiationFailed | ProtocolsListed | NeedData:
        self._check_negotiating("next_event")
        try:
            while True:
                frame = _read_frame(self._inbound)
                if frame is None:
                    return NEED_DATA
                body, end = frame
                del self._inbound[:end]
                if not self._header_received:
                    self._receive_header(body)
                    continue
                event = self._handle(body)
                if event is not None:
                    return event
        except RemoteProtocolError as exc:
            self._state = State.ERROR
            self._error = exc
            raise

    def _receive_header(self, body: bytes) -> None:
        text = _decode_text(body)
        if text != MULTISTREAM_ID:
            raise RemoteProtocolError(
                f"expected header {MULTISTREAM_ID!r}, got {text[:64]!r}", hint="wrong header"
            )
        self._header_received = True
        self._on_header()

    def _agree(self, protocol: str) -> ProtocolAgreed:
        self._state = State.AGREED
        self._agreed = protocol
        return ProtocolAgreed(protocol)

    def _on_header(self) -> None:  # noqa: B027 (an optional hook, empty by default)
        """Called once the peer's header has been read."""

    @abc.abstractmethod
    def _handle(self, body: bytes) -> ProtocolAgreed | NegotiationFailed | ProtocolsListed | None:
        """Handle one message after the header; return an event or ``None`` to keep reading."""


class Dialer(_Negotiator):
    """The initiator's side: proposes ``protocols`` in order until the listener accepts one.

    ``request_list=True`` also sends ``ls`` before the first proposal; the answer arrives as
    :class:`ProtocolsListed` before the outcome of the proposals.

    Raises:
        LocalProtocolError: ``protocols`` is empty or holds an invalid protocol id (see
            :func:`encode_message`; ids start with ``/`` and are not the multistream header).
    """

    def __init__(self, protocols: Sequence[str], *, request_list: bool = False) -> None:
        super().__init__()
        if isinstance(protocols, str):
            raise LocalProtocolError(
                "protocols is a sequence of protocol ids, not one str", hint="invalid protocol list"
            )
        self._protocols = tuple(_check_protocol_id(p) for p in protocols)
        if not self._protocols:
            raise LocalProtocolError("no protocol to propose", hint="empty protocol list")
        self._next_index = 1
        # Answers still owed by the listener, in order: LS and/or the one pending proposal.
        self._pending: deque[str] = deque()
        self._outbound += encode_message(MULTISTREAM_ID)
        if request_list:
            self._outbound += encode_message(LS)
            self._pending.append(LS)
        self._propose(self._protocols[0])

    @property
    def protocols(self) -> tuple[str, ...]:
        """The protocols this dialer proposes, in order."""
        return self._protocols

    def next_event(self) -> DialerEvent | NeedData:
        """Parse buffered bytes and return the next event, or :data:`NEED_DATA`.

        Raises:
            RemoteProtocolError: the listener broke the protocol (wrong header, an answer that is
                neither ``na`` nor the echo of our proposal); :class:`~p2pchat.errors.DecodeError`
                for malformed bytes. The dialer is then in :attr:`State.ERROR`.
            LocalProtocolError: negotiation is already over.
        """
        return self._next_event()

    def _propose(self, protocol: str) -> None:
        self._outbound += encode_message(protocol)
        self._pending.append(protocol)

    def _handle(self, body: bytes) -> DialerEvent | None:
        expected = self._pending.popleft()
        if expected == LS:
            if body == NA.encode():
                return ProtocolsListed(None)
            return ProtocolsListed(_decode_ls_body(body))
        answer = _decode_text(body)
        if answer == expected:
            return self._agree(expected)
        if answer != NA:
            raise RemoteProtocolError(
                f"listener answered {answer[:64]!r} to proposal {expected!r}",
                hint="unexpected answer",
            )
        if self._next_index == len(self._protocols):
            self._state = State.FAILED
            return NegotiationFailed(self._protocols)
        self._propose(self._protocols[self._next_index])
        self._next_index += 1
        return None


class Listener(_Negotiator):
    """The responder's side: accepts the first proposal that is in ``supported``.

    ``ls`` is answered with ``supported`` in iteration order (duplicates dropped), or with ``na`` if
    that list does not fit in one message. At most ``max_proposals`` requests (proposals and ``ls``
    together) are answered; one more fails the negotiation.

    Raises:
        LocalProtocolError: ``supported`` holds an invalid protocol id, or ``max_proposals`` < 1.
    """

    def __init__(self, supported: Collection[str], *, max_proposals: int = MAX_PROPOSALS) -> None:
        super().__init__()
        if isinstance(supported, str):
            raise LocalProtocolError(
                "supported is a collection of protocol ids, not one str",
                hint="invalid protocol list",
            )
        if (
            isinstance(max_proposals, bool)
            or not isinstance(max_proposals, int)
            or max_proposals < 1
        ):
            raise LocalProtocolError(
                f"max_proposals must be a positive int, not {max_proposals!r}", hint="bad limit"
            )
        self._supported = tuple(dict.fromkeys(_check_protocol_id(p) for p in supported))
        self._supported_set = frozenset(self._supported)
        self._max_proposals = max_proposals
        self._requests = 0
        self._rejected: list[str] = []
        try:
            self._ls_answer = encode_ls_response(self._supported)
        except LocalProtocolError:
            self._ls_answer = encode_message(NA)

    @property
    def supported(self) -> tuple[str, ...]:
        """The protocols this listener accepts, in the order ``ls`` lists them."""
        return self._supported

    @property
    def rejected(self) -> tuple[str, ...]:
        """The proposals answered with ``na`` so far, in order (for logs)."""
        return tuple(self._rejected)

    def next_event(self) -> ProtocolAgreed | NeedData:
        """Parse buffered bytes, queue the answers, and return the next event or :data:`NEED_DATA`.

        Unsupported proposals and ``ls`` are answered without an event.

        Raises:
            RemoteProtocolError: the dialer broke the protocol (wrong header, ``na``, a repeated
                header, a proposal without a leading ``/``, more than ``max_proposals`` requests);
                :class:`~p2pchat.errors.DecodeError` for malformed bytes. The listener is then in
                :attr:`State.ERROR`.
            LocalProtocolError: negotiation is already over.
        """
        event = self._next_event()
        assert not isinstance(
            event, NegotiationFailed | ProtocolsListed
        )  # a listener emits neither
        return event

    def _on_header(self) -> None:
        self._outbound += encode_message(MULTISTREAM_ID)

    def _handle(self, body: bytes) -> ProtocolAgreed | None:
        request = _decode_text(body)
        self._requests += 1
        if self._requests > self._max_proposals:
            raise RemoteProtocolError(
                f"dialer sent more than {self._max_proposals} requests", hint="too many proposals"
            )
        if request == LS:
            self._outbound += self._ls_answer
            return None
        if request in (NA, MULTISTREAM_ID) or not request.startswith("/"):
            raise RemoteProtocolError(
                f"dialer sent {request[:64]!r}, which is not a protocol id or ls",
                hint="invalid protocol id",
            )
        if request in self._supported_set:
            self._outbound += encode_message(request)
            return self._agree(request)
        self._rejected.append(request)
        self._outbound += encode_message(NA)
        return None
