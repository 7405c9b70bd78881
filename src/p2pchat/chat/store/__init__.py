"""The node's durable chat store: SQLite (standard library) in the data dir (specs/chat.md §9).

One concern per module:

* :mod:`.files`: the data dir and its lock (``store.lock``), the store file's checks and mode,
  the writer's and the reader's connections;
* :mod:`.schema`: the tables, the check that a file holds them, the migrations;
* :mod:`.executor`: the batching worker that runs every SQLite call off the event loop, many
  calls to one transaction (its theory of operation is at its top);
* :mod:`.groups`, :mod:`.messages`, :mod:`.outbox`: the SQL of each operation;
* :mod:`.records`, :mod:`.errors`: what the store returns and raises;
* :mod:`.store`: :class:`ChatStore`, the thin async face, and :func:`open_store`.
"""

from __future__ import annotations

from .errors import StoreClosedError as StoreClosedError
from .errors import StoreError as StoreError
from .errors import StoreFileError as StoreFileError
from .errors import StoreLockedError as StoreLockedError
from .errors import UnknownGroupError as UnknownGroupError
from .errors import UnknownMessageError as UnknownMessageError
from .errors import VoteConflictError as VoteConflictError
from .executor import MAX_BATCH_BYTES as MAX_BATCH_BYTES
from .executor import MAX_BATCH_JOBS as MAX_BATCH_JOBS
from .files import DIR_MODE as DIR_MODE
from .files import FILE_MODE as FILE_MODE
from .files import LOCK_FILE as LOCK_FILE
from .files import STORE_FILE as STORE_FILE
from .messages import DHT_PAGE_BYTES as DHT_PAGE_BYTES
from .messages import DHT_PAGE_PACKETS as DHT_PAGE_PACKETS
from .records import CERTIFICATE_KEY_OVERHEAD as CERTIFICATE_KEY_OVERHEAD
from .records import GroupRecord as GroupRecord
from .records import HpkeKey as HpkeKey
from .records import MessageStatus as MessageStatus
from .records import OutboxEntry as OutboxEntry
from .records import RosterRecord as RosterRecord
from .records import StoredMessage as StoredMessage
from .records import StoreStatistics as StoreStatistics
from .schema import APPLICATION_ID as APPLICATION_ID
from .schema import SCHEMA_VERSION as SCHEMA_VERSION
from .store import ChatStore as ChatStore
from .store import open_store as open_store
