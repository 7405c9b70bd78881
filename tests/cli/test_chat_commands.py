"""What a line typed in ``p2pchat chat`` asks for (specs/cli.md "chat")."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pchat.cli.chat_commands import (
    HELP,
    Help,
    LineError,
    Quit,
    Send,
    SendFile,
    parse_line,
    request_of,
)


@pytest.mark.parametrize(
    ("line", "action"),
    [
        ("", None),
        ("   ", None),
        ("hello", Send({"type": "text", "text": "hello"})),
        ("//etc/passwd is a path", Send({"type": "text", "text": "/etc/passwd is a path"})),
        ("/help", Help()),
        ("/?", Help()),
        ("/quit", Quit()),
        ("/md **bold**", Send({"type": "markdown", "text": "**bold**"})),
        (
            "/reply 1a2b3c4d sure thing",
            Send({"type": "text", "text": "sure thing", "ref": "1a2b3c4d"}),
        ),
        (
            "/edit 1a2b fixed typo",
            Send({"type": "edit", "text": "fixed typo", "ref": "1a2b", "mime": "text/plain"}),
        ),
        ("/delete 1a2b", Send({"type": "delete", "text": "", "ref": "1a2b"})),
        ("/file ~/cat.png", SendFile("~/cat.png")),
        ("/name  Ann Lee ", Send({"type": "profile", "text": "Ann Lee", "mime": "text/plain"})),
        (
            "/react 1a2b 👍",
            Send({"type": "reaction", "text": "👍", "ref": "1a2b", "mime": "text/plain"}),
        ),
    ],
)
def test_a_line_asks_for(line: str, action: object) -> None:
    assert parse_line(line) == action


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("/nonsense", "unknown command /nonsense"),
        ("/reply 1a2b", "usage: /reply HASH TEXT"),
        ("/edit", "usage: /edit HASH TEXT"),
        ("/delete", "usage: /delete HASH"),
        ("/delete 1a2b and words", "usage: /delete HASH"),
        ("/react 1a2b", "usage: /react HASH EMOJI"),
        ("/react 1a2b " + "x" * 33, "at most 32 bytes"),
        ("/md", "usage: /md TEXT"),
        ("/file", "usage: /file PATH"),
        ("/name", "usage: /name NAME"),
    ],
)
def test_a_command_typed_wrongly_says_how(line: str, error: str) -> None:
    with pytest.raises(LineError, match=error):
        parse_line(line)


def test_name_and_avatar_lines_set_the_profile(tmp_path: Path) -> None:
    """A new name keeps the avatar, so both go through ``profile.set`` (specs/chat.md §18)."""
    assert request_of(Send({"type": "profile", "text": "Ann", "mime": "text/plain"})) == (
        "profile.set",
        {"name": "Ann", "type": "profile", "text": "Ann"},
    )
    action = parse_line(f"/avatar {tmp_path}/me.png")
    assert action == SendFile(f"{tmp_path}/me.png", avatar=True)
    assert request_of(action) == ("profile.set", {"avatar": f"{tmp_path}/me.png", "type": "avatar"})
    with pytest.raises(LineError, match="usage: /avatar PATH"):
        parse_line("/avatar ")
    with pytest.raises(LineError, match="at most 64 bytes"):
        parse_line("/name " + "x" * 65)
    assert "/avatar PATH" in HELP
