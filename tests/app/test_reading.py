"""Read marks and the search index (specs/control.md "Reading"): search can be off, the index is
private to the node's user."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs
import pytest

from p2pchat.app.reading import SEARCH_FILE, Reading, SearchError, Since
from p2pchat.chat.node import ChatMessage
from p2pchat.identity import KeyPair, PeerID

ME = KeyPair.generate().peer_id
OTHER = KeyPair.generate().peer_id
GROUP = bytes(32)


def stored(*messages: ChatMessage) -> Since:
    """A store that holds ``messages`` in that order (seq 1, 2, ...)."""
    rows = list(enumerate(messages, start=1))

    async def since(seq: int) -> list[tuple[int, ChatMessage]]:
        return [(n, m) for n, m in rows if n > seq]

    return since


def text(n: int, body: str) -> ChatMessage:
    return ChatMessage(
        group_id=GROUP,
        message_hash=bytes([n]) * 32,
        author=ME,
        message_type="text",
        mime="text/plain",
        time_stamp=1_700_000_000_000 + n,
        epoch=0,
        ref_hash=None,
        content=body.encode(),
        ratified=True,
    )


async def test_search_finds_words_and_the_index_is_private(tmp_path: Path) -> None:
    reading = Reading(tmp_path)
    groups = [(GROUP, stored(text(1, "the quick fox"), text(2, "a lazy dog")))]
    (hit,) = await reading.search(groups, "fox", 10)
    assert hit["message_hash"] == (bytes([1]) * 32).hex()
    assert hit["snippet"] == "the quick [fox]"
    assert (tmp_path / SEARCH_FILE).stat().st_mode & 0o077 == 0
    with pytest.raises(SearchError, match="not a search"):
        await reading.search(groups, 'unbalanced "quote', 10)
    with pytest.raises(SearchError, match="1 to 256 bytes"):
        await reading.search(groups, "x" * 257, 10)


async def test_search_off_refuses_and_forgets_the_index(tmp_path: Path) -> None:
    await Reading(tmp_path).search([(GROUP, stored(text(1, "kept words")))], "kept", 10)
    assert (tmp_path / SEARCH_FILE).exists()
    off = Reading(tmp_path, search=False)
    await off.forget_search()
    assert not (tmp_path / SEARCH_FILE).exists()
    with pytest.raises(SearchError, match="search is off"):
        await off.search([(GROUP, stored(text(1, "kept words")))], "kept", 10)


async def test_a_deleted_message_leaves_the_index_file_at_once(tmp_path: Path) -> None:
    reading = Reading(tmp_path)
    secret, other = "zebraphonic xylophagous", "ordinary words"
    groups = [(GROUP, stored(text(1, secret), text(2, other)))]
    assert await reading.search(groups, "zebraphonic", 10)
    assert b"zebraphonic" in (tmp_path / SEARCH_FILE).read_bytes()  # the check can fail
    await reading.forget(GROUP, bytes([1]) * 32)
    content = (tmp_path / SEARCH_FILE).read_bytes()
    assert b"zebraphonic" not in content
    assert b"xylophagous" not in content
    assert b"ordinary" in content
    await reading.forget(GROUP, bytes([9]) * 32)  # not indexed: nothing happens
    await Reading(tmp_path / "none").forget(GROUP, bytes([1]) * 32)  # no index yet


def _ref(n: int, kind: str, target: int, body: str, author: PeerID = ME) -> ChatMessage:
    return attrs.evolve(
        text(n, body), message_type=kind, ref_hash=bytes([target]) * 32, author=author
    )


async def test_the_index_takes_in_only_what_was_stored_since_it_last_looked(
    tmp_path: Path,
) -> None:
    reading = Reading(tmp_path)
    history = [text(1, "alpha words"), text(2, "bravo words")]
    asked: list[int] = []

    async def since(seq: int) -> list[tuple[int, ChatMessage]]:
        asked.append(seq)
        return [(n, m) for n, m in enumerate(history, start=1) if n > seq]

    groups = [(GROUP, since)]
    assert len(await reading.search(groups, "words", 10)) == 2
    history += [
        _ref(3, "edit", 1, "alpha changed"),
        _ref(4, "edit", 2, "not bravo's author", author=OTHER),  # only the author edits
        text(5, "charlie words"),
        _ref(6, "delete", 5, ""),
        _ref(7, "reaction", 2, "+1"),
    ]
    hits = await reading.search(groups, "words OR changed OR author", 10)
    assert sorted(h["snippet"] for h in hits) == ["alpha [changed]", "bravo [words]"]
    assert await reading.search(groups, "words", 10)  # nothing new: nothing read again
    history += [_ref(8, "delete", 2, ""), _ref(9, "edit", 2, "too late")]
    assert await reading.search(groups, "words OR late", 10) == []
    assert b"bravo" not in (tmp_path / SEARCH_FILE).read_bytes()
    assert asked == [0, 2, 7, 7]


async def test_an_index_of_another_layout_is_built_again(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / SEARCH_FILE)
    old.execute("CREATE TABLE indexed (group_id TEXT PRIMARY KEY, digest TEXT)")
    old.commit()
    old.close()
    hits = await Reading(tmp_path).search([(GROUP, stored(text(1, "kept words")))], "kept", 10)
    assert len(hits) == 1
