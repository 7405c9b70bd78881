"""Read marks and the search index (specs/control.md "Reading"): search can be off, the index is
private to the node's user."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pchat.app.reading import SEARCH_FILE, Reading, SearchError
from p2pchat.chat.node import ChatMessage
from p2pchat.identity import KeyPair

ME = KeyPair.generate().peer_id
GROUP = bytes(32)


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
    groups = [(GROUP, ME, [text(1, "the quick fox"), text(2, "a lazy dog")])]
    (hit,) = await reading.search(groups, "fox", 10)
    assert hit["message_hash"] == (bytes([1]) * 32).hex()
    assert hit["snippet"] == "the quick [fox]"
    assert (tmp_path / SEARCH_FILE).stat().st_mode & 0o077 == 0
    with pytest.raises(SearchError, match="not a search"):
        await reading.search(groups, 'unbalanced "quote', 10)
    with pytest.raises(SearchError, match="1 to 256 bytes"):
        await reading.search(groups, "x" * 257, 10)


async def test_search_off_refuses_and_forgets_the_index(tmp_path: Path) -> None:
    await Reading(tmp_path).search([(GROUP, ME, [text(1, "kept words")])], "kept", 10)
    assert (tmp_path / SEARCH_FILE).exists()
    off = Reading(tmp_path, search=False)
    await off.forget_search()
    assert not (tmp_path / SEARCH_FILE).exists()
    with pytest.raises(SearchError, match="search is off"):
        await off.search([(GROUP, ME, [text(1, "kept words")])], "kept", 10)


async def test_a_deleted_message_leaves_the_index_file_at_once(tmp_path: Path) -> None:
    reading = Reading(tmp_path)
    secret, other = "zebraphonic xylophagous", "ordinary words"
    groups = [(GROUP, ME, [text(1, secret), text(2, other)])]
    assert await reading.search(groups, "zebraphonic", 10)
    assert b"zebraphonic" in (tmp_path / SEARCH_FILE).read_bytes()  # the check can fail
    await reading.forget(GROUP, bytes([1]) * 32)
    content = (tmp_path / SEARCH_FILE).read_bytes()
    assert b"zebraphonic" not in content
    assert b"xylophagous" not in content
    assert b"ordinary" in content
    await reading.forget(GROUP, bytes([9]) * 32)  # not indexed: nothing happens
    await Reading(tmp_path / "none").forget(GROUP, bytes([1]) * 32)  # no index yet
