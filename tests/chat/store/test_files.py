"""The store's files: lock, modes, file checks, schema (chat/store/files.py, schema.py; §9)."""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

import attrs
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.store.helpers import G1, RATIFIER, make_packet, mh, mode, put
from p2pchat.chat.core import cbor
from p2pchat.chat.core.packet import Certificate, make_vote, sha256
from p2pchat.chat.store import (
    APPLICATION_ID,
    LOCK_FILE,
    SCHEMA_VERSION,
    STORE_FILE,
    MessageStatus,
    StoreError,
    StoreFileError,
    StoreLockedError,
    open_store,
)
from p2pchat.chat.store.files import close_connections, open_connections

# -- files, modes, locking --------------------------------------------------------------------


async def test_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    async with open_store(data) as store:
        await store.add_group(G1, b"g", joined_at=1)
        assert mode(data) == 0o700
        assert mode(data / STORE_FILE) == 0o600
        assert mode(data / LOCK_FILE) == 0o600
        # SQLite gives the WAL and its index the database file's mode.
        assert mode(data / f"{STORE_FILE}-wal") == 0o600
        assert mode(data / f"{STORE_FILE}-shm") == 0o600
    assert mode(data / STORE_FILE) == 0o600


async def test_store_readable_by_others_is_refused(tmp_path: Path) -> None:
    async with open_store(tmp_path):
        pass
    (tmp_path / STORE_FILE).chmod(0o644)
    with pytest.raises(StoreFileError, match="accessible by others"):
        async with open_store(tmp_path):
            pass


async def test_second_open_in_this_process_is_refused(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        with pytest.raises(
            StoreLockedError, match=f"in use by another p2pchat node \\(pid {os.getpid()}\\)"
        ):
            async with open_store(tmp_path):
                pass
        # The refused open changed nothing: the first store still works.
        assert await store.add_group(G1, b"g", joined_at=1)
    async with open_store(tmp_path) as again:
        assert await again.get_group(G1) is not None


CHILD: Final = """
import sys, trio
from p2pchat.chat.store import StoreLockedError, open_store

async def main() -> None:
    try:
        async with open_store(sys.argv[1]):
            pass
    except StoreLockedError as exc:
        print(exc)
        sys.exit(3)

trio.run(main)
"""


async def test_second_open_from_another_process_is_refused(tmp_path: Path) -> None:
    async with open_store(tmp_path):
        with trio.fail_after(60):
            done = await trio.run_process(
                [sys.executable, "-c", CHILD, str(tmp_path)],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    assert done.returncode == 3, done.stderr.decode()
    assert f"in use by another p2pchat node (pid {os.getpid()})" in done.stdout.decode()


# -- foreign, corrupted, newer files ------------------------------------------------------------


async def test_garbage_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    garbage = bytes(range(256)) * 64
    path = tmp_path / STORE_FILE
    path.write_bytes(garbage)
    path.chmod(0o600)
    with pytest.raises(StoreFileError, match="not a p2pchat store"):
        async with open_store(tmp_path):
            pass
    assert path.read_bytes() == garbage
    assert not (tmp_path / f"{STORE_FILE}-wal").exists()


async def test_foreign_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / STORE_FILE
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.commit()
    conn.close()
    path.chmod(0o600)
    before = path.read_bytes()
    with pytest.raises(StoreFileError, match=r"not a p2pchat store \(application id 0x0\)"):
        async with open_store(tmp_path):
            pass
    assert path.read_bytes() == before


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    async with open_store(tmp_path):
        pass
    conn = sqlite3.connect(tmp_path / STORE_FILE)
    conn.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreFileError, match="newer p2pchat \\(schema 99\\)"):
        async with open_store(tmp_path):
            pass


async def test_missing_schema_version_is_refused(tmp_path: Path) -> None:
    async with open_store(tmp_path):
        pass
    conn = sqlite3.connect(tmp_path / STORE_FILE)
    conn.execute("DELETE FROM meta")
    conn.commit()
    conn.close()
    with pytest.raises(StoreFileError, match="damaged p2pchat store"):
        async with open_store(tmp_path):
            pass


async def test_corrupted_table_gives_store_file_error(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        await store.add_group(G1, b"g", joined_at=1)
        for i in range(5):
            await put(store, i)
    path = tmp_path / STORE_FILE
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'messages'").fetchone()[0]
    conn.close()
    with path.open("r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(b"\xff" * page_size)
    async with open_store(tmp_path) as store:
        with pytest.raises(StoreFileError, match="corrupted"):
            await store.all_ratified(G1)
        # Tables on intact pages still read.
        assert [g.group_id for g in await store.list_groups()] == [G1]


def _store_image(where: Path) -> Path:
    """A small closed store holding something in every table; returns its file."""

    async def build(where: Path) -> None:
        async with open_store(where) as store:
            await store.add_group(G1, b"genesis", joined_at=1, settings=b"\xa0")
            await store.put_roster(G1, 1, b"roster-1")
            await store.put_epoch_key(G1, 0, bytes(32))
            await store.put_hpke_key("X25519", bytes(32), bytes(32))
            for i in range(6):
                await store.put_message(
                    G1,
                    cbor.dumps({"n": i}),
                    mh(i),
                    epoch=0,
                    time_stamp=i,
                    author=b"author",
                    received_at=i,
                    certificate=None if i % 2 else cbor.dumps({"epoch": 0}),
                    outbox_at=5,
                )
            await store.record_vote(G1, mh(0), 0, b"vote")
            packet = make_packet(b"text")
            vote = make_vote(RATIFIER, G1, 0, packet.message_hash)
            await store.put_packet(packet.with_certificate(Certificate(0, (vote,))), received_at=9)

    trio.run(build, where)
    return where / STORE_FILE


@attrs.frozen
class Image:
    data: bytes = attrs.field(repr=False)


@pytest.fixture(scope="module")
def store_image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return Image(_store_image(tmp_path_factory.mktemp("image")).read_bytes())


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
        min_size=1,
        max_size=8,
    )
)
async def test_damaged_file_raises_only_store_errors(
    store_image: Image, flips: list[tuple[int, int]]
) -> None:
    image = bytearray(store_image.data)
    for offset, mask in flips:
        image[offset % len(image)] ^= mask
    with tempfile.TemporaryDirectory() as where:
        path = Path(where) / STORE_FILE
        path.write_bytes(bytes(image))
        path.chmod(0o600)
        try:
            async with open_store(where) as store:
                for group in await store.list_groups():
                    await store.get_rosters(group.group_id)
                    await store.get_epoch_keys(group.group_id)
                    for message in await store.all_ratified(group.group_id):
                        message.packet_with_certificate()
                    await store.page_messages(group.group_id, 0)
                await store.get_hpke_key("X25519")
                await store.outbox_due(10)
                await store.get_vote(G1, mh(0))
                await store.get_message(G1, mh(1))
                await put(store, 100)
        except StoreError:
            pass


async def test_schema_is_tagged(tmp_path: Path) -> None:
    async with open_store(tmp_path):
        pass
    conn = sqlite3.connect(tmp_path / STORE_FILE)
    try:
        info: dict[str, Any] = {
            "app": conn.execute("PRAGMA application_id").fetchone()[0],
            "journal": conn.execute("PRAGMA journal_mode").fetchone()[0],
            "version": conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()[0],
        }
    finally:
        conn.close()
    assert info == {"app": APPLICATION_ID, "journal": "wal", "version": SCHEMA_VERSION}


async def test_connections_are_durable_and_the_reader_read_only(tmp_path: Path) -> None:
    writer, reader = open_connections(tmp_path)
    try:

        def pragmas(conn: sqlite3.Connection) -> tuple[Any, ...]:
            return tuple(
                conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "foreign_keys", "query_only")
            )

        # synchronous 2 is FULL: every commit fsyncs the WAL.
        assert pragmas(writer) == ("wal", 2, 1, 0)
        assert pragmas(reader)[0] == "wal"
        assert pragmas(reader)[3] == 1
    finally:
        close_connections(reader, writer)


# -- migrations ---------------------------------------------------------------------------------

#: A store of schema 1 as the previous version wrote it (``peers`` table and all).
SCHEMA_1_DUMP: Final = Path(__file__).parent / "data" / "schema-1.sql"


def schema_1_store(where: Path) -> Path:
    """Write the schema-1 store of ``SCHEMA_1_DUMP`` into ``where``; return its file."""
    path = where / STORE_FILE
    conn = sqlite3.connect(path)
    try:
        conn.executescript(SCHEMA_1_DUMP.read_text())
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    finally:
        conn.close()
    path.chmod(0o600)
    return path


def tables_and_version(path: Path) -> tuple[set[str], Any]:
    conn = sqlite3.connect(path)
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    finally:
        conn.close()
    return tables, version


async def test_a_schema_1_store_opens_migrated_with_its_data(tmp_path: Path) -> None:
    path = schema_1_store(tmp_path)
    tables, version = tables_and_version(path)
    assert ("peers" in tables, version) == (True, 1)
    group = sha256(b"group one")
    async with open_store(tmp_path) as store:
        record = await store.get_group(group)
        assert record is not None
        assert (record.genesis, record.joined_at, record.settings) == (b"genesis", 7, b"\xa0")
        assert [(r.epoch, r.packet) for r in await store.get_rosters(group)] == [(1, b"roster-1")]
        assert await store.get_epoch_keys(group) == {0: b"k" * 32}
        hpke = await store.get_hpke_key("X25519")
        assert hpke is not None
        assert (hpke.private, hpke.public) == (b"private", b"public")
        ratified = await store.all_ratified(group)
        assert [(m.message_hash, m.seq, m.packet) for m in ratified] == [(mh(1), 1, b"ratified")]
        pending = await store.get_message(group, mh(2))
        assert pending is not None
        assert pending.status is MessageStatus.PENDING
        assert await store.get_vote(group, mh(2)) == b"vote"
        assert [(e.message_hash, e.next_attempt_at) for e in await store.outbox_due(23)] == [
            (mh(2), 23)
        ]
        # The migrated store takes new writes and continues the sequence.
        await put(store, 3, group=group)
        assert [m.seq for m in await store.all_ratified(group)] == [1, 2]
    tables, version = tables_and_version(path)
    assert "peers" not in tables
    assert "key_sets" in tables
    assert version == SCHEMA_VERSION == 3
    async with open_store(tmp_path) as store:  # and opens again, as schema 3
        assert len(await store.all_ratified(group)) == 2


async def test_a_damaged_schema_1_store_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = schema_1_store(tmp_path)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE peers")  # not schema 1 any more, nor schema 2's meta
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreFileError, match="tables are not schema 1"):
        async with open_store(tmp_path):
            pass
    assert path.read_bytes() == before
    assert tables_and_version(path)[1] == 1


async def test_an_unknown_older_schema_is_refused(tmp_path: Path) -> None:
    path = schema_1_store(tmp_path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = 0 WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreFileError, match="unknown schema version 0"):
        async with open_store(tmp_path):
            pass
