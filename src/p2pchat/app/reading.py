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
  start). It is incremental: per group it keeps how far in the store's order (``seq``, which
  never changes nor is reused) it has read, and a search first takes in only what was stored
  since.
  A deleted message (specs/chat.md §17) leaves it as soon as the delete is stored here
  (:meth:`Reading.forget`), not at the next search: with ``secure_delete`` and the index merged
  (FTS5 ``optimize``), its text and words are no longer in the file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import trio

from ..chat.core.refs import CONTENT_TYPES, DELETE, EDIT
from ..chat.core.view import GroupView
from ..chat.node import ChatMessage
from ..errors import P2PChatError
from ..identity import PeerID

logger = logging.getLogger(__name__)

READ_FILE: Final = "read.json"
SEARCH_FILE: Final = "search.sqlite"
#: What a group's node stored after a point of its store order: (seq, message), in that order.
Since = Callable[[int], Awaitable[list[tuple[int, ChatMessage]]]]
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
        db = _open_index(self._search_path)
        try:
            with db:
                if _remove(db, group, message_hash):
                    _optimize(db)
        finally:
            db.close()

    async def run_forgetting(self, deleted: trio.MemoryReceiveChannel[tuple[bytes, bytes]]) -> None:
        """Take each (group, message hash) of ``deleted`` out of the index (in the daemon's
        nursery); a failure is logged (the delete is applied again when the index reaches it)."""
        async for group_id, message_hash in deleted:
            try:
                await self.forget(group_id, message_hash)
            except (OSError, sqlite3.Error) as exc:
                logger.warning("cannot take a deleted message out of the search index: %s", exc)

    async def forget_search(self) -> None:
        """Delete the index (search switched off)."""
        await trio.to_thread.run_sync(lambda: self._search_path.unlink(missing_ok=True))

    async def search(
        self, groups: Sequence[tuple[bytes, Since]], query: str, limit: int
    ) -> list[dict[str, Any]]:
        """The hits for ``query`` (FTS5 syntax) in ``groups`` (id, and how to read what the node
        stored after a point of its store order), best first: ``{group_id, message_hash,
        author, time_stamp, snippet}``. The index first takes in, for each group, what was
        stored since it last looked (only that is read and decrypted).

        Raises:
            SearchError: search is off, the query is too long, or FTS5 refuses it.
        """
        if not self.search_enabled:
            raise SearchError("search is off on this node ([search] enabled = false)")
        if not query.strip() or len(query.encode()) > MAX_QUERY:
            raise SearchError(f"a search is 1 to {MAX_QUERY} bytes of text")
        async with self._lock:
            cursors = await trio.to_thread.run_sync(self._cursors, [g for g, _ in groups])
            news = [(g, await since(cursors[g])) for g, since in groups]
            return await trio.to_thread.run_sync(
                self._search_sync, news, query, min(limit, MAX_HITS)
            )

    def _cursors(self, groups: list[bytes]) -> dict[bytes, int]:
        """How far (store order) the index has taken in each group; 0 when not yet."""
        if not self._search_path.exists():
            return dict.fromkeys(groups, 0)
        db = _open_index(self._search_path)
        try:
            return {g: _cursor(db, g.hex()) for g in groups}
        finally:
            db.close()

    def _search_sync(
        self, groups: list[tuple[bytes, list[tuple[int, ChatMessage]]]], query: str, limit: int
    ) -> list[dict[str, Any]]:
        db = _open_index(self._search_path)
        try:
            with db:
                for group_id, rows in groups:
                    _take_in(db, group_id.hex(), rows)
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


# -- the index file ------------------------------------------------------------------------------
#
# ``docs``: one FTS5 row per indexed text or Markdown message, its text as it reads now;
# ``rows``: which FTS5 row holds which message (so an edit or a delete finds it without a scan);
# ``progress``: per group, the store order (``seq``) of the last message taken in. A file of
# another layout (``PRAGMA user_version``) is emptied and built again from the start.

_INDEX_VERSION: Final = 2
_INDEXED_TYPES: Final = frozenset({"text", "markdown"})


def _open_index(path: Path) -> sqlite3.Connection:
    """The index (created with mode 0600 when missing), with ``secure_delete`` on."""
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA secure_delete = ON")
        if db.execute("PRAGMA user_version").fetchone()[0] != _INDEX_VERSION:
            with db:
                for table in ("docs", "indexed", "rows", "progress"):
                    db.execute(f"DROP TABLE IF EXISTS {table}")
                db.execute(
                    "CREATE VIRTUAL TABLE docs USING fts5(text, group_id UNINDEXED, "
                    "message_hash UNINDEXED, author UNINDEXED, time_stamp UNINDEXED)"
                )
                db.execute(
                    "CREATE TABLE rows (group_id TEXT NOT NULL, message_hash TEXT NOT NULL, "
                    "doc INTEGER NOT NULL, author TEXT NOT NULL, "
                    "PRIMARY KEY (group_id, message_hash))"
                )
                db.execute(
                    "CREATE TABLE progress (group_id TEXT PRIMARY KEY, seq INTEGER NOT NULL)"
                )
                db.execute(f"PRAGMA user_version = {_INDEX_VERSION}")
    except BaseException:
        db.close()
        raise
    return db


def _cursor(db: sqlite3.Connection, group: str) -> int:
    row = db.execute("SELECT seq FROM progress WHERE group_id = ?", (group,)).fetchone()
    return 0 if row is None else int(row[0])


def _take_in(db: sqlite3.Connection, group: str, rows: list[tuple[int, ChatMessage]]) -> None:
    """Apply what the node stored since the group's cursor, in store order: a text adds a row,
    its author's edit replaces the text, a delete removes the row (specs/control.md
    "Reading"). A message's parents are stored before it, so an author's edits come in the
    order they were written, and a delete after what it deletes. The batch is folded here
    first (a text edited or deleted within it is written once, or never), then written."""
    if not rows:
        return
    # message hash -> [text, author, time stamp] of the texts new in this batch
    added: dict[str, list[Any]] = {}
    edits: dict[str, tuple[str, str]] = {}  # rows already indexed: hash -> (author, text)
    removed: list[str] = []
    for _, message in rows:
        kind, content = message.message_type, message.content
        author = str(message.author)
        if kind in _INDEXED_TYPES and content is not None:
            text = content.decode("utf-8", "replace")
            added[message.message_hash.hex()] = [text, author, message.time_stamp]
        elif kind == EDIT and message.ref_hash is not None and content is not None:
            target, text = message.ref_hash.hex(), content.decode("utf-8", "replace")
            if target in added:
                if added[target][1] == author:
                    added[target][0] = text
            else:
                edits[target] = (author, text)
        elif kind == DELETE and message.ref_hash is not None:
            target = message.ref_hash.hex()
            if added.pop(target, None) is None:
                edits.pop(target, None)
                removed.append(target)
    for target, (author, text) in edits.items():
        held = db.execute(
            "SELECT doc FROM rows WHERE group_id = ? AND message_hash = ? AND author = ?",
            (group, target, author),
        ).fetchone()
        if held is not None:
            db.execute("UPDATE docs SET text = ? WHERE rowid = ?", (text, held[0]))
    gone = False
    for target in removed:
        gone = _remove(db, group, target) or gone
    first = db.execute("SELECT coalesce(max(rowid), 0) + 1 FROM docs").fetchone()[0]
    numbered = [(first + n, h, *fields) for n, (h, fields) in enumerate(added.items())]
    db.executemany(
        "INSERT INTO docs (rowid, text, group_id, message_hash, author, time_stamp) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(doc, text, group, h, author, ts) for doc, h, text, author, ts in numbered],
    )
    db.executemany(
        "INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?)",
        [(group, h, doc, author) for doc, h, _, author, _ in numbered],
    )
    db.execute("INSERT OR REPLACE INTO progress VALUES (?, ?)", (group, rows[-1][0]))
    if gone:
        _optimize(db)


def _remove(db: sqlite3.Connection, group: str, message_hash: str) -> bool:
    """Take a message's row out; True if there was one."""
    held = db.execute(
        "SELECT doc FROM rows WHERE group_id = ? AND message_hash = ?", (group, message_hash)
    ).fetchone()
    if held is None:
        return False
    db.execute("DELETE FROM docs WHERE rowid = ?", (held[0],))
    db.execute("DELETE FROM rows WHERE group_id = ? AND message_hash = ?", (group, message_hash))
    return True


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
