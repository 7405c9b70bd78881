"""Files and deletes through the control socket (specs/control.md "Files", "Reading"): refusals
in one line, and a deleted message leaving the search index. 127.0.0.1 only."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from app.test_daemon import running
from p2pchat.app.control import RemoteCommandError, open_control
from p2pchat.app.reading import SEARCH_FILE

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("missing.png", "No such file or directory"),
        ("a-directory", "Is a directory"),
    ],
)
async def test_send_file_of_a_path_the_node_cannot_read_is_refused_in_one_line(
    tmp_path: Path, name: str, error: str
) -> None:
    (tmp_path / "a-directory").mkdir()
    with trio.fail_after(30):
        async with running(tmp_path / "node"), open_control(tmp_path / "node") as client:
            await client.call("group.create", name="friends")
            with pytest.raises(RemoteCommandError) as info:
                await client.call("send.file", group="friends", path=str(tmp_path / name))
            text = str(info.value)
            assert f"the node cannot read {tmp_path / name}" in text
            assert error in text
            assert "internal error" not in text
            assert "\n" not in text


async def test_save_of_a_deleted_file_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "photo.png").write_bytes(b"not really a png")
    with trio.fail_after(30):
        async with running(tmp_path / "node"), open_control(tmp_path / "node") as client:
            await client.call("group.create", name="friends")
            sent = await client.call("send.file", group="friends", path=str(tmp_path / "photo.png"))
            await client.call(
                "send", group="friends", type="delete", text="", ref=sent["message_hash"]
            )
            with pytest.raises(RemoteCommandError) as info:
                await client.call(
                    "save", group="friends", hash=sent["message_hash"], path=str(tmp_path / "out")
                )
            assert str(info.value).endswith("the message was deleted")
            assert not (tmp_path / "out").exists()


async def test_a_deleted_message_leaves_the_search_index(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running(tmp_path), open_control(tmp_path) as client:
            await client.call("group.create", name="friends")
            sent = await client.call("send", group="friends", text="zebraphonic secrets")
            await client.call("send", group="friends", text="ordinary words")
            (hit,) = await client.call("search", query="zebraphonic")
            assert hit["message_hash"] == sent["message_hash"]
            index = tmp_path / SEARCH_FILE
            assert b"zebraphonic" in index.read_bytes()
            await client.call(
                "send", group="friends", type="delete", text="", ref=hit["message_hash"]
            )
            # The index forgets it in the node's own task, right after the delete is stored.
            with trio.fail_after(10):
                while b"zebraphonic" in index.read_bytes():  # noqa: ASYNC110
                    await trio.sleep(0.05)
            assert await client.call("search", query="zebraphonic") == []
            assert len(await client.call("search", query="ordinary")) == 1
