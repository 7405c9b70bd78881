"""The secure stream's worker-thread pipeline for bulk (specs/secure-stream.md "Worker threads
for bulk").

Theory of operation
-------------------
:class:`~p2pchat.net.secure.SecureStream` hands its bulk work here when its ``worker_threads``
is set. A write of more than :data:`SEAL_BATCH` bytes is sealed in batches: the first on the
loop, each next one by ``trio.to_thread.run_sync`` (``cryptography`` releases the GIL in its
AEAD) while the event loop writes the previous one. When at least :data:`OPEN_MIN` bytes of whole
frames are buffered, they are detached from the Noise core and decrypted in a thread while, on a
TCP transport, the loop reads once more (up to :data:`READ_AHEAD` bytes buffered).

Every thread call is awaited inside the stream call that started it, in a nursery of that call,
and cannot be abandoned, so nothing outlives ``send_all`` or ``receive_some``; only one thread at
a time touches each direction of the core. The functions here are that stream's other half: they
take the stream and use its internals (its Noise session, socket and pending plaintext).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Final

import trio

from ..errors import ProtocolError
from ..protocols import noise

if TYPE_CHECKING:
    from .secure import SecureStream

#: With worker threads the stream reads this much at a time: large enough to gather an
#: OPEN_MIN backlog in one read.
THREADED_RECEIVE_SIZE: Final = 1024 * 1024
#: Plaintext sealed per batch: 16 full Noise messages (1,048,304 bytes). A write of more than one
#: batch is pipelined: the loop seals the first, then a worker thread seals batch n+1 while the
#: loop writes batch n. A write of at most one batch is sealed on the loop.
SEAL_BATCH: Final = 16 * noise.MAX_PLAINTEXT_LEN
#: On receive, at least this much plaintext in whole buffered frames (a backlog: the loop is
#: behind the peer) is opened in a worker thread while the loop reads once more; less (pings,
#: queries, chat messages, a receiver that keeps up) is opened on the loop, since a thread
#: hand-off costs about as much as opening a few hundred KiB.
OPEN_MIN: Final = 768 * 1024
#: The read done while a batch is opened stops once this much ciphertext is buffered.
READ_AHEAD: Final = 2 * 1024 * 1024

Part = bytes | bytearray | memoryview
Seal = Callable[[], bytearray | memoryview]


def data_batches(seal: Callable[[memoryview], bytearray], view: memoryview) -> list[Seal]:
    """``view`` cut into SEAL_BATCH batches, each to be sealed by ``seal``."""
    return [
        functools.partial(seal, view[i : i + SEAL_BATCH]) for i in range(0, len(view), SEAL_BATCH)
    ]


def unit_batches(
    seal: Callable[[Sequence[Part]], bytearray | memoryview], units: Sequence[Sequence[Part]]
) -> list[Seal]:
    """``units`` grouped into batches of whole units of about SEAL_BATCH bytes, each to be
    sealed (as one byte stream) by ``seal``."""
    groups: list[list[Part]] = []
    group: list[Part] = []
    group_size = 0
    for unit in units:
        size = sum(len(part) for part in unit)
        if group and group_size + size > SEAL_BATCH:
            groups.append(group)
            group, group_size = [], 0
        group.extend(unit)
        group_size += size
    if group:
        groups.append(group)
    return [functools.partial(seal, g) for g in groups]


async def send_pipelined(stream: SecureStream, batches: Sequence[Seal]) -> None:
    """Seal the first batch on the loop, then batch n+1 in a worker thread while the loop
    writes batch n.

    Raises:
        trio.BrokenResourceError: a batch failed to seal, or the transport failed.
    """
    sealed: list[bytearray | memoryview] = []
    failures: list[ProtocolError] = []

    async def seal(batch: Seal) -> None:
        try:
            sealed.append(await trio.to_thread.run_sync(batch))
        except ProtocolError as exc:
            failures.append(exc)
        else:
            stream.offloaded_seals += 1

    try:
        sealed.append(batches[0]())
    except ProtocolError as exc:
        raise stream._break(exc, exc.hint) from exc
    for batch in batches[1:]:
        if failures:
            break
        frames = sealed.pop()
        write_error: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(seal, batch)
            try:
                await stream._write(frames)
            except Exception as exc:  # raised as it is once the thread is done
                write_error = exc
        if write_error is not None:
            raise write_error
    if failures:
        raise stream._break(failures[0], failures[0].hint) from failures[0]
    await stream._write(sealed.pop())


def backlog(session: noise.NoiseConnection, size: int) -> int:
    """The plaintext of the whole buffered frames a read of ``size`` would open in a thread:
    at least OPEN_MIN, or 0 when it is to be opened on the loop."""
    if session.buffered_bytes < OPEN_MIN or size < OPEN_MIN:
        return 0
    whole = session.whole_frames_plaintext(size)
    return whole if whole >= OPEN_MIN else 0


async def receive_offloaded(
    stream: SecureStream, size: int, plaintext_len: int
) -> bytes | bytearray:
    """Decrypt a detached batch of whole frames in a worker thread while reading ahead.

    Raises:
        trio.BrokenResourceError: a frame failed authentication.
    """
    session = stream._session
    try:
        batch = session.take_frames(size)
    except ProtocolError as exc:
        raise stream._break(exc, exc.hint) from exc
    out = bytearray(plaintext_len)
    failures: list[ProtocolError] = []

    async def open_batch(done: trio.CancelScope) -> None:
        # Shielded: the batch has left the core, so it is opened and kept even if we are
        # cancelled (the next call hands it out). It is at most THREADED_RECEIVE_SIZE of work.
        with trio.CancelScope(shield=True):
            try:
                await trio.to_thread.run_sync(session.open_frames, batch, out)
            except ProtocolError as exc:
                failures.append(exc)
            else:
                stream._pending = out
        done.cancel()

    with one_cancelled():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(open_batch, nursery.cancel_scope)
            if stream._socket is not None:
                await _read_ahead(stream)
            else:  # a generic stream's receive_some may not survive being cancelled
                await trio.sleep_forever()
    if failures:
        raise stream._break(failures[0], failures[0].hint) from failures[0]
    stream.offloaded_opens += 1
    return stream._take_pending(size)


async def _read_ahead(stream: SecureStream) -> None:
    """Read once into the core's buffer (unless READ_AHEAD bytes already wait), then sleep
    until cancelled. A read error is kept for the next read; at end of stream the next read
    sees it again.
    """
    session = stream._session
    sock = stream._socket
    assert sock is not None
    try:
        if stream._read_error is None and session.buffered_bytes < READ_AHEAD:
            want = min(THREADED_RECEIVE_SIZE, READ_AHEAD - session.buffered_bytes)
            with session.receive_buffer(want) as view:
                try:
                    count = await sock.recv_into(view)
                except OSError as exc:
                    stream._read_error = exc
                    count = 0
            session.received(count)
    except ProtocolError:
        pass  # the core failed in the worker thread, which reports why
    await trio.sleep_forever()


@contextlib.contextmanager
def one_cancelled() -> Iterator[None]:
    """Let a nursery's group made only of ``Cancelled`` out as one ``Cancelled``, as a stream
    call that is cancelled is expected to raise."""
    try:
        yield
    except BaseExceptionGroup as group:
        if group.split(trio.Cancelled)[1] is not None:
            raise
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from None
