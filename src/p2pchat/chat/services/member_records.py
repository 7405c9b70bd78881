"""The members' signed peer records a node learnt, kept in its data dir (specs/chat.md §12).

The file ``member-records.cbor`` holds the newest signed peer record (specs/peer-record.md) this
node holds for each member of its groups' current rosters, other than itself: CBOR
``{"v": 1, "records": [envelope bytes...]}``, the envelopes sorted, at most
:data:`MAX_STORED_RECORDS`. It is a cache of data that authenticates itself: every record is
verified again when the file is read (signed by its own peer, a current member, not us; a newer
``seq`` than the one held), so a damaged or edited file can only lose records, never plant an
address. It is written atomically (a temporary file with mode 0600, fsynced, renamed into place)
a moment after new records were kept, and when the node stops; a failure to write is logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

import attrs
import trio

from ...errors import DecodeError
from ...identity import PeerID
from ...multiaddr import Multiaddr
from ...net.host import Host
from ...records import MAX_ENVELOPE_SIZE, RecordError, open_peer_record
from ..core import cbor

logger = logging.getLogger(__name__)

RECORDS_FILE: Final = "member-records.cbor"
VERSION: Final = 1
#: Records kept in the file (the members of every group we are in, most groups have few).
MAX_STORED_RECORDS: Final = 4096
#: The largest file read: every record at its largest, with CBOR's framing.
MAX_FILE_SIZE: Final = MAX_STORED_RECORDS * (MAX_ENVELOPE_SIZE + 3) + 64
#: How long the addresses of a record read from the file stay in the peer store (seconds).
STORED_ADDR_TTL: Final = 24 * 3600.0
#: Wait this long after new records were kept before writing the file (seconds).
SAVE_DELAY: Final = 1.0


def encode_records(envelopes: Iterable[bytes]) -> bytes:
    """The file's bytes for these envelopes (sorted, at most :data:`MAX_STORED_RECORDS`)."""
    kept = sorted(set(envelopes))[:MAX_STORED_RECORDS]
    return cbor.dumps({"v": VERSION, "records": list(kept)})


def decode_records(data: bytes) -> list[bytes]:
    """The envelopes of a records file (not yet verified).

    Raises:
        DecodeError: not a records file of this version.
    """
    value = cbor.loads(data, max_size=MAX_FILE_SIZE)
    if not isinstance(value, dict) or value.get("v") != VERSION:
        raise DecodeError(f"not a version {VERSION} member records file")
    records = value.get("records")
    if not isinstance(records, list) or len(records) > MAX_STORED_RECORDS:
        raise DecodeError(f"records must be a list of at most {MAX_STORED_RECORDS}")
    if not all(isinstance(r, bytes) for r in records):
        raise DecodeError("a record is not a byte string")
    return list(records)


def read_records(path: Path) -> list[bytes]:
    """The envelopes in ``path``; none when the file is absent.

    Raises:
        OSError: the file cannot be read.
        DecodeError: it is too large or not a records file.
    """
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_SIZE + 1)
    except FileNotFoundError:
        return []
    if len(data) > MAX_FILE_SIZE:
        raise DecodeError(f"larger than {MAX_FILE_SIZE} bytes")
    return decode_records(data)


def write_records(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (mode 0600, fsynced, renamed into place).

    Raises:
        OSError: the file cannot be written.
    """
    fd, tmp = tempfile.mkstemp(prefix=".member-records-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@attrs.frozen
class Kept:
    """A record kept: whose, and the addresses it gives."""

    peer: PeerID
    addresses: frozenset[Multiaddr]


def file_records(
    host: Host,
    envelopes: Iterable[bytes],
    members: set[PeerID],
    ttl: float,
    *,
    held: list[Kept] | None = None,
) -> list[Kept]:
    """Verify ``envelopes`` and keep, in ``host``'s peer store, each signed by its own peer, a
    member other than us, newer than the record held; its addresses for ``ttl`` seconds.
    Returns the records kept; ``held`` gets those that are the very record already held (as
    identify may have brought it first)."""
    store = host.peer_store
    kept: list[Kept] = []
    for item in envelopes:
        try:
            record, _ = open_peer_record(item)
        except RecordError as exc:
            logger.info("a member record refused: %s", exc.hint)
            continue
        if record.peer not in members or record.peer == host.peer_id:
            logger.debug("a record of %s (not a member) refused", record.peer)
            continue
        if store.set_signed_record(record.peer, record.seq, item):
            store.add_addrs(record.peer, record.addresses, ttl, trio.current_time())
            kept.append(Kept(record.peer, frozenset(record.addresses)))
        elif held is not None and store.signed_record(record.peer) == item:
            held.append(Kept(record.peer, frozenset(record.addresses)))
    return kept


class MemberRecordFile:
    """The records file of a running node: read at start, written after changes and at stop."""

    def __init__(self, host: Host, path: Path) -> None:
        self._host = host
        self.path = path
        self._changed = trio.Event()
        self._saved: bytes | None = None

    async def load(self, members: set[PeerID]) -> int:
        """Keep the file's records of ``members`` (verified); return how many. A file that
        cannot be read is logged and ignored (it is written again at the next change)."""
        try:
            envelopes = await trio.to_thread.run_sync(read_records, self.path)
        except (OSError, DecodeError) as exc:
            logger.warning("member records in %s ignored: %s", self.path, exc)
            return 0
        kept = file_records(self._host, envelopes, members, STORED_ADDR_TTL)
        if kept:
            logger.info("%d member addresses from %s", len(kept), self.path.name)
        return len(kept)

    def changed(self) -> None:
        """New records were kept: write the file a moment later."""
        self._changed.set()

    async def save(self, members: Iterable[PeerID]) -> None:
        """Write the records the peer store holds for ``members`` (not ours), if they differ
        from what was last written; a failure is logged."""
        store = self._host.peer_store
        envelopes = [
            record
            for peer in sorted(set(members) - {self._host.peer_id})
            if (record := store.signed_record(peer)) is not None
        ]
        data = encode_records(envelopes)
        if data == self._saved:
            return
        try:
            await trio.to_thread.run_sync(write_records, self.path, data)
        except OSError as exc:
            logger.warning("cannot write %s: %s", self.path, exc)
            return
        self._saved = data

    async def run_saver(self, members: Callable[[], set[PeerID]]) -> None:
        """Write the file :data:`SAVE_DELAY` after each change, until cancelled."""
        while True:
            await self._changed.wait()
            await trio.sleep(SAVE_DELAY)
            self._changed = trio.Event()
            await self.save(members())
