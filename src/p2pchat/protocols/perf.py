"""libp2p perf (``/perf/1.0.0``), sans-IO.

Normative text: ``specs/perf.md`` (our reading of libp2p/specs ``perf/perf.md``).

Theory of operation
-------------------

One exchange per stream, no framing beyond an 8-byte header. The client writes the number of
bytes it wants back as a big-endian uint64, then any number of upload bytes, then closes its
write side. The server reads the header, reads (and discards) everything up to that end of
stream, and only then writes the requested number of bytes and closes.

:class:`PerfResponder` is the server's parser: it buffers at most the 8 header bytes and only
*counts* what follows, so draining gigabytes costs no memory. Its events are
:class:`RequestReceived` (the header is complete) and then :class:`UploadEnded` (end of stream
after the header). End of stream inside the header is a
:class:`~p2pchat.errors.RemoteProtocolError`.

:class:`PerfRequester` is the client's side: it makes the header and counts what comes back,
failing on a byte beyond the request and on an end of stream short of it.

Limits (how much a server agrees to send or receive, for how long) are policy, not protocol:
the adapter checks them against :attr:`PerfResponder.download_bytes` and
:attr:`PerfResponder.upload_bytes`. The cores have no clock.
"""

from __future__ import annotations

import struct
from typing import Final

import attrs

from ..errors import DecodeError, LocalProtocolError, RemoteProtocolError
from ._need_data import NEED_DATA, NeedData

__all__ = [
    "HEADER_SIZE",
    "MAX_REQUEST",
    "NEED_DATA",
    "PROTOCOL_ID",
    "NeedData",
    "PerfRequester",
    "PerfResponder",
    "RequestReceived",
    "UploadEnded",
    "decode_request",
    "encode_request",
]

# perf.md "Protocol".
PROTOCOL_ID: Final = "/perf/1.0.0"
# perf.md "Protocol", client step 2: "a single big-endian uint64 number".
_HEADER: Final = struct.Struct(">Q")
HEADER_SIZE: Final = _HEADER.size
# perf.md "Protocol", client step 2: "Zero is a valid number, so is the max uint64 value."
MAX_REQUEST: Final = 2**64 - 1

_Buffer = bytes | bytearray | memoryview


def encode_request(download_bytes: int) -> bytes:
    """The 8-byte header asking the server for ``download_bytes``.

    Raises:
        ValueError: ``download_bytes`` is not in ``0 .. 2**64 - 1``.
    """
    if not 0 <= download_bytes <= MAX_REQUEST:
        raise ValueError(f"perf request must be in 0..{MAX_REQUEST}, got {download_bytes}")
    return _HEADER.pack(download_bytes)


def decode_request(data: _Buffer) -> int:
    """The number of bytes an 8-byte header asks for.

    Raises:
        DecodeError: ``data`` is not exactly 8 bytes.
    """
    if len(data) != HEADER_SIZE:
        raise DecodeError(
            f"perf request is {len(data)} bytes, not {HEADER_SIZE}", hint="bad perf request"
        )
    (value,) = _HEADER.unpack(bytes(data))
    return int(value)


@attrs.frozen
class RequestReceived:
    """The client asked for ``download_bytes`` (the header is complete)."""

    download_bytes: int


@attrs.frozen
class UploadEnded:
    """The client closed its write side after ``upload_bytes`` bytes following the header."""

    upload_bytes: int


class PerfResponder:
    """The server side: parses the header, counts the upload, notes its end."""

    def __init__(self) -> None:
        self._header = bytearray()
        self._download: int | None = None
        self._reported_request = False
        self._upload = 0
        self._eof = False
        self._reported_end = False

    @property
    def download_bytes(self) -> int | None:
        """What the client asked for, once the header is complete."""
        return self._download

    @property
    def upload_bytes(self) -> int:
        """Bytes received after the header so far."""
        return self._upload

    def receive_data(self, data: _Buffer) -> None:
        """Take bytes read from the stream: the header's are kept, the rest only counted.

        Raises:
            LocalProtocolError: called after :meth:`receive_eof`.
        """
        if self._eof:
            raise LocalProtocolError("data after end of stream", hint="data after eof")
        if self._download is None:
            take = HEADER_SIZE - len(self._header)
            self._header += data[:take]
            if len(self._header) == HEADER_SIZE:
                self._download = decode_request(self._header)
            self._upload += max(0, len(data) - take)
        else:
            self._upload += len(data)

    def receive_eof(self) -> None:
        """Note that the client closed its write side."""
        self._eof = True

    def next_event(self) -> RequestReceived | UploadEnded | NeedData:
        """:class:`RequestReceived` once, then :class:`UploadEnded` once, else NEED_DATA.

        Raises:
            RemoteProtocolError: the stream ended before the 8-byte header was complete
                (hint ``perf request truncated``).
        """
        if self._download is None:
            if self._eof:
                raise RemoteProtocolError(
                    f"stream ended after {len(self._header)} of {HEADER_SIZE} request bytes",
                    hint="perf request truncated",
                )
            return NEED_DATA
        if not self._reported_request:
            self._reported_request = True
            return RequestReceived(self._download)
        if self._eof and not self._reported_end:
            self._reported_end = True
            return UploadEnded(self._upload)
        return NEED_DATA


class PerfRequester:
    """The client side of one exchange: the header to send, then the download's count.

    Raises:
        ValueError: ``download_bytes`` is not in ``0 .. 2**64 - 1``.
    """

    def __init__(self, download_bytes: int) -> None:
        #: The 8-byte header to write first.
        self.request = encode_request(download_bytes)
        self.download_bytes = download_bytes
        self._received = 0
        self._eof = False

    @property
    def received(self) -> int:
        """Bytes of the response received so far."""
        return self._received

    @property
    def complete(self) -> bool:
        """True once the server sent every requested byte and closed."""
        return self._eof and self._received == self.download_bytes

    def receive_data(self, data: _Buffer) -> None:
        """Count response bytes.

        Raises:
            RemoteProtocolError: more bytes than requested (hint ``perf excess data``).
            LocalProtocolError: called after :meth:`receive_eof`.
        """
        if self._eof:
            raise LocalProtocolError("data after end of stream", hint="data after eof")
        self._received += len(data)
        if self._received > self.download_bytes:
            raise RemoteProtocolError(
                f"the server sent {self._received} bytes or more, {self.download_bytes} asked",
                hint="perf excess data",
            )

    def receive_eof(self) -> None:
        """Note the server's end of stream.

        Raises:
            RemoteProtocolError: fewer bytes than requested came (hint ``perf short download``).
        """
        self._eof = True
        if self._received != self.download_bytes:
            raise RemoteProtocolError(
                f"the server sent {self._received} of {self.download_bytes} bytes and closed",
                hint="perf short download",
            )
