"""What the user has read, and full-text search over the node's own decrypted history
(specs/control.md "Reading"). Both live in their own files in the data dir, beside the chat's
store and not in it, so that they never touch its schema:

* ``read.json``: per group, how many messages of others the user had seen when it last read
  the group (``history``, ``chat``). Unread = how many others' messages the node holds now
  minus that: messages are never removed, so the difference is what arrived since. One small
  integer per group; written to a temporary name and renamed.
* ``search.sqlite``: an SQLite FTS5 index of the plaintext of the node's content messages as
  they read now (edits applied, deleted ones left out). It holds plaintext that the chat's store
  keeps only encrypted, so it is made with mode 0600 inside the data dir (0700), and it can be
  switched off (``[search] enabled = false``: nothing is indexed and the file is deleted at
  start). The index of a group is rebuilt when a search finds its history changed.
  A deleted message (specs/chat.md §17) leaves it as soon as the delete is stored here
  (:meth:`Reading.forget`), not at the next search: with ``secure_delete`` and the index merged
  (FTS5 ``optimize``), its text and words are no longer in the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import trio

from ..chat.core.refs import CONTENT_TYPES, Item, fold
from ..chat.core.view import GroupView
from ..chat.node import ChatMessage
from ..errors import P2PChatError
from ..identity import PeerID

logger = logging.getLogger(__name__)

READ_FILE: Final = "read.json"
SEARCH_FILE: Final = "search.sqlite"
#: A search answers at most this many hits.
MAX_HITS: Final = 200
#: A query is at most this many bytes.
MAX_QUERY: Final = 256


class SearchError(P2PChatError):
    """Search is off, or the query is not one FTS5 understands."""


def others_count(view: GroupView, me: PeerID) -> int:
    """How many content messages of others the node holds in the group."""
    return sum(1 for k in view.kinds.values() if k.author != me and k.message_type in CONTENT_TYPES)


class Reading:
    """The read marks and the search index of one node (see the module's docstring)."""

    def __init__(self, data_dir: Path, *, search: bool = True) -> None:
        self._read_path = data_dir / READ_FILE
        self._search_path = data_dir / SEARCH_FILE
        self.search_enabled = search
        self._marks: dict[str, int] | None = None
        self._lock = trio.Lock()

    # -- read marks ------------------------------------------------------------------------

    async def _load_marks(self) -> dict[str, int]:
        if self._marks is None:
            self._marks = await trio.to_thread.run_sync(self._read_marks)
        return self._marks

    def _read_marks(self) -> dict[str, int]:
        try:
            value = json.loads(self._read_path.read_text())
            return {str(k): int(v) for k, v in value["groups"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}  # none yet, or unreadable: everything counts as unread once

    async def unread(self, group_id: bytes, view: GroupView, me: PeerID) -> int:
        marks = await self._load_marks()
        return max(0, others_count(view, me) - marks.get(group_id.hex(), 0))

    async def mark_read(self, group_id: bytes, view: GroupView, me: PeerID) -> None:
        """Everything the node holds of the group now counts as read."""
        async with self._lock:
            marks = await self._load_marks()
            count = others_count(view, me)
            if marks.get(group_id.hex()) == count:
                return
            marks[group_id.hex()] = count
            text = json.dumps({"version": 1, "groups": marks}, sort_keys=True)
            await trio.to_thread.run_sync(_write_private, self._read_path, text)

    # -- search ----------------------------------------------------------------------------

    async def forget(self, group_id: bytes, message_hash: bytes) -> None:
        """Take a deleted message out of the search index at once (specs/chat.md §17)."""
        if not self.search_enabled:
            return
        async with self._lock:
            await trio.to_thread.run_sync(self._forget_sync, group_id.hex(), message_hash.hex())

    def _forget_sync(self, group: str, message_hash: str) -> None:
        if not self._search_path.exists():
            return
        db = sqlite3.connect(self._search_path)
        try:
            db.execute("PRAGMA secure_delete = ON")
            with db:
                exists = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'docs'").fetchone()
                if exists is None:
                    return
                gone = db.execute(
                    "DELETE FROM docs WHERE group_id = ? AND message_hash = ?",
                    (group, message_hash),
                ).rowcount
                if gone:
                    _optimize(db)
        finally:
            db.close()

    async def run_forgetting(self, deleted: trio.MemoryReceiveChannel[tuple[bytes, bytes]]) -> None:
        """Take each (group, message hash) of ``deleted`` out of the index (in the daemon's
        nursery); a failure is logged, and the next search rebuilds the group anyway."""
        async for group_id, message_hash in deleted:
            try:
                await self.forget(group_id, message_hash)
            except (OSError, sqlite3.Error) as exc:
                logger.warning("cannot take a deleted message out of the search index: %s", exc)

    async def forget_search(self) -> None:
        """Delete the index (search switched off)."""
        await trio.to_thread.run_sync(lambda: self._search_path.unlink(missing_ok=True))

    async def search(
        self,
        groups: Sequence[tuple[bytes, PeerID, Sequence[ChatMessage]]],
        query: str,
        limit: int,
    ) -> list[dict[str, Any]]:
        """The hits for ``query`` (FTS5 syntax) in ``groups`` (id, owner, ratified history),
        best first: ``{group_id, message_hash, author, time_stamp, snippet}``.

        Raises:
            SearchError: search is off, the query is too long, or FTS5 refuses it.
        """
        if not self.search_enabled:
            raise SearchError("search is off on this node ([search] enabled = false)")
        if not query.strip() or len(query.encode()) > MAX_QUERY:
            raise SearchError(f"a search is 1 to {MAX_QUERY} bytes of text")
        rows = [(g, _documents(owner, messages)) for g, owner, messages in groups]
        async with self._lock:
            return await trio.to_thread.run_sync(
                self._search_sync, rows, query, min(limit, MAX_HITS)
            )

    def _search_sync(
        self, groups: list[tuple[bytes, list[tuple[str, str, int, str]]]], query: str, limit: int
    ) -> list[dict[str, Any]]:
        if not self._search_path.exists():
            fd = os.open(self._search_path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        db = sqlite3.connect(self._search_path)
        try:
            db.execute("PRAGMA secure_delete = ON")
            with db:
                db.execute(
                    "CREATE VIRTUAL TABLE IF NOT EXISTS docs USING fts5("
                    "text, group_id UNINDEXED, message_hash UNINDEXED, author UNINDEXED, "
                    "time_stamp UNINDEXED)"
                )
                db.execute(
                    "CREATE TABLE IF NOT EXISTS indexed (group_id TEXT PRIMARY KEY, digest TEXT)"
                )
                for group_id, docs in groups:
                    _refresh(db, group_id.hex(), docs)
            ids = [g.hex() for g, _ in groups]
            marks = ",".join("?" for _ in ids)
            try:
                found = db.execute(
                    "SELECT group_id, message_hash, author, time_stamp, "
                    "snippet(docs, 0, '[', ']', '...', 12) FROM docs "
                    f"WHERE docs MATCH ? AND group_id IN ({marks}) ORDER BY rank LIMIT ?",
                    (query, *ids, limit),
                ).fetchall()
            except sqlite3.OperationalError as exc:
                raise SearchError(f"not a search this node understands: {exc}") from None
        finally:
            db.close()
        return [
            {"group_id": g, "message_hash": h, "author": a, "time_stamp": t, "snippet": s}
            for g, h, a, t, s in found
        ]


def _documents(owner: PeerID, messages: Sequence[ChatMessage]) -> list[tuple[str, str, int, str]]:
    """(hash, author, time, text) of each readable text message as it reads now."""
    by_hash = {m.message_hash: m for m in messages}
    items = [
        Item(m.message_hash, m.author, m.message_type, m.ref_hash, m.content) for m in messages
    ]
    docs = []
    for entry in fold(items, owner):
        message = by_hash[entry.item.message_hash]
        if message.message_type in ("text", "markdown") and entry.content is not None:
            text = entry.content.decode("utf-8", "replace")
            docs.append((message.message_hash.hex(), str(message.author), message.time_stamp, text))
    return docs


def _refresh(db: sqlite3.Connection, group: str, docs: list[tuple[str, str, int, str]]) -> None:
    """Rebuild a group's rows when what they would hold changed."""
    digest = hashlib.sha256(json.dumps(docs).encode()).hexdigest()
    held = db.execute("SELECT digest FROM indexed WHERE group_id = ?", (group,)).fetchone()
    if held is not None and held[0] == digest:
        return
    gone = db.execute("DELETE FROM docs WHERE group_id = ?", (group,)).rowcount
    db.executemany(
        "INSERT INTO docs (text, group_id, message_hash, author, time_stamp) VALUES (?,?,?,?,?)",
        [(text, group, h, a, t) for h, a, t, text in docs],
    )
    db.execute("INSERT OR REPLACE INTO indexed VALUES (?, ?)", (group, digest))
    if gone:
        _optimize(db)


def _optimize(db: sqlite3.Connection) -> None:
    """Merge the index into one segment, so the words of deleted rows leave it (FTS5 keeps
    them in older segments until a merge)."""
    db.execute("INSERT INTO docs (docs) VALUES ('optimize')")


def _write_private(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with contextlib.closing(os.fdopen(fd, "w")) as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temporary, path)
