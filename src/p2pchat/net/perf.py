"""perf (``/perf/1.0.0``) served and run by a Host: throughput and latency of a connection.

Normative text: ``specs/perf.md``. Sans-IO core: :mod:`p2pchat.protocols.perf`.

Theory of operation
-------------------
**Server.** :func:`install_perf` registers the handler; nothing serves perf unless it is called
(perf.md "Security Considerations": a client makes the server do real work, so perf SHOULD NOT
be on by default). Each stream runs under ``max_duration_s``: read the 8-byte request, refuse it
at once if it asks for more than ``max_download_bytes``, drain the upload to end of stream
(refusing as soon as it passes ``max_upload_bytes``), then write the requested bytes and close.
At most ``max_streams`` perf streams run at once on a host; more are refused. The protocol has
no error message, so a **refusal is a reset stream** (RST) plus a log line on the server
saying why; the client reports a reset as "the server refused the request, most likely a limit".

**Client.** :func:`run_perf` does one exchange and times its phases on Trio's clock:

* ``connect_s``: ``Host.connect`` (dial + upgrade; about zero when a connection is reused);
* ``negotiate_s``: open a stream and agree ``/perf/1.0.0`` (one multistream round trip);
* ``upload_s``: from the first write of the request to the first byte of the response, or to
  the server's end of stream when nothing is downloaded. The server answers only after it has
  read the whole upload, so this covers the upload's delivery plus one trip back: the **time
  to first byte**;
* ``download_s``: from that first byte to the server's end of stream;
* ``total_s``: all of it, which is the ``timeSeconds`` of the libp2p perf runner (connection
  establishment, upload and download).

:func:`measure` repeats the exchange; the ``format_*``/``*_json`` helpers print results as text
or as JSON lines in the runner's shape (``{"type": "final", "timeSeconds", "uploadBytes",
"downloadBytes"}`` plus our phase times).
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs
import trio

from ..errors import P2PChatError, RemoteProtocolError
from ..identity import PeerID
from ..multiaddr import Multiaddr
from ..protocols import perf as core
from .muxer import MAX_FRAME_PAYLOAD, MuxedStream

if TYPE_CHECKING:
    from .host import Host

logger = logging.getLogger(__name__)

PROTOCOL_ID: Final = core.PROTOCOL_ID
KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB
#: Bytes per write when uploading or serving a download (perf.md does not fix it; the runner's
#: clients write 64 KiB): four whole 64 KiB yamux frames, fewer stream calls per byte.
WRITE_SIZE: Final = 4 * MAX_FRAME_PAYLOAD
_ZEROS: Final = bytes(WRITE_SIZE)
DEFAULT_MAX_DOWNLOAD: Final = 10 * GIB
DEFAULT_MAX_UPLOAD: Final = 10 * GIB
DEFAULT_MAX_DURATION: Final = 120.0
DEFAULT_MAX_STREAMS: Final = 8
#: How often ``progress`` is called, in seconds (the runner reports every second).
PROGRESS_INTERVAL: Final = 1.0


class PerfError(P2PChatError):
    """A perf exchange failed: the connection was lost, or the server broke the protocol."""


class PerfRefusedError(PerfError):
    """The server reset the perf stream: it refused the request, most likely a limit."""


def _non_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


@attrs.frozen
class PerfLimits:
    """What a perf server agrees to do for one request; beyond, it resets the stream."""

    max_download_bytes: int = attrs.field(default=DEFAULT_MAX_DOWNLOAD, validator=_non_negative)
    max_upload_bytes: int = attrs.field(default=DEFAULT_MAX_UPLOAD, validator=_non_negative)
    #: For the whole exchange, from the stream's start to the last byte sent.
    max_duration_s: float = attrs.field(default=DEFAULT_MAX_DURATION, validator=_positive)
    #: Perf streams served at once by one host, all peers together.
    max_streams: int = attrs.field(default=DEFAULT_MAX_STREAMS, validator=_positive)


@attrs.frozen
class PerfResult:
    """One perf exchange as the client saw it (every time in seconds, see the module doc)."""

    upload_bytes: int
    download_bytes: int
    connect_s: float
    #: True when the exchange ran on a connection that was already open (``connect_s`` ~ 0).
    reused_connection: bool
    negotiate_s: float
    #: First write to the first response byte (or the server's end of stream): time to first byte.
    upload_s: float
    download_s: float
    total_s: float

    @property
    def transfer_s(self) -> float:
        """Upload plus download: the first write to the server's end of stream."""
        return self.upload_s + self.download_s

    @property
    def upload_bytes_per_s(self) -> float | None:
        """Upload throughput; None when nothing was uploaded."""
        return _rate(self.upload_bytes, self.upload_s)

    @property
    def download_bytes_per_s(self) -> float | None:
        """Download throughput, first byte to end of stream; None when nothing was downloaded."""
        return _rate(self.download_bytes, self.download_s)


@attrs.frozen
class PerfProgress:
    """Bytes moved in the last ``time_s`` seconds of an exchange still running."""

    phase: Literal["upload", "download"]
    time_s: float
    upload_bytes: int
    download_bytes: int


ProgressCallback = Callable[[PerfProgress], None]


def _rate(count: int, seconds: float) -> float | None:
    if count == 0:
        return None
    return count / seconds if seconds > 0 else float("inf")


# -- server ------------------------------------------------------------------------------------


async def serve_perf(stream: MuxedStream, limits: PerfLimits | None = None) -> None:
    """Serve one perf exchange on ``stream``; refuse (log why, then reset) beyond ``limits``.

    On success the requested bytes and the end of stream have been sent; the caller closes.

    Raises:
        trio.BrokenResourceError: the client went away (its connection or a reset).
    """
    limits = limits if limits is not None else PerfLimits()
    responder = core.PerfResponder()
    start = trio.current_time()
    refusal: str | None = None
    with trio.move_on_after(limits.max_duration_s) as deadline:
        refusal = await _serve(stream, responder, limits)
    if deadline.cancelled_caught:
        refusal = f"still running after the duration limit of {limits.max_duration_s:g} s"
    if refusal is not None:
        logger.warning(
            "perf request from %s refused: %s; resetting the stream", stream.remote_peer, refusal
        )
        await stream.reset()
        return
    logger.info(
        "perf for %s: %d bytes received, %d bytes sent in %.3f s",
        stream.remote_peer,
        responder.upload_bytes,
        responder.download_bytes or 0,
        trio.current_time() - start,
    )


async def _serve(
    stream: MuxedStream, responder: core.PerfResponder, limits: PerfLimits
) -> str | None:
    """The exchange; returns why it was refused, or None once everything was sent."""
    while True:
        try:
            event = responder.next_event()
        except RemoteProtocolError as exc:
            return f"malformed request ({exc.hint}): {exc}"
        if event is core.NEED_DATA:
            data = await stream.receive_some()
            if data:
                responder.receive_data(data)
                if responder.upload_bytes > limits.max_upload_bytes:
                    return (
                        f"upload passed the upload limit of {limits.max_upload_bytes} bytes"
                        f" ({responder.upload_bytes} received)"
                    )
            else:
                responder.receive_eof()
        elif isinstance(event, core.RequestReceived):
            if event.download_bytes > limits.max_download_bytes:
                return (
                    f"asked for {event.download_bytes} bytes, above the download limit of"
                    f" {limits.max_download_bytes} bytes"
                )
        else:  # UploadEnded: perf.md, server step 3 runs only after step 2 has ended
            break
    remaining = responder.download_bytes or 0
    while remaining >= WRITE_SIZE:
        await stream.send_all(_ZEROS)
        remaining -= WRITE_SIZE
    if remaining:
        await stream.send_all(_ZEROS[:remaining])
    await stream.send_eof()
    return None


class _PerfHandler:
    """The host's stream handler: counts the streams in flight against ``max_streams``."""

    def __init__(self, limits: PerfLimits) -> None:
        self.limits = limits
        self.active = 0

    async def __call__(self, stream: MuxedStream) -> None:
        if self.active >= self.limits.max_streams:
            logger.warning(
                "perf request from %s refused: %d perf streams already running (limit %d);"
                " resetting the stream",
                stream.remote_peer,
                self.active,
                self.limits.max_streams,
            )
            await stream.reset()
            return
        self.active += 1
        try:
            await serve_perf(stream, self.limits)
        finally:
            self.active -= 1


def install_perf(host: Host, limits: PerfLimits | None = None) -> None:
    """Serve ``/perf/1.0.0`` on ``host`` within ``limits`` (defaults: :class:`PerfLimits`).

    Perf is off unless this is called: it lets any peer make the host send and receive up to
    the limits, so enable it only where that is wanted.
    """
    host.set_stream_handler(
        PROTOCOL_ID, _PerfHandler(limits if limits is not None else PerfLimits())
    )


def uninstall_perf(host: Host) -> None:
    """Stop serving perf (no-op if not served)."""
    host.remove_stream_handler(PROTOCOL_ID)


# -- client ------------------------------------------------------------------------------------


def _peer_of(target: PeerID | Multiaddr) -> PeerID:
    if isinstance(target, PeerID):
        return target
    peer = target.peer_id
    if peer is None:
        raise ValueError(f"address needs a /p2p/<peer id> suffix: {target}")
    return peer


class _Progress:
    """Calls the progress callback at most once per interval (intermediary reports)."""

    def __init__(self, callback: ProgressCallback | None, interval: float, now: float) -> None:
        self.callback = callback
        self.interval = interval
        self.last = now
        self.upload = 0
        self.download = 0

    def add(self, phase: Literal["upload", "download"], count: int) -> None:
        if self.callback is None:
            return
        if phase == "upload":
            self.upload += count
        else:
            self.download += count
        now = trio.current_time()
        if now - self.last >= self.interval:
            self.callback(PerfProgress(phase, now - self.last, self.upload, self.download))
            self.last = now
            self.upload = self.download = 0


async def run_perf(
    host: Host,
    target: PeerID | Multiaddr,
    upload_bytes: int,
    download_bytes: int,
    *,
    progress: ProgressCallback | None = None,
    progress_interval: float = PROGRESS_INTERVAL,
) -> PerfResult:
    """One perf exchange with ``target``: upload ``upload_bytes``, download ``download_bytes``.

    Reuses a live connection to the peer, else dials. ``progress``, if given, is called with
    the bytes moved since its previous call, once ``progress_interval`` seconds have passed
    (the runner's intermediary reports); what the last interval moved is only in the result.
    Callers bound the time: the exchange has no timeout (dialing and negotiation use the
    host's).

    Raises:
        ValueError: a size is negative or beyond uint64, or a multiaddr without ``/p2p``.
        DialError: no connection could be made.
        StreamOpenError: the peer does not serve perf (or the stream could not be opened).
        PerfRefusedError: the server reset the stream (it refused: most likely a limit).
        PerfError: the connection was lost, or the server sent too many or too few bytes.
    """
    if upload_bytes < 0:
        raise ValueError(f"upload_bytes must be >= 0, got {upload_bytes}")
    requester = core.PerfRequester(download_bytes)
    peer = _peer_of(target)
    start = trio.current_time()
    reused = host.connection(peer) is not None
    await host.connect(target)
    connected = trio.current_time()
    stream = await host.new_stream(peer, [PROTOCOL_ID])
    opened = trio.current_time()
    report = _Progress(progress, progress_interval, opened)
    sent = 0
    first_byte: float | None = None
    finished = False
    try:
        await stream.send_all(requester.request)
        while sent < upload_bytes:
            chunk = _ZEROS if upload_bytes - sent >= WRITE_SIZE else _ZEROS[: upload_bytes - sent]
            await stream.send_all(chunk)
            sent += len(chunk)
            report.add("upload", len(chunk))
        await stream.send_eof()
        while data := await stream.receive_some():
            if first_byte is None:
                first_byte = trio.current_time()
            requester.receive_data(data)
            report.add("download", len(data))
        end = trio.current_time()
        requester.receive_eof()
        finished = True
    except trio.BrokenResourceError as exc:
        raise _broken(stream, exc, upload_bytes, sent, requester) from exc
    except RemoteProtocolError as exc:
        raise PerfError(f"perf with {peer}: {exc}") from exc
    finally:
        with trio.CancelScope(shield=True):
            if finished:
                await stream.aclose()
            else:
                await stream.reset()
    first_byte = end if first_byte is None else first_byte
    return PerfResult(
        upload_bytes=upload_bytes,
        download_bytes=download_bytes,
        connect_s=connected - start,
        reused_connection=reused,
        negotiate_s=opened - connected,
        upload_s=first_byte - opened,
        download_s=end - first_byte,
        total_s=end - start,
    )


def _broken(
    stream: MuxedStream,
    exc: trio.BrokenResourceError,
    upload_bytes: int,
    sent: int,
    requester: core.PerfRequester,
) -> PerfError:
    where = (
        f"after {sent} of {upload_bytes} bytes uploaded and {requester.received} of"
        f" {requester.download_bytes} downloaded"
    )
    conn = stream.connection
    if conn.is_closed:
        return PerfError(f"perf with {stream.remote_peer}: {exc} ({where})")
    return PerfRefusedError(
        f"the server refused: it reset the perf stream {where}, most likely because the request"
        " passed one of its limits (download size, upload size, duration or concurrent"
        " streams; the server's log says which)"
    )


async def measure(
    host: Host,
    target: PeerID | Multiaddr,
    *,
    upload: int,
    download: int,
    iterations: int = 1,
    fresh_connection: bool = False,
    progress: ProgressCallback | None = None,
) -> list[PerfResult]:
    """``iterations`` perf exchanges in a row with ``target``, one result each.

    With ``fresh_connection`` every exchange dials a new connection (any live one to the peer
    is closed first), as the libp2p perf runner does with a new client process per run; else
    the first exchange's connection is reused.

    Raises:
        ValueError: ``iterations`` < 1, or as :func:`run_perf`.
        DialError, StreamOpenError, PerfRefusedError, PerfError: as :func:`run_perf`; the
            results so far are lost.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    peer = _peer_of(target)
    results: list[PerfResult] = []
    for _ in range(iterations):
        if fresh_connection:
            live = host.connection(peer)
            if live is not None:
                await live.aclose()
        results.append(await run_perf(host, target, upload, download, progress=progress))
    return results


# -- output ------------------------------------------------------------------------------------


def _bits(rate: float | None) -> float | None:
    return None if rate is None else rate * 8


def result_json(result: PerfResult) -> dict[str, Any]:
    """The runner's final record (``type``, ``timeSeconds``, ``uploadBytes``,
    ``downloadBytes``) plus our phase times and throughputs (bit/s, null without bytes)."""
    return {
        "type": "final",
        "timeSeconds": result.total_s,
        "uploadBytes": result.upload_bytes,
        "downloadBytes": result.download_bytes,
        "connectSeconds": result.connect_s,
        "reusedConnection": result.reused_connection,
        "negotiateSeconds": result.negotiate_s,
        "uploadSeconds": result.upload_s,
        "downloadSeconds": result.download_s,
        "uploadBitsPerSecond": _bits(result.upload_bytes_per_s),
        "downloadBitsPerSecond": _bits(result.download_bytes_per_s),
    }


def progress_json(progress: PerfProgress) -> dict[str, Any]:
    """The runner's intermediary record: bytes moved in the last ``timeSeconds``."""
    return {
        "type": "intermediary",
        "timeSeconds": progress.time_s,
        "uploadBytes": progress.upload_bytes,
        "downloadBytes": progress.download_bytes,
    }


def _size(count: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _speed(rate: float | None) -> str:
    return "" if rate is None else f" ({rate / MIB:.1f} MiB/s)"


def format_result(result: PerfResult) -> str:
    """One line for people: sizes, phase times and throughputs."""
    connect = (
        "reused connection"
        if result.reused_connection
        else f"connect {result.connect_s * 1e3:.1f} ms"
    )
    return (
        f"upload {_size(result.upload_bytes)} in {result.upload_s:.3f} s"
        f"{_speed(result.upload_bytes_per_s)}, download {_size(result.download_bytes)} in"
        f" {result.download_s:.3f} s{_speed(result.download_bytes_per_s)}; {connect},"
        f" negotiate {result.negotiate_s * 1e3:.1f} ms, total {result.total_s:.3f} s"
    )


@attrs.frozen
class PerfSummary:
    """Medians over several results (throughputs are None when those bytes were zero)."""

    iterations: int
    upload_bytes: int
    download_bytes: int
    total_s: float
    connect_s: float
    upload_s: float
    download_s: float
    upload_bytes_per_s: float | None
    download_bytes_per_s: float | None


def summarize(results: Sequence[PerfResult]) -> PerfSummary:
    """The medians of ``results``.

    Raises:
        ValueError: ``results`` is empty.
    """
    if not results:
        raise ValueError("no perf results to summarize")

    def median_rate(rates: list[float | None]) -> float | None:
        known = [rate for rate in rates if rate is not None]
        return statistics.median(known) if known else None

    return PerfSummary(
        iterations=len(results),
        upload_bytes=results[0].upload_bytes,
        download_bytes=results[0].download_bytes,
        total_s=statistics.median(r.total_s for r in results),
        connect_s=statistics.median(r.connect_s for r in results),
        upload_s=statistics.median(r.upload_s for r in results),
        download_s=statistics.median(r.download_s for r in results),
        upload_bytes_per_s=median_rate([r.upload_bytes_per_s for r in results]),
        download_bytes_per_s=median_rate([r.download_bytes_per_s for r in results]),
    )


def summary_json(summary: PerfSummary) -> dict[str, Any]:
    """A ``{"type": "summary", ...}`` record of medians, in the runner's naming style."""
    return {
        "type": "summary",
        "iterations": summary.iterations,
        "uploadBytes": summary.upload_bytes,
        "downloadBytes": summary.download_bytes,
        "medianTimeSeconds": summary.total_s,
        "medianConnectSeconds": summary.connect_s,
        "medianUploadSeconds": summary.upload_s,
        "medianDownloadSeconds": summary.download_s,
        "medianUploadBitsPerSecond": _bits(summary.upload_bytes_per_s),
        "medianDownloadBitsPerSecond": _bits(summary.download_bytes_per_s),
    }


def format_summary(summary: PerfSummary) -> str:
    """One line of medians for people."""
    return (
        f"{summary.iterations} runs, medians: upload {_size(summary.upload_bytes)} in"
        f" {summary.upload_s:.3f} s{_speed(summary.upload_bytes_per_s)}, download"
        f" {_size(summary.download_bytes)} in {summary.download_s:.3f} s"
        f"{_speed(summary.download_bytes_per_s)}; connect {summary.connect_s * 1e3:.1f} ms,"
        f" total {summary.total_s:.3f} s"
    )
