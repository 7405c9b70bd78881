"""The store's errors, and the translation of SQLite's errors into them (specs/chat.md §9)."""

from __future__ import annotations

import sqlite3
from typing import Final

from ...errors import P2PChatError

__all__ = [
    "DB_ERRORS",
    "StoreClosedError",
    "StoreError",
    "StoreFileError",
    "StoreLockedError",
    "UnknownGroupError",
    "UnknownMessageError",
    "VoteConflictError",
    "translate",
]


class StoreError(P2PChatError):
    """The store cannot do what was asked; the message says why. Nothing stored is lost."""


class StoreLockedError(StoreError):
    """Another process (or another open in this one) already uses this data dir's store."""


class StoreFileError(StoreError):
    """The store file is not a p2pchat store, is corrupted, or was written by a newer version."""


class StoreClosedError(StoreError):
    """The store was used after its ``async with`` block ended."""


class UnknownGroupError(StoreError):
    """The group is not in the store."""


class UnknownMessageError(StoreError):
    """The message is not in the store (a vote or outbox entry needs the message first)."""


class VoteConflictError(StoreError):
    """This node already voted for another roster message of the same epoch (§6)."""


#: What SQLite calls can raise on a bad file: its own errors, and (for damaged text, including
#: the schema's own SQL) a failure to decode UTF-8.
DB_ERRORS: Final = (sqlite3.Error, UnicodeDecodeError)


def translate(exc: Exception, what: str) -> StoreError:
    """A :class:`StoreError` for an SQLite error; corruption gets :class:`StoreFileError`."""
    if isinstance(exc, UnicodeDecodeError):
        return StoreFileError(f"{what}: the store file is corrupted (invalid text: {exc})")
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or name.startswith("SQLITE_CORRUPT_"):
        return StoreFileError(f"{what}: the store file is corrupted ({exc})")
    return StoreError(f"{what}: {exc}")
